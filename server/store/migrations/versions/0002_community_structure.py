"""Communities people run themselves: channel settings, time-outs, bans, invites, audit log.

Community names become unique without regard to case; a database that already
holds clashing names keeps the oldest as it is and renames the others
"NAME (2)", "NAME (3)", …

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Statements both dialects run as they are. ``seq`` is the creation order:
# SQLite's rowid under its own name there, an identity column here.
_COMMON = """
ALTER TABLE channels ADD COLUMN topic TEXT;
ALTER TABLE channels ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN archived BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE channels ADD COLUMN slowmode_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN timeout_until BIGINT;
CREATE TABLE bans(
    community_id TEXT NOT NULL REFERENCES communities(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    by_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY(community_id, user_id));
CREATE TABLE invites(
    code TEXT PRIMARY KEY,
    community_id TEXT NOT NULL REFERENCES communities(id),
    role TEXT NOT NULL,
    max_uses INTEGER,
    uses INTEGER NOT NULL DEFAULT 0,
    expires_ts BIGINT,
    created_by TEXT NOT NULL,
    created_ms BIGINT NOT NULL)
"""
_SQLITE = """
CREATE TABLE audit(
    seq INTEGER PRIMARY KEY,
    community_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL)
"""
_POSTGRES = """
CREATE TABLE audit(
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    community_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL)
"""
_AFTER = """
CREATE INDEX audit_of_community ON audit(community_id, seq);
CREATE INDEX invites_of_community ON invites(community_id);
CREATE UNIQUE INDEX communities_by_name ON communities(lower(name))
"""


def upgrade() -> None:
    bind = op.get_bind()
    _rename_clashing_communities()
    _run(_COMMON)
    _run(_SQLITE if bind.dialect.name == "sqlite" else _POSTGRES)
    _run(_AFTER)


def _rename_clashing_communities() -> None:
    bind = op.get_bind()
    order = "rowid" if bind.dialect.name == "sqlite" else "seq"
    taken: set[str] = set()
    rows = bind.exec_driver_sql(f"SELECT id, name FROM communities ORDER BY {order}").fetchall()
    for community_id, name in rows:
        new, n = name, 1
        while new.lower() in taken:
            n += 1
            new = f"{name} ({n})"
        taken.add(new.lower())
        if new != name:
            bind.execute(
                sa.text("UPDATE communities SET name = :name WHERE id = :id"),
                {"name": new, "id": community_id},
            )


def _run(script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("Agora's migrations go forward only; restore a backup instead")
