"""Reactions: ``reaction.add``/``reaction.remove`` and ``reaction.updated``.

A message's reactions live in its object (``reactions: [{emoji, count, users}]``)
and change under the store's lock on the message, so one user's emoji counts once
however many nodes the requests reach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError
from protocol.commands import MAX_REACTIONS
from server.domain.channels import readable_channel, require_in
from server.domain.messages import changed_message, message_in
from server.domain.permissions import Permission
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


@router.command("reaction.add")
async def add(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _react(session, d, added=True)


@router.command("reaction.remove")
async def remove(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _react(session, d, added=False)


async def _react(session: Session, d: dict[str, Any], *, added: bool) -> dict[str, Any]:
    user = session.user
    assert user is not None
    channel = await readable_channel(session, d["channel"])
    await require_in(session, channel, Permission.PARTICIPATE)
    await message_in(session, channel, d["message"])
    emoji = d["emoji"].strip()
    if not emoji:
        raise ProtocolError("field 'emoji' must not be empty", code=ErrorCode.BAD_REQUEST)

    def change(message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if message.get("deleted"):
            return None
        reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["emoji"] == emoji), None)
        if added:
            if reaction is None:
                if len(reactions) >= MAX_REACTIONS:
                    raise ProtocolError(
                        f"a message holds at most {MAX_REACTIONS} different emoji",
                        code=ErrorCode.TOO_LARGE,
                    )
                reaction = {"emoji": emoji, "count": 0, "users": []}
                reactions.append(reaction)
            elif user.id in reaction["users"]:
                return None
            reaction["users"].append(user.id)
        else:
            if reaction is None or user.id not in reaction["users"]:
                return None
            reaction["users"].remove(user.id)
        reaction["count"] = len(reaction["users"])
        if not reaction["users"]:
            reactions.remove(reaction)
        return "reaction.updated", {
            "message": message["id"],
            "emoji": emoji,
            "count": reaction["count"],
            "user": user.id,
            "added": added,
        }

    await changed_message(session, channel, d["message"], change)
    return {}
