"""The SQL of discussions that both SQL stores run as it is (``?`` placeholders).

Full-text search differs per dialect and stays in each store.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import Any

import msgpack

from server.store.base import Resource
from server.store.sql import CHANNEL_COLUMNS, NO_BOUND

INSERT_THREAD = (
    "INSERT INTO channels(id, community_id, name, kind, parent, epoch, title, created_by,"
    " root_message, tags, last_ts) VALUES (?, ?, ?, 'thread', ?, ?, ?, ?, ?, ?, ?)"
)
PARENT_COMMUNITY = "SELECT community_id FROM channels WHERE id = ?"
INSERT_DM_CHANNEL = "INSERT INTO channels(id, name, kind, epoch) VALUES (?, ?, 'dm', ?)"
INSERT_DM = "INSERT INTO dms(channel_id, user_a, user_b) VALUES (?, ?, ?)"
DM_OF_PAIR = "SELECT channel_id FROM dms WHERE user_a = ? AND user_b = ?"
DM_MEMBERS = "SELECT user_a, user_b FROM dms WHERE channel_id = ?"
DMS_OF = (
    f"SELECT {CHANNEL_COLUMNS}, user_a, user_b FROM dms JOIN channels ON id = channel_id"
    " WHERE user_a = ? OR user_b = ? ORDER BY COALESCE(last_ts, 0) DESC, id DESC"
)
SHARE_A_COMMUNITY = (
    "SELECT 1 FROM members a JOIN members b ON a.community_id = b.community_id"
    " WHERE a.user_id = ? AND b.user_id = ? LIMIT 1"
)

# The message index: frames of a message are the events with its ``message_id``.
MESSAGE = (
    "SELECT m.channel_id, m.o, e.frame FROM messages m"
    " JOIN events e ON e.channel_id = m.channel_id AND e.o = m.o WHERE m.id = ?"
)
INSERT_MESSAGE = (
    "INSERT INTO messages(id, channel_id, o, author_id, ts, text) VALUES (?, ?, ?, ?, ?, ?)"
)
MESSAGE_FRAMES = "SELECT channel_id, o, frame FROM events WHERE message_id = ?"
SET_FRAME = "UPDATE events SET frame = ? WHERE channel_id = ? AND o = ?"
SET_MESSAGE = "UPDATE messages SET text = ?, deleted = ?, pinned = ? WHERE id = ?"
PINNED = (
    "SELECT e.frame FROM messages m JOIN events e ON e.channel_id = m.channel_id AND e.o = m.o"
    " WHERE m.channel_id = ? AND m.pinned ORDER BY m.o"
)

THREADS = (
    f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE parent = ? AND kind = 'thread'"
    " AND tags LIKE ? ESCAPE '\\'"
    " AND (COALESCE(last_ts, 0) < ? OR (COALESCE(last_ts, 0) = ? AND id < ?))"
    " ORDER BY COALESCE(last_ts, 0) DESC, id DESC LIMIT ?"
)
FOLLOW = "INSERT INTO follows(thread_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1"
UNFOLLOW = "DELETE FROM follows WHERE thread_id = ? AND user_id = ? RETURNING 1"
FOLLOWERS = "SELECT user_id FROM follows WHERE thread_id = ?"
FOLLOWED = (
    f"SELECT {CHANNEL_COLUMNS} FROM follows JOIN channels ON id = thread_id"
    " WHERE follows.user_id = ? AND EXISTS (SELECT 1 FROM members"
    " WHERE members.community_id = channels.community_id AND members.user_id = follows.user_id)"
    " ORDER BY COALESCE(last_ts, 0) DESC, id DESC LIMIT 500"
)
PARTICIPANTS = (
    "SELECT author_id FROM messages WHERE channel_id = ? GROUP BY author_id ORDER BY min(o) LIMIT ?"
)

HEAD = "SELECT head FROM channels WHERE id = ?"
MARK_READ = (
    "INSERT INTO reads(user_id, channel_id, o) VALUES (?, ?, ?)"
    " ON CONFLICT (user_id, channel_id) DO UPDATE SET o = excluded.o WHERE excluded.o > reads.o"
    " RETURNING o"
)
READ_STATE = (
    "SELECT r.o,"
    " (SELECT count(*) FROM messages m WHERE m.channel_id = ? AND m.o > r.o"
    "  AND m.author_id <> ? AND NOT m.deleted),"
    " (SELECT count(*) FROM mentions x JOIN messages m ON m.id = x.message_id"
    "  WHERE x.user_id = ? AND x.channel_id = ? AND x.o > r.o AND NOT m.deleted)"
    " FROM (SELECT COALESCE((SELECT o FROM reads WHERE user_id = ? AND channel_id = ?), 0) AS o) r"
)
READ_MARKERS = "SELECT user_id, o FROM reads WHERE channel_id = ? ORDER BY user_id"
INSERT_MENTION = (
    "INSERT INTO mentions(user_id, message_id, channel_id, o) VALUES (?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)

INSERT_RESOURCE = (
    "INSERT INTO resources(id, community_id, title, url, note, tags, by_id, ts, shares,"
    " message_channel, message_id, words) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SHARE_URL = (
    INSERT_RESOURCE + " ON CONFLICT (community_id, url) WHERE url IS NOT NULL"
    " DO UPDATE SET shares = resources.shares + 1"
)
RESOURCE_COLUMNS = (
    "id, community_id, title, url, note, tags, by_id, ts, shares, message_channel, message_id"
)
RESOURCES = (
    f"SELECT {RESOURCE_COLUMNS} FROM resources WHERE community_id = ? AND tags LIKE ? ESCAPE '\\'"
    " AND words LIKE ? ESCAPE '\\'"
    " AND (ts < ? OR (ts = ? AND id < ?)) ORDER BY ts DESC, id DESC LIMIT ?"
)


def like(text: str | None, *, tag: bool = False) -> str:
    """A LIKE pattern finding ``text`` anywhere (a tag: one element of a JSON list, as
    ``json.dumps`` stores it)."""
    if text is None:
        return "%"
    pattern = json.dumps(text) if tag else searchable(text)
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def searchable(text: str) -> str:
    """A text as both stores index and look for it: composed and case-folded in Python,
    so that no database locale decides what matches (accents stay: see §13 af)."""
    return unicodedata.normalize("NFC", text).casefold()


def cursor(before: tuple[int, str] | None) -> tuple[int, int, str]:
    """The values of ``(ts < ? OR (ts = ? AND id < ?))`` for a page after ``before``."""
    return (NO_BOUND, NO_BOUND, "") if before is None else (before[0], before[0], before[1])


def thread_values(thread: Any, epoch: str) -> tuple[Any, ...]:
    return (
        thread.id,
        thread.community_id,
        thread.name,
        thread.parent,
        epoch,
        thread.title,
        thread.created_by,
        thread.root_message,
        json.dumps(list(thread.tags)),
        thread.last_ts,
    )


def resource_values(resource: Resource) -> tuple[Any, ...]:
    message = resource.message or (None, None)
    return (
        resource.id,
        resource.community_id,
        resource.title,
        resource.url,
        resource.note,
        json.dumps(list(resource.tags)),
        resource.by,
        resource.ts,
        resource.shares,
        *message,
        searchable("\n".join((resource.title, resource.note or "", resource.url or ""))),
    )


def resource(row: Sequence[Any]) -> Resource:
    message = None if row[9] is None else (row[9], row[10])
    return Resource(*row[:5], tuple(json.loads(row[5])), *row[6:9], message)


def message_of(frame: bytes) -> dict[str, Any]:
    """The message object in a stored ``message.created`` or ``message.updated`` frame."""
    return msgpack.unpackb(frame, raw=False)["d"]["message"]


def found(frame: bytes) -> dict[str, Any]:
    """A message from its ``message.created`` frame, with ``o``: where ``history`` finds it."""
    event = msgpack.unpackb(frame, raw=False)
    return {**event["d"]["message"], "o": event["o"]}


def rerendered(frame: bytes, message: dict[str, Any]) -> bytes:
    """A stored frame of a message, carrying the message as it is now."""
    event = msgpack.unpackb(frame, raw=False)
    event["d"]["message"] = message
    return msgpack.packb(event, use_bin_type=True)


def message_row(message: dict[str, Any]) -> tuple[str, bool, bool, str]:
    """``SET_MESSAGE``'s values."""
    return (
        searchable(message["text"]),
        bool(message.get("deleted")),
        bool(message.get("pinned")),
        message["id"],
    )


def indexed_message(d: dict[str, Any]) -> dict[str, Any] | None:
    """The message an event's frame carries (and so must be kept current), if any: a map
    with a string ``id``, a text, a time and an author (other shapes are not indexed)."""
    message = d.get("message")
    if (
        isinstance(message, dict)
        and isinstance(message.get("id"), str)
        and isinstance(message.get("text"), str)
        and isinstance(message.get("ts"), int)
        and isinstance(message.get("author"), dict)
        and isinstance(message["author"].get("id"), str)
    ):
        return message
    return None


def search_rest(channel_id: str | None, author_id: str | None, limit: int) -> tuple[str, list[Any]]:
    """The end of a search statement after its words, community and cursor, and its values."""
    rest, values = "", []
    if channel_id is not None:
        rest += " AND m.channel_id = ?"
        values.append(channel_id)
    if author_id is not None:
        rest += " AND m.author_id = ?"
        values.append(author_id)
    return rest + " ORDER BY m.ts DESC, m.id DESC LIMIT ?", [*values, limit]


#: SQLite: index the messages that wait for it (see migration 0003), in one statement each.
INDEX_WAITING = (
    "INSERT INTO messages_fts(rowid, text) SELECT rowid, text FROM messages"
    " WHERE rowid > (SELECT upto FROM messages_indexed)"
)
INDEXED_UPTO = "UPDATE messages_indexed SET upto = (SELECT COALESCE(max(rowid), 0) FROM messages)"


def fts5_query(words: list[str]) -> str:
    """Every word, as FTS5 phrases (so no word is read as an operator)."""
    return " ".join('"' + searchable(word).replace('"', '""') + '"' for word in words)
