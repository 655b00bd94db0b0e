"""Messages: ``message.send`` and the ``message.created`` event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.domain.channels import postable_channel
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


@router.command("message.send")
async def send(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await postable_channel(session, d["channel"])
    user = session.user
    assert user is not None
    message: dict[str, Any] = {
        "id": new_id(),
        "channel": channel.id,
        "author": {"id": user.id, "name": user.display_name, "bot": user.bot},
        "text": d["text"],
        "ts": now_ms(),
    }
    nonce = d["nonce"]
    if nonce is not None:
        message["nonce"] = nonce
    stored = await session.agora.publish(
        channel.id,
        "message.created",
        {"message": message},
        idempotency=None if nonce is None else (user.id, nonce),
    )
    return {"message": stored.event["d"]["message"]}
