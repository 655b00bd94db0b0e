"""Communities: who is a member, ``community.members``, and the ``member.joined`` event.

``member.joined`` goes into a community's system channel, its first text
channel (``general`` in a fresh community), whenever an account joins. The
server publishes it; the admin CLI, which has no way into a running server's
broker, only appends it to the store (see ``server/operator/admin.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError, echo
from server.gateway.router import CommandRouter
from server.ids import now_ms

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session
    from server.store import Channel, CommunityView, Store, User

router = CommandRouter()

#: Most members one ``community.members`` reply lists (the first ones to join).
MAX_MEMBERS = 1000
#: Roles a member may have; owners and admins may create bots.
ROLES = ("member", "admin", "owner")


def member(user: User, role: str) -> dict[str, Any]:
    """The member object: the public user and the role."""
    return {**user.public(), "role": role}


def system_channel(view: CommunityView) -> Channel | None:
    """Where the community's announcements go: its first text channel."""
    return next((c for c in view.channels if c.kind == "text"), None)


async def join_event(store: Store, community_id: str, user: User) -> tuple[str, dict[str, Any]]:
    """The system channel and ``d`` of the ``member.joined`` for a user who just joined.

    Raises ``LookupError`` when the user is not a member or the community has
    no text channel, so there is nowhere to announce it.
    """
    for view in await store.communities_of(user.id):
        if view.id == community_id:
            channel = system_channel(view)
            if channel is None:
                raise LookupError(f"community '{community_id}' has no text channel")
            return channel.id, {"member": member(user, view.role), "ts": now_ms()}
    raise LookupError(f"'{user.username}' is not a member of community '{community_id}'")


async def joins_of_new_account(store: Store, user: User) -> list[tuple[str, dict[str, Any]]]:
    """Channel and ``d`` of a ``member.joined`` for each community a new account is in.

    ``create_user`` makes every account a member of the first community.
    """
    return [
        (channel.id, {"member": member(user, view.role), "ts": now_ms()})
        for view in await store.communities_of(user.id)
        if (channel := system_channel(view)) is not None
    ]


async def announce_new_account(agora: Agora, user: User) -> None:
    """Publish the ``member.joined`` events of a new account."""
    for channel, d in await joins_of_new_account(agora.store, user):
        await agora.publish(channel, "member.joined", d)


@router.command("community.members")
async def members(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    store = session.agora.store
    community = await store.community(d["community"])
    if community is None:
        raise ProtocolError(f"no community '{echo(d['community'])}'", code=ErrorCode.NOT_FOUND)
    if await store.role(community.id, session.user.id) is None:
        raise ProtocolError("you are not a member of this community", code=ErrorCode.FORBIDDEN)
    found = await store.members(community.id)
    return {"members": [member(user, role) for user, role in found[:MAX_MEMBERS]]}
