"""The payload schema of every command, by ``op``.

Domain modules of later protocol versions add their commands here, so that
server and clients validate against the same shapes.
"""

from __future__ import annotations

from protocol.schema import Field, Schema, schema

#: Most events one ``history`` page returns, and the default page size.
MAX_HISTORY_LIMIT = 100
DEFAULT_HISTORY_LIMIT = 50
#: Longest message text, in characters.
MAX_MESSAGE_CHARS = 4000
#: Longest idempotency nonce, in characters.
MAX_NONCE_CHARS = 64
#: Longest id a client may name (channels, communities, messages).
MAX_ID_CHARS = 64


def _channel() -> Field:
    return Field("channel", str, nonempty=True, max_len=MAX_ID_CHARS)


COMMANDS: dict[str, Schema] = {
    "identify": schema(Field("token", str, nonempty=True, max_len=512)),
    "ping": schema(),
    "subscribe": schema(
        _channel(),
        Field("since", int, required=False),
        Field("epoch", str, required=False, max_len=MAX_ID_CHARS),
    ),
    "unsubscribe": schema(_channel()),
    "history": schema(
        _channel(),
        Field("before", int, required=False, minimum=1),
        Field(
            "limit",
            int,
            required=False,
            default=DEFAULT_HISTORY_LIMIT,
            minimum=1,
            maximum=MAX_HISTORY_LIMIT,
        ),
    ),
    "message.send": schema(
        _channel(),
        Field("text", str, nonempty=True, max_len=MAX_MESSAGE_CHARS),
        Field("nonce", str, required=False, nonempty=True, max_len=MAX_NONCE_CHARS),
    ),
    "community.members": schema(Field("community", str, nonempty=True, max_len=MAX_ID_CHARS)),
}
