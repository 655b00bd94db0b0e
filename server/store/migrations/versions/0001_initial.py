"""The first schema: accounts, tokens, communities, members, channels, logs, nonces.

An SQLite database made before migrations existed already has some of this:
every statement for SQLite is written to leave what is there in place and add
only what is missing, so such a file is adopted as revision 0001.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users(
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    bot INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    owner_id TEXT);
CREATE TABLE IF NOT EXISTS tokens(
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    secret_hash BLOB NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS communities(
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members(
    community_id TEXT NOT NULL REFERENCES communities(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    joined_ms INTEGER NOT NULL,
    seq INTEGER,
    PRIMARY KEY(community_id, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels(
    id TEXT PRIMARY KEY,
    community_id TEXT NOT NULL REFERENCES communities(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT,
    epoch TEXT NOT NULL,
    head INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS events(
    channel_id TEXT NOT NULL,
    o INTEGER NOT NULL,
    t TEXT NOT NULL,
    frame BLOB NOT NULL,
    PRIMARY KEY(channel_id, o)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces(
    channel_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    o INTEGER NOT NULL,
    PRIMARY KEY(channel_id, user_id, nonce)) WITHOUT ROWID;
"""

#: Columns that releases before migrations added by hand; a file may lack them.
_SQLITE_ADDED_COLUMNS = {
    ("users", "owner_id"): "ALTER TABLE users ADD COLUMN owner_id TEXT",
    # join order: joined_ms alone ties within a millisecond
    ("members", "seq"): "ALTER TABLE members ADD COLUMN seq INTEGER",
}

_SQLITE_AFTER = """
UPDATE members SET seq = (SELECT COUNT(*) FROM members AS earlier
    WHERE earlier.community_id = members.community_id
    AND (earlier.joined_ms, earlier.user_id) <= (members.joined_ms, members.user_id))
    WHERE seq IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS channels_by_name
    ON channels(community_id, name COLLATE NOCASE);
"""

# ``seq`` gives creation order where SQLite has its rowid. ``msgpack_uint`` is
# an offset as msgpack encodes it: an append finishes its frame in SQL (see
# ``server/store/postgres.py``). The script is split on ";" and so has none inside.
_POSTGRES = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users(
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    bot BOOLEAN NOT NULL DEFAULT false,
    created_ms BIGINT NOT NULL,
    owner_id TEXT,
    seq BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE UNIQUE INDEX users_by_name ON users(lower(username));
CREATE TABLE tokens(
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    secret_hash BYTEA NOT NULL,
    created_ms BIGINT NOT NULL);
CREATE TABLE communities(
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE TABLE members(
    community_id TEXT NOT NULL REFERENCES communities(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    joined_ms BIGINT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY(community_id, user_id));
CREATE INDEX members_in_join_order ON members(community_id, seq);
CREATE INDEX members_by_user ON members(user_id);
CREATE TABLE channels(
    id TEXT PRIMARY KEY,
    community_id TEXT NOT NULL REFERENCES communities(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT,
    epoch TEXT NOT NULL,
    head BIGINT NOT NULL DEFAULT 0,
    seq BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE UNIQUE INDEX channels_by_name ON channels(community_id, lower(name));
CREATE INDEX channels_of_community ON channels(community_id, seq);
CREATE TABLE events(
    channel_id TEXT NOT NULL,
    o BIGINT NOT NULL,
    t TEXT NOT NULL,
    frame BYTEA NOT NULL,
    PRIMARY KEY(channel_id, o));
CREATE TABLE nonces(
    channel_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    o BIGINT NOT NULL,
    PRIMARY KEY(channel_id, user_id, nonce));
CREATE FUNCTION msgpack_uint(n BIGINT) RETURNS BYTEA LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE
        WHEN n < 128 THEN substring(int8send(n) FROM 8)
        WHEN n < 256 THEN '\\xcc'::bytea || substring(int8send(n) FROM 8)
        WHEN n < 65536 THEN '\\xcd'::bytea || substring(int8send(n) FROM 7)
        WHEN n < 4294967296 THEN '\\xce'::bytea || substring(int8send(n) FROM 5)
        ELSE '\\xcf'::bytea || int8send(n)
    END
$$
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _run(_SQLITE)
        for (table, column), alter in _SQLITE_ADDED_COLUMNS.items():
            columns = {row[1] for row in bind.exec_driver_sql(f"PRAGMA table_info({table})")}
            if column not in columns:
                op.execute(alter)
        _run(_SQLITE_AFTER)
    else:
        _run(_POSTGRES)


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("Agora's migrations go forward only; restore a backup instead")
