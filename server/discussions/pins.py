"""Pins: ``message.pin``/``message.unpin``, ``message.pinned`` and ``channel.pins``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.domain.channels import readable_channel, require_in
from server.domain.messages import changed_message, message_in
from server.domain.permissions import Permission
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


@router.command("message.pin")
async def pin(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _pin(session, d, pinned=True)


@router.command("message.unpin")
async def unpin(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _pin(session, d, pinned=False)


async def _pin(session: Session, d: dict[str, Any], *, pinned: bool) -> dict[str, Any]:
    channel = await readable_channel(session, d["channel"])
    await require_in(session, channel, Permission.PIN_MESSAGES)
    await message_in(session, channel, d["message"])

    def change(message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if message.get("deleted") or bool(message.get("pinned")) == pinned:
            return None
        if pinned:
            message["pinned"] = True
        else:
            message.pop("pinned", None)
        return "message.pinned", {"message": message["id"], "pinned": pinned}

    await changed_message(session, channel, d["message"], change)
    return {}


@router.command("channel.pins")
async def pins(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await readable_channel(session, d["channel"])
    return {"messages": await session.agora.store.pinned(channel.id)}
