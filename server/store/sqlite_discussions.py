"""The embedded store's discussions: threads, DMs, the message index, read state, resources.

A mixin of ``SQLiteStore``: each operation runs on its worker thread, in its
group-committed transaction (see ``server/store/sqlite.py``).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from server.ids import new_id
from server.store import sql
from server.store import sql_discussions as q
from server.store.base import (
    Appended,
    Channel,
    Conflict,
    MessageChange,
    ReadState,
    Resource,
    StoredMessage,
)

T = TypeVar("T")

SEARCH = (
    "SELECT e.frame FROM messages_fts f JOIN messages m ON m.rowid = f.rowid"
    " JOIN channels c ON c.id = m.channel_id"
    " JOIN events e ON e.channel_id = m.channel_id AND e.o = m.o"
    " WHERE messages_fts MATCH ? AND c.community_id = ? AND c.kind <> 'breakout'"
    " AND NOT m.deleted"
    " AND (m.ts < ? OR (m.ts = ? AND m.id < ?))"
)


#: Messages that wait to be indexed for search before a batch goes in (see migration 0003).
SEARCH_BATCH = 64


class SQLiteDiscussions:
    _call: Callable[..., Any]
    #: messages appended since the last batch went into the search index (worker thread)
    _unindexed = 0

    def _indexed(self, db: sqlite3.Connection) -> None:
        """A new message is stored: index the waiting ones once there are enough."""
        self._unindexed += 1
        if self._unindexed >= SEARCH_BATCH:
            self._index_waiting(db)

    def _index_waiting(self, db: sqlite3.Connection) -> None:
        db.execute(q.INDEX_WAITING)
        db.execute(q.INDEXED_UPTO)
        self._unindexed = 0

    _append: Callable[..., Appended]

    async def create_thread(self, thread: Channel) -> None:
        def run(db: sqlite3.Connection) -> None:
            if (
                db.execute("SELECT 1 FROM channels WHERE id = ?", (thread.parent,)).fetchone()
                is None
            ):
                raise KeyError(thread.parent)
            try:
                db.execute(q.INSERT_THREAD, q.thread_values(thread, secrets.token_hex(8)))
            except sqlite3.IntegrityError:
                raise Conflict(f"channel id '{thread.id}' is taken") from None
            db.execute(q.FOLLOW, (thread.id, thread.created_by)).fetchall()

        await self._call(run)

    async def message(self, message_id: str) -> StoredMessage | None:
        return await self._call(_message, message_id)

    async def change_message(
        self, message_id: str, change: MessageChange
    ) -> tuple[Appended | None, StoredMessage]:
        def run(db: sqlite3.Connection) -> tuple[Appended | None, StoredMessage]:
            stored = _message(db, message_id)
            if stored is None:
                raise KeyError(message_id)
            outcome = change(stored.message)
            if outcome is None:
                return None, stored
            for channel_id, o, frame in db.execute(q.MESSAGE_FRAMES, (message_id,)).fetchall():
                db.execute(q.SET_FRAME, (q.rerendered(frame, stored.message), channel_id, o))
            db.execute(q.SET_MESSAGE, q.message_row(stored.message))
            t, d = outcome
            appended = None if t is None else self._append(db, stored.channel_id, t, d, None)
            return appended, stored

        return await self._call(run)

    async def pinned(self, channel_id: str) -> list[dict[str, Any]]:
        return await self._call(
            lambda db: [q.found(row[0]) for row in db.execute(q.PINNED, (channel_id,))]
        )

    async def threads(
        self, parent: str, tag: str | None, before: tuple[int, str] | None, limit: int
    ) -> list[Channel]:
        values = (parent, q.like(tag, tag=True), *q.cursor(before), limit)
        return await self._call(
            lambda db: [sql.channel(row) for row in db.execute(q.THREADS, values)]
        )

    async def follow(self, thread_id: str, user_id: str, following: bool) -> bool:
        statement = q.FOLLOW if following else q.UNFOLLOW
        return await self._call(
            lambda db: bool(db.execute(statement, (thread_id, user_id)).fetchall())
        )

    async def followers(self, thread_id: str) -> list[str]:
        return await self._call(
            lambda db: [row[0] for row in db.execute(q.FOLLOWERS, (thread_id,))]
        )

    async def followed_threads(self, user_id: str) -> list[Channel]:
        return await self._call(
            lambda db: [sql.channel(row) for row in db.execute(q.FOLLOWED, (user_id,))]
        )

    async def participants(self, thread_id: str, limit: int) -> list[str]:
        return await self._call(
            lambda db: [row[0] for row in db.execute(q.PARTICIPANTS, (thread_id, limit))]
        )

    async def mark_read(self, user_id: str, channel_id: str, o: int) -> int | None:
        def run(db: sqlite3.Connection) -> int | None:
            head = db.execute(q.HEAD, (channel_id,)).fetchone()
            if head is None:
                raise KeyError(channel_id)
            row = db.execute(q.MARK_READ, (user_id, channel_id, min(o, head[0]))).fetchone()
            return None if row is None else row[0]

        return await self._call(run)

    async def read_markers(self, channel_id: str) -> list[tuple[str, int]]:
        return await self._call(
            lambda db: [(row[0], row[1]) for row in db.execute(q.READ_MARKERS, (channel_id,))]
        )

    async def read_states(self, user_id: str, channel_ids: list[str]) -> list[ReadState]:
        return await self._call(_read_states, user_id, channel_ids)

    async def dms_and_read_states(
        self, user_id: str, channel_ids: list[str]
    ) -> tuple[list[Channel], list[ReadState]]:
        def run(db: sqlite3.Connection) -> tuple[list[Channel], list[ReadState]]:
            dms = _dms_of(db, user_id)
            return dms, _read_states(db, user_id, [*channel_ids, *(c.id for c in dms)])

        return await self._call(run)

    async def add_mentions(self, message: StoredMessage, user_ids: list[str]) -> None:
        rows = [(user, message.message["id"], message.channel_id, message.o) for user in user_ids]
        await self._call(lambda db: db.executemany(q.INSERT_MENTION, rows))

    async def open_dm(self, user_a: str, user_b: str) -> tuple[Channel, bool]:
        pair = tuple(sorted((user_a, user_b)))

        def run(db: sqlite3.Connection) -> tuple[Channel, bool]:
            row = db.execute(q.DM_OF_PAIR, pair).fetchone()
            created = row is None
            if created:
                channel_id = new_id()
                db.execute(q.INSERT_DM_CHANNEL, (channel_id, channel_id, secrets.token_hex(8)))
                db.execute(q.INSERT_DM, (channel_id, *pair))
            else:
                channel_id = row[0]
            channel = channel_of(db, channel_id)
            assert channel is not None
            return channel, created

        return await self._call(run)

    async def dms_of(self, user_id: str) -> list[Channel]:
        return await self._call(_dms_of, user_id)

    async def share_a_community(self, user_a: str, user_b: str) -> bool:
        return await self._call(
            lambda db: db.execute(q.SHARE_A_COMMUNITY, (user_a, user_b)).fetchone() is not None
        )

    async def search(
        self,
        community_id: str,
        words: list[str],
        *,
        channel_id: str | None,
        author_id: str | None,
        before: tuple[int, str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        rest, more = q.search_rest(channel_id, author_id, limit)
        values = [q.fts5_query(words), community_id, *q.cursor(before), *more]

        def run(db: sqlite3.Connection) -> list[dict[str, Any]]:
            self._index_waiting(db)  # so that a search finds every message stored before it
            return [q.found(row[0]) for row in db.execute(SEARCH + rest, values)]

        return await self._call(run)

    async def add_resource(self, resource: Resource) -> None:
        def run(db: sqlite3.Connection) -> None:
            try:
                db.execute(q.INSERT_RESOURCE, q.resource_values(resource))
            except sqlite3.IntegrityError:
                raise Conflict(
                    f"the community has a resource with the URL {resource.url}"
                ) from None

        await self._call(run)

    async def share_urls(
        self, community_id: str, urls: list[str], by: str, ts: int, message: tuple[str, str]
    ) -> None:
        rows = [
            q.resource_values(
                Resource(new_id(), community_id, url, url, None, (), by, ts, 1, message)
            )
            for url in urls
        ]
        await self._call(lambda db: db.executemany(q.SHARE_URL, rows))

    async def resources(
        self,
        community_id: str,
        tag: str | None,
        query: str | None,
        before: tuple[int, str] | None,
        limit: int,
    ) -> list[Resource]:
        words = q.like(query)
        values = (
            community_id,
            q.like(tag, tag=True),
            words,
            *q.cursor(before),
            limit,
        )
        return await self._call(
            lambda db: [q.resource(row) for row in db.execute(q.RESOURCES, values)]
        )


def _message(db: sqlite3.Connection, message_id: str) -> StoredMessage | None:
    row = db.execute(q.MESSAGE, (message_id,)).fetchone()
    return None if row is None else StoredMessage(row[0], row[1], q.message_of(row[2]))


def channel_of(db: sqlite3.Connection, channel_id: str) -> Channel | None:
    row = db.execute(sql.CHANNEL, (channel_id,)).fetchone()
    if row is None:
        return None
    members = db.execute(q.DM_MEMBERS, (channel_id,)).fetchone() if row[3] == "dm" else ()
    return sql.channel(row, members)


def index_message(
    db: sqlite3.Connection, channel_id: str, offset: int, message: dict[str, Any]
) -> None:
    """Index a new message (for edits and read counts; search takes it in a batch)."""
    db.execute(
        q.INSERT_MESSAGE,
        (
            message["id"],
            channel_id,
            offset,
            message["author"]["id"],
            message["ts"],
            q.searchable(message["text"]),
        ),
    )


def _read_states(db: sqlite3.Connection, user_id: str, channel_ids: list[str]) -> list[ReadState]:
    states = []
    for channel_id in channel_ids:
        values = (channel_id, user_id, user_id, channel_id, user_id, channel_id)
        states.append(ReadState(channel_id, *db.execute(q.READ_STATE, values).fetchone()))
    return states


def _dms_of(db: sqlite3.Connection, user_id: str) -> list[Channel]:
    return [sql.channel(row[:-2], row[-2:]) for row in db.execute(q.DMS_OF, (user_id, user_id))]
