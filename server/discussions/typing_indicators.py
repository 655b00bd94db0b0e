"""Typing indicators: ``typing.start`` and the ephemeral ``typing.started``.

Never stored, never sent to the typer's own sessions (the hub leaves them out,
see ``protocol.NOT_TO_SELF``), and at most one per user and channel every
``TYPING_INTERVAL`` seconds from each node.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgpack

from protocol import event
from server.domain.channels import readable_channel, require_in
from server.domain.permissions import Permission
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()

TYPING_INTERVAL = 3.0
#: Users and channels remembered at once; past it, the stale ones are forgotten.
MAX_REMEMBERED = 10_000


@router.command("typing.start")
async def start(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    user = session.user
    assert user is not None
    channel = await readable_channel(session, d["channel"])
    await require_in(session, channel, Permission.POST)
    agora = session.agora
    now = time.monotonic()
    key = (user.id, channel.id)
    last = agora.typing_forwarded.get(key)
    if last is not None and now - last < TYPING_INTERVAL:
        return {}
    if len(agora.typing_forwarded) >= MAX_REMEMBERED:
        stale = [k for k, t in agora.typing_forwarded.items() if now - t >= TYPING_INTERVAL]
        for k in stale:
            del agora.typing_forwarded[k]
    agora.typing_forwarded[key] = now
    frame = event("typing.started", channel.id, {"user": user.id, "name": user.display_name})
    await agora.broker.publish(channel.id, msgpack.packb(frame, use_bin_type=True))
    return {}
