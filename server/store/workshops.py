"""What the stores keep of workshops beyond their channel's events (see migration 0004).

Both SQL stores run these statements as they are (``?`` placeholders); each
provides two primitives, ``_rows`` (a read) and ``_commit`` (one transaction
that checks the workshop's ``seq``, appends its events and runs its writes),
and this mixin builds the rest on them.

A change to a live workshop is optimistic: the caller decided on the state of
``version`` (its events folded up to ``seq``); the commit bumps ``version`` only
if it is still that, or raises ``Stale`` and the caller folds the newer events
and decides again. Two nodes never both apply a change to the same state, even
a change with no event (a pulse, a look at what is due), and chat in the channel
does not count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from protocol.workshop import WORKSHOP_EVENTS

if TYPE_CHECKING:
    from server.store.base import Appended


class Stale(Exception):
    """The workshop changed (or ended) since the state the change was decided on."""


class FirstOffset:
    """In a write's values: the offset of the first event of the same commit."""


FIRST_O = FirstOffset()


@dataclass(frozen=True, slots=True)
class Write:
    statement: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class WorkshopRow:
    id: str
    channel_id: str
    community_id: str
    title: str
    started_ts: int
    ended_ts: int | None
    start_o: int
    seq: int
    version: int
    due_at: int | None
    recap: dict[str, Any] | None
    recap_done: bool

    def session(self) -> dict[str, Any]:
        """The workshop as ``community.participation`` lists it."""
        out: dict[str, Any] = {
            "id": self.id,
            "channel": self.channel_id,
            "title": self.title,
            "started_ts": self.started_ts,
        }
        if self.ended_ts is not None:
            out["ended_ts"] = self.ended_ts
        return out


@dataclass(frozen=True, slots=True)
class Person:
    """One person's counts in one workshop (a row means they attended)."""

    workshop_id: str
    user_id: str
    messages: int
    hands: int
    turns: int
    votes: int
    questions: int
    upvotes: int

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in COUNTS}


#: The per-person counts of ``workshop_people``.
COUNTS = ("messages", "hands", "turns", "votes", "questions", "upvotes")

_COLUMNS = (
    "id, channel_id, community_id, title, started_ts, ended_ts, start_o, seq, version, due_at,"
    " recap, recap_done"
)
LIVE = f"SELECT {_COLUMNS} FROM workshops WHERE channel_id = ? AND ended_ts IS NULL"
BY_ID = f"SELECT {_COLUMNS} FROM workshops WHERE id = ?"
DUE = (
    f"SELECT {_COLUMNS} FROM workshops WHERE (due_at IS NOT NULL AND due_at <= ?)"
    " OR (ended_ts IS NOT NULL AND ended_ts < ? AND NOT recap_done)"
    " ORDER BY COALESCE(due_at, ended_ts) LIMIT 100"
)
EVENTS = (
    "SELECT frame FROM events WHERE channel_id = ? AND o > ? AND o <= COALESCE(?, o)"
    f" AND t IN ({', '.join(repr(t) for t in sorted(WORKSHOP_EVENTS))}) ORDER BY o LIMIT ?"
)
RECENT = (
    f"SELECT {_COLUMNS} FROM workshops WHERE community_id = ?"
    " ORDER BY started_ts DESC, id DESC LIMIT ?"
)
BUMP = (
    "UPDATE workshops SET seq = seq + ?, version = version + 1"
    " WHERE id = ? AND version = ? AND ended_ts IS NULL RETURNING seq"
)
INSERT = (
    "INSERT INTO workshops(id, channel_id, community_id, title, started_ts, start_o, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, 1)"
)
#: Look at the workshop at ``due_at`` or earlier (a look that finds nothing due sets the next).
SET_DUE = (
    "UPDATE workshops SET due_at = CASE WHEN due_at IS NULL OR due_at > ? THEN ? ELSE due_at END"
    " WHERE id = ?"
)
RESET_DUE = "UPDATE workshops SET due_at = ? WHERE id = ?"
END = "UPDATE workshops SET ended_ts = ?, due_at = NULL, recap = ? WHERE id = ?"
RECAP_DONE = "UPDATE workshops SET recap_done = true WHERE id = ?"

BALLOT = "SELECT choices FROM ballots WHERE poll_id = ? AND user_id = ?"
BALLOTS_OF_USER = (
    "SELECT poll_id, choices FROM ballots WHERE workshop_id = ? AND user_id = ?"
    " AND choices IS NOT NULL"
)
BALLOTS_OF_POLL = "SELECT user_id, choices FROM ballots WHERE poll_id = ? AND choices IS NOT NULL"
PUT_BALLOT = (
    "INSERT INTO ballots(poll_id, user_id, workshop_id, choices) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (poll_id, user_id) DO UPDATE SET choices = excluded.choices"
)
#: An anonymous poll's close: who voted stays, what they chose goes.
FORGET_CHOICES = "UPDATE ballots SET choices = NULL WHERE poll_id = ?"

UPVOTED = "SELECT 1 FROM question_votes WHERE question_id = ? AND user_id = ?"
UPVOTED_BY = "SELECT question_id FROM question_votes WHERE workshop_id = ? AND user_id = ?"
UPVOTERS = "SELECT user_id FROM question_votes WHERE question_id = ?"
ADD_UPVOTE = "INSERT INTO question_votes(question_id, user_id, workshop_id) VALUES (?, ?, ?)"
DROP_UPVOTE = "DELETE FROM question_votes WHERE question_id = ? AND user_id = ?"

PULSES = "SELECT user_id, kind, ts FROM pulses WHERE workshop_id = ?"
PUT_PULSE = (
    "INSERT INTO pulses(workshop_id, user_id, kind, ts) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (workshop_id, user_id) DO UPDATE SET kind = excluded.kind, ts = excluded.ts"
)
DROP_PULSES = "DELETE FROM pulses WHERE workshop_id = ? AND ts <= ?"

ATTEND = (
    "INSERT INTO workshop_people(workshop_id, user_id) VALUES (?, ?)"
    " ON CONFLICT (workshop_id, user_id) DO NOTHING"
)
COUNT = {
    k: (
        f"INSERT INTO workshop_people(workshop_id, user_id, {k}) VALUES (?, ?, ?)"
        " ON CONFLICT (workshop_id, user_id)"
        f" DO UPDATE SET {k} = workshop_people.{k} + excluded.{k}"
    )
    for k in COUNTS
}
PEOPLE = (
    "SELECT workshop_id, user_id, messages, hands, turns, votes, questions, upvotes"
    " FROM workshop_people WHERE workshop_id = ?"
)

ARCHIVE_ROOM = "UPDATE channels SET archived = true WHERE id = ?"
ADD_GROUP_MEMBER = "INSERT INTO breakout_members(channel_id, user_id) VALUES (?, ?)"
IN_GROUP = "SELECT 1 FROM breakout_members WHERE channel_id = ? AND user_id = ?"


def _row(row: Any) -> WorkshopRow:
    return WorkshopRow(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        None if row[10] is None else json.loads(row[10]),
        bool(row[11]),
    )


class WorkshopStore(Protocol):
    """Part of ``Store``; a store implements ``_rows`` and ``_commit`` and inherits the rest."""

    async def _rows(self, statement: str, values: tuple[Any, ...]) -> list[Any]:
        """The rows of one statement, run on its own (and committed)."""

    async def _commit(
        self,
        bump: tuple[str, int, int] | None,
        channel_id: str,
        events: list[tuple[str, dict[str, Any]]],
        writes: list[Write],
    ) -> list[Appended]:
        """In one transaction: ``bump`` (``(workshop id, version, events)``: raise ``Stale``
        unless its ``version`` is that, then count one change and the events), append
        ``events`` to the channel, run ``writes`` (``FIRST_O`` in their values is the
        first event's offset)."""

    async def _one(self, statement: str, values: tuple[Any, ...]) -> Any:
        rows = await self._rows(statement, values)
        return rows[0] if rows else None

    async def live_workshop(self, channel_id: str) -> WorkshopRow | None:
        row = await self._one(LIVE, (channel_id,))
        return None if row is None else _row(row)

    async def workshop(self, workshop_id: str) -> WorkshopRow | None:
        row = await self._one(BY_ID, (workshop_id,))
        return None if row is None else _row(row)

    async def due_workshops(self, now: int, ended_before: int) -> list[WorkshopRow]:
        """Live workshops with a timer or pulse due, and workshops ended before
        ``ended_before`` whose recap is unwritten."""
        return [_row(row) for row in await self._rows(DUE, (now, ended_before))]

    async def recent_workshops(self, community_id: str, limit: int) -> list[WorkshopRow]:
        return [_row(row) for row in await self._rows(RECENT, (community_id, limit))]

    async def commit_workshop(
        self,
        workshop_id: str | None,
        version: int,
        channel_id: str,
        events: list[tuple[str, dict[str, Any]]],
        writes: list[Write],
    ) -> list[Appended]:
        """Store a change of the workshop decided on its state at ``version``
        (``workshop_id`` None: a new workshop, whose ``INSERT`` is among ``writes``)."""
        bump = None if workshop_id is None else (workshop_id, version, len(events))
        return await self._commit(bump, channel_id, events, writes)

    async def workshop_events(
        self, channel_id: str, after: int, until: int | None, limit: int
    ) -> list[bytes]:
        """The channel's workshop events with ``after < o <= until``, oldest first."""
        return [row[0] for row in await self._rows(EVENTS, (channel_id, after, until, limit))]

    async def set_recap_done(self, workshop_id: str) -> None:
        await self._rows(RECAP_DONE, (workshop_id,))

    async def ballot(self, poll_id: str, user_id: str) -> tuple[bool, list[int] | None]:
        """Whether the user voted in the poll, and their choices (None once forgotten)."""
        row = await self._one(BALLOT, (poll_id, user_id))
        if row is None:
            return False, None
        return True, None if row[0] is None else json.loads(row[0])

    async def ballots_of(self, workshop_id: str, user_id: str) -> dict[str, list[int]]:
        rows = await self._rows(BALLOTS_OF_USER, (workshop_id, user_id))
        return {row[0]: json.loads(row[1]) for row in rows}

    async def poll_ballots(self, poll_id: str) -> dict[str, list[int]]:
        return {row[0]: json.loads(row[1]) for row in await self._rows(BALLOTS_OF_POLL, (poll_id,))}

    async def upvoted(self, question_id: str, user_id: str) -> bool:
        return await self._one(UPVOTED, (question_id, user_id)) is not None

    async def upvoted_by(self, workshop_id: str, user_id: str) -> list[str]:
        return [row[0] for row in await self._rows(UPVOTED_BY, (workshop_id, user_id))]

    async def upvoters(self, question_id: str) -> list[str]:
        return [row[0] for row in await self._rows(UPVOTERS, (question_id,))]

    async def pulses(self, workshop_id: str) -> list[tuple[str, str, int]]:
        return [(row[0], row[1], row[2]) for row in await self._rows(PULSES, (workshop_id,))]

    async def attend(self, workshop_id: str, user_id: str) -> None:
        await self._rows(ATTEND, (workshop_id, user_id))

    async def attend_all(self, workshop_id: str, user_ids: list[str]) -> None:
        writes = [Write(ATTEND, (workshop_id, user)) for user in user_ids]
        await self._commit(None, "", [], writes)

    async def count(self, workshop_id: str, user_id: str, what: str, by: int = 1) -> None:
        await self._rows(COUNT[what], (workshop_id, user_id, by))

    async def people(self, workshop_id: str) -> list[Person]:
        return [Person(*row) for row in await self._rows(PEOPLE, (workshop_id,))]

    async def in_group(self, channel_id: str, user_id: str) -> bool:
        return await self._one(IN_GROUP, (channel_id, user_id)) is not None


def counted(workshop_id: str, user_id: str, what: str, by: int = 1) -> Write:
    return Write(COUNT[what], (workshop_id, user_id, by))
