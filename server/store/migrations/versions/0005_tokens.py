"""Tokens that can be taken back: when each was last used and what made it, and
accounts an operator disabled.

``tokens.last_used_ms`` is written coarsely (see ``server/domain/tokens.py``), and
a token unused for the ``token_ttl_days`` setting is refused. ``tokens.label`` is
what the client said it was (its User-Agent) when the token was issued, to tell a
user's sessions apart. ``users.disabled_ms`` is when an operator disabled the
account (NULL: enabled); such an account can neither log in nor identify.

Revision ID: 0005
Revises: 0005n
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0005n"
branch_labels = None
depends_on = None

# SQLite's ALTER TABLE adds one column at a time; both dialects read these as they are.
_COMMON = """
ALTER TABLE tokens ADD COLUMN last_used_ms BIGINT;
ALTER TABLE tokens ADD COLUMN label TEXT;
ALTER TABLE users ADD COLUMN disabled_ms BIGINT;
CREATE INDEX tokens_of_user ON tokens(user_id)
"""


def upgrade() -> None:
    for statement in _COMMON.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("Agora's migrations go forward only; restore a backup instead")
