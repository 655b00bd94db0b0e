"""Direct messages: ``dm.open`` and ``dm.created``.

A DM is a channel of kind ``dm`` that belongs to no community and to exactly
two users (see ``channels.readable_channel``); each pair has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError, echo
from server.domain import communities
from server.domain.permissions import Forbidden
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


@router.command("dm.open")
async def open_dm(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    user = session.user
    assert user is not None
    agora = session.agora
    other = d["user"]
    if other == user.id:
        raise ProtocolError("a direct message is with someone else", code=ErrorCode.BAD_REQUEST)
    if await agora.store.user(other) is None:
        raise ProtocolError(f"no user '{echo(other)}'", code=ErrorCode.NOT_FOUND)
    if not await agora.store.share_a_community(user.id, other):
        raise Forbidden("you share no community with that user", "direct_message")
    channel, created = await agora.store.open_dm(user.id, other)
    public = channel.public()
    if created:
        await agora.publish_ephemeral(
            communities.user_topic(other), "dm.created", other, {"channel": public}
        )
    return {"channel": public}
