"""Workshops: the live workshop of each workshop channel, and what a fold of its events
cannot hold.

A workshop's state is a fold of its channel's events; ``workshops`` indexes them
(``start_o``: its ``workshop.started``; ``seq``: how many workshop events it has,
which serializes changes across nodes; ``due_at``: when a timer or a pulse runs
out next). The rest is what must not be in the events: who chose what in a poll
(``ballots``; an anonymous poll's choices go at close), who upvoted (``question_votes``),
each participant's latest pulse (``pulses``), per-person counts (``workshop_people``)
and who is in which breakout group (``breakout_members``).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COMMON = """
CREATE TABLE workshops(
    id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    community_id TEXT NOT NULL,
    title TEXT NOT NULL,
    started_ts BIGINT NOT NULL,
    ended_ts BIGINT,
    start_o BIGINT NOT NULL DEFAULT 0,
    seq BIGINT NOT NULL DEFAULT 0,
    due_at BIGINT,
    recap TEXT,
    recap_done BOOLEAN NOT NULL DEFAULT false);
CREATE UNIQUE INDEX live_workshop_of_channel ON workshops(channel_id) WHERE ended_ts IS NULL;
CREATE INDEX workshops_of_community ON workshops(community_id, started_ts);
CREATE INDEX workshops_due ON workshops(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX recaps_to_write ON workshops(ended_ts) WHERE NOT recap_done AND ended_ts IS NOT NULL;
CREATE TABLE ballots(
    poll_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    workshop_id TEXT NOT NULL,
    choices TEXT,
    PRIMARY KEY(poll_id, user_id));
CREATE TABLE question_votes(
    question_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    workshop_id TEXT NOT NULL,
    PRIMARY KEY(question_id, user_id));
CREATE TABLE pulses(
    workshop_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY(workshop_id, user_id));
CREATE TABLE workshop_people(
    workshop_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    messages BIGINT NOT NULL DEFAULT 0,
    hands BIGINT NOT NULL DEFAULT 0,
    turns BIGINT NOT NULL DEFAULT 0,
    votes BIGINT NOT NULL DEFAULT 0,
    questions BIGINT NOT NULL DEFAULT 0,
    upvotes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY(workshop_id, user_id));
CREATE INDEX ballots_of_workshop ON ballots(workshop_id, user_id);
CREATE INDEX upvotes_of_workshop ON question_votes(workshop_id, user_id);
CREATE TABLE breakout_members(
    channel_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY(channel_id, user_id));
"""


def upgrade() -> None:
    for statement in _COMMON.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("Agora's migrations go forward only; restore a backup instead")
