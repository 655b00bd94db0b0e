"""The SQL both SQL stores run as it is, and the row shapes they share.

Statements use SQLite's ``?`` placeholders; PostgreSQL runs them through
``numbered`` (``$1``, ``$2``, …). What differs per dialect (creation order by
``rowid`` or ``seq``, case-insensitive names, upserts) stays in each store.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import msgpack

from server.store.base import (
    CHANNEL_SETTINGS,
    THREAD_SETTINGS,
    AuditEntry,
    Channel,
    Invite,
    InviteRefused,
    Token,
    User,
)

USER_COLUMNS = "u.id, u.username, u.display_name, u.bot, u.owner_id"
CHANNEL_COLUMNS = (
    "id, community_id, name, kind, parent, topic, position, archived, slowmode_s,"
    " title, created_by, root_message, tags, resolved, msgs, last_ts"
)

USER = f"SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
INSERT_USER = (
    "INSERT INTO users(id, username, display_name, password_hash, bot, owner_id, created_ms,"
    " skeleton) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The account whose username has this skeleton (``server.domain.names``).
USER_LIKE = f"SELECT {USER_COLUMNS} FROM users u WHERE u.skeleton = ? LIMIT 1"
HAS_USERS = "SELECT EXISTS (SELECT 1 FROM users)"
SETUP_CODE = "SELECT value FROM meta WHERE key = 'setup_code'"
KEEP_SETUP_CODE = (
    "INSERT INTO meta(key, value) VALUES ('setup_code', ?) ON CONFLICT (key) DO NOTHING"
)


def name_conflict(username: str, existing: User) -> str:
    """Why ``username`` cannot be created beside ``existing`` (which has its skeleton)."""
    if existing.username.casefold() == username.casefold():
        return f"username '{username}' is taken"
    return f"username '{username}' looks like an existing name ('{existing.username}')"


SET_PASSWORD = "UPDATE users SET password_hash = ? WHERE id = ?"
SET_DISABLED = "UPDATE users SET disabled_ms = ? WHERE id = ?"
DISABLED_MS = "SELECT disabled_ms FROM users WHERE id = ?"
ADD_TOKEN = "INSERT INTO tokens(id, user_id, secret_hash, created_ms, label) VALUES (?, ?, ?, ?, ?)"
#: A token's row: ``USER_COLUMNS``, then what ``token`` reads after them. A bot's
#: token is disabled with its owner's account: disabling a person must also stop the
#: bots they made (a stolen token could have made one, whose tokens never expire).
TOKEN_COLUMNS = (
    f"{USER_COLUMNS}, t.id, t.secret_hash, t.created_ms, t.last_used_ms, t.label,"
    " COALESCE(u.disabled_ms, o.disabled_ms)"
)
TOKENS = (
    f"SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id"
    " LEFT JOIN users o ON o.id = u.owner_id"
)
TOKEN = TOKENS + " WHERE t.id = ?"
TOKENS_OF = TOKENS + " WHERE t.user_id = ? ORDER BY t.created_ms, t.id"
INSERT_COMMUNITY = "INSERT INTO communities(id, name, created_ms) VALUES (?, ?, ?)"
COMMUNITY = "SELECT id, name FROM communities WHERE id = ?"
MEMBERS = (
    f"SELECT {USER_COLUMNS}, m.role FROM members m JOIN users u ON u.id = m.user_id"
    " WHERE m.community_id = ? ORDER BY m.seq, m.joined_ms"
)
ROLE = "SELECT role FROM members WHERE community_id = ? AND user_id = ?"
INSERT_CHANNEL = (
    "INSERT INTO channels(id, community_id, name, kind, parent, topic, epoch)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
CHANNEL = f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = ?"
LOG_HEAD = "SELECT head, epoch FROM channels WHERE id = ?"
READ_AFTER = "SELECT frame FROM events WHERE channel_id = ? AND o > ? ORDER BY o LIMIT ?"
READ_BEFORE = "SELECT frame FROM events WHERE channel_id = ? AND o < ? ORDER BY o DESC LIMIT ?"
NONCE_FRAME = (
    "SELECT e.frame FROM nonces n JOIN events e ON e.channel_id = n.channel_id AND e.o = n.o"
    " WHERE n.channel_id = ? AND n.user_id = ? AND n.nonce = ?"
)
CHANNEL_NAMED = "SELECT name FROM channels WHERE community_id = ? AND lower(name) = lower(?)"
RENAME_COMMUNITY = "UPDATE communities SET name = ? WHERE id = ?"
MEMBERSHIP = "SELECT role, timeout_until FROM members WHERE community_id = ? AND user_id = ?"
DELETE_MEMBER = "DELETE FROM members WHERE community_id = ? AND user_id = ?"
INSERT_BAN = (
    "INSERT INTO bans(community_id, user_id, by_id, ts) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (community_id, user_id) DO NOTHING"
)
BANNED = "SELECT 1 FROM bans WHERE community_id = ? AND user_id = ?"
SET_TIMEOUT = "UPDATE members SET timeout_until = ? WHERE community_id = ? AND user_id = ?"
INSERT_INVITE = (
    "INSERT INTO invites(code, community_id, role, max_uses, uses, expires_ts, created_by,"
    " created_ms) VALUES (?, ?, ?, ?, 0, ?, ?, ?)"
)
INVITE = (
    "SELECT code, community_id, role, max_uses, uses, expires_ts, created_by FROM invites"
    " WHERE code = ?"
)
USE_INVITE = "UPDATE invites SET uses = uses + 1 WHERE code = ?"
INSERT_AUDIT = (
    "INSERT INTO audit(community_id, ts, actor, action, target, details)"
    " VALUES (?, ?, ?, ?, ?, ?) RETURNING seq"
)
AUDIT = (
    "SELECT seq, community_id, ts, actor, action, target, details FROM audit"
    " WHERE community_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
)
#: ``READ_BEFORE``'s and ``AUDIT``'s bound when there is none: past every offset and id.
NO_BOUND = 2**62


def update_channel(changes: dict[str, Any]) -> tuple[str, list[Any]]:
    """The ``UPDATE`` of a channel's settings (``CHANNEL_SETTINGS``, ``THREAD_SETTINGS``)."""
    unknown = changes.keys() - set(CHANNEL_SETTINGS) - set(THREAD_SETTINGS)
    if unknown:
        raise ValueError(f"not channel settings: {sorted(unknown)}")
    columns = ", ".join(f"{name} = ?" for name in changes)
    values = [json.dumps(list(v)) if k == "tags" else v for k, v in changes.items()]
    return f"UPDATE channels SET {columns} WHERE id = ?", values


def channel(row: Sequence[Any], members: Sequence[str] = ()) -> Channel:
    """A channel from a row of ``CHANNEL_COLUMNS`` (and a DM's two users)."""
    return Channel(
        *row[:7],
        bool(row[7]),
        row[8],
        *row[9:12],
        tuple(json.loads(row[12])),
        bool(row[13]),
        row[14],
        row[15],
        tuple(members),
    )


def invite(row: Sequence[Any]) -> Invite:
    return Invite(*row)


def audit_entry(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(*row[:6], json.loads(row[6]))


def invite_refusal(invite: Invite | None, now_ms: int, *, banned: bool) -> InviteRefused | None:
    """Why the invite cannot take a user in now (None: it can), the rule both stores apply."""
    if invite is None:
        return InviteRefused("no such invite", unknown=True)
    if invite.expires_ts is not None and invite.expires_ts <= now_ms:
        return InviteRefused("this invite has expired")
    if banned:
        return InviteRefused("you are banned from this community")
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        return InviteRefused("this invite has been used up")
    return None


@functools.cache
def numbered(statement: str) -> str:
    """``statement`` with PostgreSQL's numbered placeholders instead of ``?``."""
    parts = statement.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def user(row: Sequence[Any]) -> User:
    """A user from the first five columns of a row (``USER_COLUMNS``)."""
    return User(row[0], row[1], row[2], bool(row[3]), row[4])


def token(row: Sequence[Any]) -> Token:
    """A token from a row of ``TOKEN_COLUMNS``."""
    return Token(row[5], user(row), bytes(row[6]), row[7], row[8], row[9], row[10] is not None)


def unfinished_frame(t: str, channel_id: str, d: dict[str, Any]) -> bytes:
    """An event frame up to its offset: the msgpack of ``{op, t, ch, d, o}`` less ``o``'s value.

    Appending ``msgpack.packb(offset)`` finishes it, byte for byte what
    ``msgpack.packb(protocol.event(t, channel_id, d, offset))`` makes.
    """
    head = b"\x85" + b"".join(
        msgpack.packb(x, use_bin_type=True) for x in ("op", "event", "t", t, "ch", channel_id)
    )
    return head + msgpack.packb("d") + msgpack.packb(d, use_bin_type=True) + b"\xa1o"
