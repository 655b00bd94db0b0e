"""Invites: ``invite.create`` and ``invite.accept``, and registration with an invite.

An invite is a random code for one community and one role (``member`` or
``guest``), with an optional expiry and use limit. Accepting it joins the
community in the same transaction that counts the use, so a limit of one
lets exactly one person in. A banned user cannot come back by invite.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError
from server.domain import audit, communities
from server.domain.permissions import Permission, require
from server.gateway.router import CommandRouter
from server.ids import now_ms
from server.store import Invite, InviteRefused

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


def refusal(exc: InviteRefused) -> ProtocolError:
    """The gateway's answer to a refused invite (HTTP maps the same codes)."""
    if exc.unknown:
        return ProtocolError(str(exc), code=ErrorCode.NOT_FOUND)
    return ProtocolError(str(exc), code=ErrorCode.FORBIDDEN, permission="use_invite")


@router.command("invite.create")
async def create(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    user = session.user
    assert user is not None
    store = session.agora.store
    await require(store, d["community"], user.id, Permission.CREATE_INVITES)
    expires_s = d["expires_s"]
    invite = Invite(
        code=secrets.token_urlsafe(9),
        community_id=d["community"],
        role=d["role"],
        max_uses=d["max_uses"],
        uses=0,
        expires_ts=None if expires_s is None else now_ms() + expires_s * 1000,
        created_by=user.id,
    )
    await store.create_invite(invite)
    await audit.write(
        store,
        invite.community_id,
        user.id,
        "invite.create",
        None,
        {"role": invite.role, "max_uses": invite.max_uses, "expires_ts": invite.expires_ts},
    )
    return {"invite": invite.public()}


@router.command("invite.accept")
async def accept(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    user = session.user
    assert user is not None
    agora = session.agora
    try:
        invite, joined = await agora.store.accept_invite(d["code"], user.id, now_ms())
    except InviteRefused as exc:
        raise refusal(exc) from None
    if joined:
        view = await communities.announce_join(agora, invite.community_id, user)
    else:
        view = await communities.view_of(agora.store, invite.community_id, user.id)
    assert view is not None
    await session.listen(communities.community_topic(view.id))
    return {"community": view.public()}
