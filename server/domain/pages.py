"""Paged lists: a ``next`` cursor is ``<ts>:<id>`` of the page's last item, opaque to clients."""

from __future__ import annotations

from protocol import ErrorCode, ProtocolError


def next_cursor(ts: int, item_id: str) -> str:
    return f"{ts}:{item_id}"


def cursor(before: str | None) -> tuple[int, str] | None:
    """A ``before`` (a ``next`` given earlier) as the store's ``(ts, id)``; ``bad_request``
    if this server could not have given it."""
    if before is None:
        return None
    ts, _, item_id = before.partition(":")
    if not ts.isdigit() or not item_id:
        raise ProtocolError(
            "field 'before' is not a cursor this server gave", code=ErrorCode.BAD_REQUEST
        )
    return int(ts), item_id
