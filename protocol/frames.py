"""The frame model: inbound commands and the server's frames.

Every frame is a map with ``op``. The client sends commands
``{op, id, d}``; the server sends ``hello``, ``reply``, ``error`` and ``event``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.codec import type_name
from protocol.codes import ErrorCode
from protocol.commands import COMMANDS
from protocol.errors import ProtocolError, RequestError, echo
from protocol.schema import MAX_SAFE_INT

PROTOCOL_VERSION = 1

HELLO = "hello"
REPLY = "reply"
ERROR = "error"
EVENT = "event"


@dataclass(frozen=True, slots=True)
class Command:
    """A validated command: ``d`` holds exactly the fields its schema declares."""

    op: str
    id: int
    d: dict[str, Any]


def parse_command(frame: dict[str, Any]) -> Command:
    """Validate a decoded frame as a command.

    Raises ``RequestError`` (with ``command_id`` set whenever the frame had a
    usable ``id``) for a missing or unknown ``op``, a bad ``id`` or a payload
    that does not fit the command's schema.
    """
    raw_id = frame.get("id")
    if not isinstance(raw_id, int) or isinstance(raw_id, bool):
        shown = "nothing" if raw_id is None else type_name(raw_id)
        raise RequestError(f"field 'id' must be an integer, got {shown}")
    if not 0 <= raw_id <= MAX_SAFE_INT:
        raise RequestError(f"field 'id' must be between 0 and {MAX_SAFE_INT}")
    op = frame.get("op")
    if not isinstance(op, str):
        raise RequestError(f"field 'op' must be a string, got {type_name(op)}", command_id=raw_id)
    command_schema = COMMANDS.get(op)
    if command_schema is None:
        raise RequestError(f"unknown op '{echo(op)}'", command_id=raw_id)
    try:
        d = command_schema.validate(frame.get("d", {}))
    except ProtocolError as exc:
        exc.command_id = raw_id
        raise
    return Command(op, raw_id, d)


def hello(*, heartbeat_ms: int, server: str, max_frame: int, ts: int) -> dict[str, Any]:
    return {
        "op": HELLO,
        "d": {
            "heartbeat_ms": heartbeat_ms,
            "protocol": PROTOCOL_VERSION,
            "server": server,
            "max_frame": max_frame,
            "ts": ts,
        },
    }


def reply(command_id: int, d: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"op": REPLY, "id": command_id, "d": {} if d is None else d}


def error(
    code: ErrorCode,
    message: str,
    *,
    command_id: int | None = None,
    retry_after_ms: int | None = None,
    permission: str | None = None,
) -> dict[str, Any]:
    # Escaped once more, so that even a message built without echo() can be sent.
    d: dict[str, Any] = {"code": str(code), "message": echo(message, limit=None)}
    if retry_after_ms is not None:
        d["retry_after_ms"] = retry_after_ms
    if permission is not None:
        d["permission"] = permission
    frame: dict[str, Any] = {"op": ERROR, "d": d}
    if command_id is not None:
        frame["id"] = command_id
    return frame


def error_from(exc: ProtocolError) -> dict[str, Any]:
    """The ``error`` frame that answers a ``ProtocolError``."""
    return error(
        exc.code,
        exc.message,
        command_id=exc.command_id,
        retry_after_ms=exc.retry_after_ms,
        permission=exc.permission,
    )


#: Events about a community (``ch`` is its id) that every member's sessions hear
#: without subscribing. Ephemeral: no ``o``, never replayed.
COMMUNITY_EVENTS = frozenset(
    {
        "channel.created",
        "channel.updated",
        "member.joined",
        "member.updated",
        "member.left",
        "presence.updated",
    }
)
#: Events for one user that reach every session of theirs without subscribing: ``ch``
#: is their id, but for the events encoded once for many users (``thread.activity``:
#: the thread's id; ``mention`` of ``@here``: the community's id).
USER_EVENTS = frozenset(
    {
        "community.joined",
        "mention",
        "read.updated",
        "thread.activity",
        "thread.followed",
        "dm.created",
    }
)
#: Ephemeral events that never reach the sessions of the user in ``d.user``.
NOT_TO_SELF = frozenset({"typing.started", "thread.activity", "mention"})


def event(t: str, ch: str, d: dict[str, Any], o: int | None = None) -> dict[str, Any]:
    """An event frame; durable events carry their channel offset ``o``."""
    frame: dict[str, Any] = {"op": EVENT, "t": t, "ch": ch, "d": d}
    if o is not None:
        frame["o"] = o
    return frame
