"""Moderation: roles, time-outs, kicks and bans, each written to the audit log.

Who may act on whom is ``permissions.check_over``: a rank above the target's,
except for the owner; nobody kicks or bans an owner; only an owner makes
admins and owners; and a community never loses its last owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError
from server.domain import audit, communities
from server.domain.permissions import Permission, check_grant, check_over, require
from server.gateway.router import CommandRouter
from server.ids import now_ms

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session
    from server.store import Store

router = CommandRouter()


async def _target(store: Store, community_id: str, user_id: str) -> str | None:
    membership = await store.membership(community_id, user_id)
    return None if membership is None else membership.role


def _not_yourself(session: Session, d: dict[str, Any]) -> None:
    assert session.user is not None
    if d["user"] == session.user.id:
        raise ProtocolError("you cannot do that to yourself", code=ErrorCode.BAD_REQUEST)


async def set_role(
    agora: Agora, community_id: str, actor: str, actor_role: str, user_id: str, role: str
) -> dict[str, Any]:
    """Change a member's role (the one path for the gateway and the admin CLI); the member."""
    store = agora.store
    current = await _target(store, community_id, user_id)
    if user_id != actor or actor_role != "owner":
        check_over(actor_role, current, Permission.SET_ROLES)
    check_grant(actor_role, role)
    if current == "owner" and role != "owner":
        owners = [u for u, r in await store.members(community_id) if r == "owner"]
        if len(owners) == 1:
            raise ProtocolError(
                "a community keeps at least one owner: make another member owner first",
                code=ErrorCode.CONFLICT,
            )
    await store.set_role(community_id, user_id, role)
    user = await store.user(user_id)
    assert user is not None
    await audit.write(
        store, community_id, actor, "member.role", user_id, {"from": current, "to": role}
    )
    member = communities.member(user, role)
    if current != role:
        await communities.publish(agora, community_id, "member.updated", {"member": member})
    return member


@router.command("member.role")
async def role(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    actor_role = await require(
        session.agora.store, d["community"], session.user.id, Permission.SET_ROLES
    )
    member = await set_role(
        session.agora, d["community"], session.user.id, actor_role, d["user"], d["role"]
    )
    return {"member": member}


@router.command("member.timeout")
async def timeout(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    _not_yourself(session, d)
    store = session.agora.store
    actor_role = await require(store, d["community"], session.user.id, Permission.TIME_OUT)
    check_over(actor_role, await _target(store, d["community"], d["user"]), Permission.TIME_OUT)
    seconds = d["seconds"]
    until = now_ms() + seconds * 1000 if seconds else None
    await store.set_timeout(d["community"], d["user"], until)
    await audit.write(
        store, d["community"], session.user.id, "member.timeout", d["user"], {"until": until}
    )
    return {}


async def _remove(session: Session, d: dict[str, Any], permission: Permission) -> None:
    assert session.user is not None
    _not_yourself(session, d)
    agora = session.agora
    store = agora.store
    actor_role = await require(store, d["community"], session.user.id, permission)
    check_over(actor_role, await _target(store, d["community"], d["user"]), permission)
    banned_by = session.user.id if permission is Permission.BAN else None
    await store.remove_member(d["community"], d["user"], banned_by=banned_by)
    action = "member.ban" if banned_by else "member.kick"
    await audit.write(store, d["community"], session.user.id, action, d["user"])
    # Every node's sessions of that user stop hearing the community (see communities).
    await communities.publish(agora, d["community"], "member.left", {"user": d["user"]})


@router.command("member.kick")
async def kick(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    await _remove(session, d, Permission.KICK)
    return {}


@router.command("member.ban")
async def ban(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    await _remove(session, d, Permission.BAN)
    return {}


async def slow_mode(agora: Agora, channel_id: str, slowmode_s: int, user_id: str) -> None:
    """Raise ``rate_limited`` if the user posted here less than ``slowmode_s`` ago."""
    wait_ms = await agora.live.claim(f"slow:{channel_id}:{user_id}", slowmode_s * 1000)
    if wait_ms:
        raise ProtocolError(
            f"slow mode: one message every {slowmode_s} s in this channel",
            code=ErrorCode.RATE_LIMITED,
            retry_after_ms=wait_ms,
        )
