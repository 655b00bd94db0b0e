"""Discussions: threads, DMs, the message index (edits, search, read counts), follows,
read markers, mentions, resources.

A DM belongs to no community, so ``channels.community_id`` may now be NULL (SQLite
rebuilds the table for that, keeping rowids, which are its creation order). Every
stored ``message.created`` is indexed in ``messages`` and its frame gains
``reactions: []``, so that old and new messages have one shape.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import unicodedata

import msgpack
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CHANNEL_COLUMNS = (
    "id, community_id, name, kind, parent, epoch, head, topic, position, archived, slowmode_s"
)

_SQLITE_CHANNELS = f"""
CREATE TABLE channels_new(
    id TEXT PRIMARY KEY,
    community_id TEXT REFERENCES communities(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT,
    epoch TEXT NOT NULL,
    head INTEGER NOT NULL DEFAULT 0,
    topic TEXT,
    position INTEGER NOT NULL DEFAULT 0,
    archived BOOLEAN NOT NULL DEFAULT false,
    slowmode_s INTEGER NOT NULL DEFAULT 0);
INSERT INTO channels_new(rowid, {_CHANNEL_COLUMNS})
    SELECT rowid, {_CHANNEL_COLUMNS} FROM channels;
DROP TABLE channels;
ALTER TABLE channels_new RENAME TO channels;
CREATE UNIQUE INDEX channels_by_name ON channels(community_id, name COLLATE NOCASE)
"""
_POSTGRES_CHANNELS = "ALTER TABLE channels ALTER COLUMN community_id DROP NOT NULL"

# Both dialects. ``msgs`` counts a channel's messages, ``last_ts`` is its latest one's.
_COMMON = """
ALTER TABLE channels ADD COLUMN title TEXT;
ALTER TABLE channels ADD COLUMN created_by TEXT;
ALTER TABLE channels ADD COLUMN root_message TEXT;
ALTER TABLE channels ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE channels ADD COLUMN resolved BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE channels ADD COLUMN msgs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN last_ts BIGINT;
CREATE INDEX threads_of_parent ON channels(parent, last_ts);
ALTER TABLE events ADD COLUMN message_id TEXT;
CREATE INDEX events_of_message ON events(message_id) WHERE message_id IS NOT NULL;
CREATE TABLE messages(
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    o BIGINT NOT NULL,
    author_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    text TEXT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT false,
    pinned BOOLEAN NOT NULL DEFAULT false);
CREATE INDEX messages_in_channel ON messages(channel_id, o);
CREATE INDEX messages_by_time ON messages(ts, id);
CREATE TABLE follows(
    thread_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY(thread_id, user_id));
CREATE INDEX follows_by_user ON follows(user_id);
CREATE TABLE reads(
    user_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    o BIGINT NOT NULL,
    PRIMARY KEY(user_id, channel_id));
CREATE TABLE mentions(
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    o BIGINT NOT NULL,
    PRIMARY KEY(user_id, message_id));
CREATE INDEX mentions_of_user ON mentions(user_id, channel_id, o);
CREATE TABLE dms(
    channel_id TEXT PRIMARY KEY,
    user_a TEXT NOT NULL,
    user_b TEXT NOT NULL);
CREATE UNIQUE INDEX dms_by_pair ON dms(user_a, user_b);
CREATE INDEX dms_by_second ON dms(user_b);
CREATE TABLE resources(
    id TEXT PRIMARY KEY,
    community_id TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT,
    note TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    by_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    shares INTEGER NOT NULL DEFAULT 0,
    message_channel TEXT,
    message_id TEXT,
    words TEXT NOT NULL DEFAULT '');
CREATE UNIQUE INDEX resources_by_url ON resources(community_id, url) WHERE url IS NOT NULL;
CREATE INDEX resources_of_community ON resources(community_id, ts)
"""

# The full-text index of messages.text: FTS5, or a GIN index. FTS5 takes new messages in
# batches (a segment per transaction costs more than the rows in it): the messages with a
# rowid above messages_indexed.upto wait for the store's next batch (always before a
# search), and only indexed ones need their old words taken out when they change.
_SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages',"
    " content_rowid='rowid', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TABLE messages_indexed(upto INTEGER NOT NULL)",
    "INSERT INTO messages_indexed(upto) VALUES (0)",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages"
    " WHEN old.rowid <= (SELECT upto FROM messages_indexed) BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);"
    " END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages"
    " WHEN old.rowid <= (SELECT upto FROM messages_indexed) BEGIN"
    " INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);"
    " INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text); END",
]
_POSTGRES_SEARCH = [
    "CREATE INDEX messages_search ON messages USING GIN (to_tsvector('simple', text))",
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _run(_SQLITE_CHANNELS if sqlite else _POSTGRES_CHANNELS)
    _run(_COMMON)
    for statement in _SQLITE_SEARCH if sqlite else _POSTGRES_SEARCH:
        op.execute(statement)
    _index_messages()
    if sqlite:
        op.execute("INSERT INTO messages_fts(rowid, text) SELECT rowid, text FROM messages")
        op.execute(
            "UPDATE messages_indexed SET upto = (SELECT COALESCE(max(rowid), 0) FROM messages)"
        )


def _index_messages() -> None:
    """Index the messages already stored, and give their frames ``reactions: []``."""
    bind = op.get_bind()
    rows = bind.exec_driver_sql(
        "SELECT channel_id, o, frame FROM events WHERE t = 'message.created' ORDER BY channel_id, o"
    ).fetchall()
    for channel_id, o, frame in rows:
        event = msgpack.unpackb(bytes(frame), raw=False)
        message = event["d"]["message"]
        message.setdefault("reactions", [])
        bind.execute(
            sa.text(
                "UPDATE events SET frame = :frame, message_id = :id"
                " WHERE channel_id = :ch AND o = :o"
            ),
            {
                "frame": msgpack.packb(event, use_bin_type=True),
                "id": message["id"],
                "ch": channel_id,
                "o": o,
            },
        )
        bind.execute(
            sa.text(
                "INSERT INTO messages(id, channel_id, o, author_id, ts, text)"
                " VALUES (:id, :ch, :o, :author, :ts, :text) ON CONFLICT (id) DO NOTHING"
            ),
            {
                "id": message["id"],
                "ch": channel_id,
                "o": o,
                "author": message["author"]["id"],
                "ts": message["ts"],
                "text": _searchable(message["text"]),
            },
        )
    bind.exec_driver_sql(
        "UPDATE channels"
        " SET msgs = (SELECT count(*) FROM messages m WHERE m.channel_id = channels.id),"
        " last_ts = (SELECT max(ts) FROM messages m WHERE m.channel_id = channels.id)"
    )


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("Agora's migrations go forward only; restore a backup instead")


def _searchable(text: str) -> str:
    """What ``messages.text`` holds: the text composed and case-folded (a migration keeps
    its own copy of the rule it was written with)."""
    return unicodedata.normalize("NFC", text).casefold()
