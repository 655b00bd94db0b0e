"""Names: each account's username skeleton, so a confusable name is one indexed lookup.

``skeleton`` is ``server.domain.names.skeleton(username)``; accounts made
before this revision get theirs here. The index is not unique: a database may
already hold two names that look alike, and the store refuses only new ones.

Revision ID: 0005n
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.domain.names import skeleton

revision = "0005n"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE users ADD COLUMN skeleton TEXT")
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, username FROM users")).fetchall()
    if rows:
        connection.execute(
            sa.text("UPDATE users SET skeleton = :skeleton WHERE id = :id"),
            [{"id": user_id, "skeleton": skeleton(username)} for user_id, username in rows],
        )
    op.execute("CREATE INDEX users_by_skeleton ON users(skeleton)")


def downgrade() -> None:
    raise NotImplementedError("Agora's migrations go forward only; restore a backup instead")
