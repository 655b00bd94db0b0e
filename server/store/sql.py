"""The SQL both SQL stores run as it is, and the row shapes they share.

Statements use SQLite's ``?`` placeholders; PostgreSQL runs them through
``numbered`` (``$1``, ``$2``, …). What differs per dialect (creation order by
``rowid`` or ``seq``, case-insensitive names, upserts) stays in each store.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgpack

from server.store.base import User

USER_COLUMNS = "u.id, u.username, u.display_name, u.bot, u.owner_id"
CHANNEL_COLUMNS = "id, community_id, name, kind, parent"

USER = f"SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
INSERT_USER = (
    "INSERT INTO users(id, username, display_name, password_hash, bot, owner_id, created_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SET_PASSWORD = "UPDATE users SET password_hash = ? WHERE id = ?"
ADD_TOKEN = "INSERT INTO tokens(id, user_id, secret_hash, created_ms) VALUES (?, ?, ?, ?)"
TOKEN = (
    f"SELECT {USER_COLUMNS}, t.secret_hash FROM tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.id = ?"
)
INSERT_COMMUNITY = "INSERT INTO communities(id, name, created_ms) VALUES (?, ?, ?)"
COMMUNITY = "SELECT id, name FROM communities WHERE id = ?"
MEMBERS = (
    f"SELECT {USER_COLUMNS}, m.role FROM members m JOIN users u ON u.id = m.user_id"
    " WHERE m.community_id = ? ORDER BY m.seq, m.joined_ms"
)
ROLE = "SELECT role FROM members WHERE community_id = ? AND user_id = ?"
INSERT_CHANNEL = (
    "INSERT INTO channels(id, community_id, name, kind, parent, epoch) VALUES (?, ?, ?, ?, ?, ?)"
)
CHANNEL = f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = ?"
LOG_HEAD = "SELECT head, epoch FROM channels WHERE id = ?"
READ_AFTER = "SELECT frame FROM events WHERE channel_id = ? AND o > ? ORDER BY o LIMIT ?"
READ_BEFORE = "SELECT frame FROM events WHERE channel_id = ? AND o < ? ORDER BY o DESC LIMIT ?"
NONCE_FRAME = (
    "SELECT e.frame FROM nonces n JOIN events e ON e.channel_id = n.channel_id AND e.o = n.o"
    " WHERE n.channel_id = ? AND n.user_id = ? AND n.nonce = ?"
)
#: ``READ_BEFORE``'s bound when there is none: past every offset.
NO_BOUND = 2**62


@functools.cache
def numbered(statement: str) -> str:
    """``statement`` with PostgreSQL's numbered placeholders instead of ``?``."""
    parts = statement.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def user(row: Sequence[Any]) -> User:
    """A user from the first five columns of a row (``USER_COLUMNS``)."""
    return User(row[0], row[1], row[2], bool(row[3]), row[4])


def unfinished_frame(t: str, channel_id: str, d: dict[str, Any]) -> bytes:
    """An event frame up to its offset: the msgpack of ``{op, t, ch, d, o}`` less ``o``'s value.

    Appending ``msgpack.packb(offset)`` finishes it, byte for byte what
    ``msgpack.packb(protocol.event(t, channel_id, d, offset))`` makes.
    """
    head = b"\x85" + b"".join(
        msgpack.packb(x, use_bin_type=True) for x in ("op", "event", "t", t, "ch", channel_id)
    )
    return head + msgpack.packb("d") + msgpack.packb(d, use_bin_type=True) + b"\xa1o"
