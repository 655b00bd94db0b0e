"""The scaled store's discussions: threads, DMs, the message index, read state, resources.

A mixin of ``PostgresStore``; the statements are ``sql_discussions``'s, numbered.
A change to a message locks its ``messages`` row (``FOR UPDATE``), so two
reactions to one message on two nodes apply one after the other.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

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

n = sql.numbered

SEARCH = (
    "SELECT e.frame FROM messages m JOIN channels c ON c.id = m.channel_id"
    " JOIN events e ON e.channel_id = m.channel_id AND e.o = m.o"
    " WHERE to_tsvector('simple', m.text) @@ plainto_tsquery('simple', ?)"
    " AND c.community_id = ? AND c.kind <> 'breakout' AND NOT m.deleted"
    " AND (m.ts < ? OR (m.ts = ? AND m.id < ?))"
)
#: Both rows: after waiting for another change's lock, PostgreSQL re-reads only the
#: rows it locks, and the frame must be the one that change wrote.
_LOCKED_MESSAGE = n(q.MESSAGE) + " FOR UPDATE OF m, e"


class PostgresDiscussions:
    _transaction: Callable[..., Awaitable[Any]]
    _fetch: Callable[..., Awaitable[list[asyncpg.Record]]]
    _fetchrow: Callable[..., Awaitable[asyncpg.Record | None]]
    _fetchval: Callable[..., Awaitable[Any]]
    _execute: Callable[..., Awaitable[str]]
    _append_in: Callable[..., Awaitable[Appended]]

    async def create_thread(self, thread: Channel) -> None:
        async def run(db: asyncpg.Connection) -> None:
            if not await db.fetchval("SELECT 1 FROM channels WHERE id = $1", thread.parent):
                raise KeyError(thread.parent)
            try:
                async with db.transaction():
                    await db.execute(
                        n(q.INSERT_THREAD), *q.thread_values(thread, secrets.token_hex(8))
                    )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"channel id '{thread.id}' is taken") from None
            await db.execute(n(q.FOLLOW), thread.id, thread.created_by)

        await self._transaction(run)

    async def message(self, message_id: str) -> StoredMessage | None:
        row = await self._fetchrow(n(q.MESSAGE), message_id)
        return None if row is None else StoredMessage(row[0], row[1], q.message_of(row[2]))

    async def change_message(
        self, message_id: str, change: MessageChange
    ) -> tuple[Appended | None, StoredMessage]:
        async def run(db: asyncpg.Connection) -> tuple[Appended | None, StoredMessage]:
            row = await db.fetchrow(_LOCKED_MESSAGE, message_id)
            if row is None:
                raise KeyError(message_id)
            stored = StoredMessage(row[0], row[1], q.message_of(row[2]))
            outcome = change(stored.message)
            if outcome is None:
                return None, stored
            frames = await db.fetch(n(q.MESSAGE_FRAMES), message_id)
            await db.executemany(
                n(q.SET_FRAME),
                [(q.rerendered(frame, stored.message), ch, o) for ch, o, frame in frames],
            )
            await db.execute(n(q.SET_MESSAGE), *q.message_row(stored.message))
            t, d = outcome
            appended = None if t is None else await self._append_in(db, stored.channel_id, t, d)
            return appended, stored

        return await self._transaction(run)

    async def pinned(self, channel_id: str) -> list[dict[str, Any]]:
        return [q.found(row[0]) for row in await self._fetch(n(q.PINNED), channel_id)]

    async def threads(
        self, parent: str, tag: str | None, before: tuple[int, str] | None, limit: int
    ) -> list[Channel]:
        rows = await self._fetch(
            n(q.THREADS), parent, q.like(tag, tag=True), *q.cursor(before), limit
        )
        return [sql.channel(row) for row in rows]

    async def follow(self, thread_id: str, user_id: str, following: bool) -> bool:
        statement = q.FOLLOW if following else q.UNFOLLOW
        return bool(await self._fetchval(n(statement), thread_id, user_id))

    async def followers(self, thread_id: str) -> list[str]:
        return [row[0] for row in await self._fetch(n(q.FOLLOWERS), thread_id)]

    async def followed_threads(self, user_id: str) -> list[Channel]:
        return [sql.channel(row) for row in await self._fetch(n(q.FOLLOWED), user_id)]

    async def participants(self, thread_id: str, limit: int) -> list[str]:
        return [row[0] for row in await self._fetch(n(q.PARTICIPANTS), thread_id, limit)]

    async def mark_read(self, user_id: str, channel_id: str, o: int) -> int | None:
        async def run(db: asyncpg.Connection) -> int | None:
            head = await db.fetchval(n(q.HEAD), channel_id)
            if head is None:
                raise KeyError(channel_id)
            return await db.fetchval(n(q.MARK_READ), user_id, channel_id, min(o, head))

        return await self._transaction(run)

    async def read_markers(self, channel_id: str) -> list[tuple[str, int]]:
        return [(row[0], row[1]) for row in await self._fetch(n(q.READ_MARKERS), channel_id)]

    async def read_states(self, user_id: str, channel_ids: list[str]) -> list[ReadState]:
        return await self._transaction(lambda db: _read_states(db, user_id, channel_ids))

    async def dms_and_read_states(
        self, user_id: str, channel_ids: list[str]
    ) -> tuple[list[Channel], list[ReadState]]:
        async def run(db: asyncpg.Connection) -> tuple[list[Channel], list[ReadState]]:
            rows = await db.fetch(n(q.DMS_OF), user_id, user_id)
            dms = [sql.channel(row[:-2], row[-2:]) for row in rows]
            return dms, await _read_states(db, user_id, [*channel_ids, *(c.id for c in dms)])

        return await self._transaction(run)

    async def add_mentions(self, message: StoredMessage, user_ids: list[str]) -> None:
        rows = [(user, message.message["id"], message.channel_id, message.o) for user in user_ids]
        await self._transaction(lambda db: db.executemany(n(q.INSERT_MENTION), rows))

    async def open_dm(self, user_a: str, user_b: str) -> tuple[Channel, bool]:
        pair = sorted((user_a, user_b))

        async def run(db: asyncpg.Connection) -> tuple[Channel, bool]:
            channel_id = await db.fetchval(n(q.DM_OF_PAIR), *pair)
            created = channel_id is None
            if created:
                channel_id = new_id()
                await db.execute(
                    n(q.INSERT_DM_CHANNEL), channel_id, channel_id, secrets.token_hex(8)
                )
                await db.execute(n(q.INSERT_DM), channel_id, *pair)
            return await channel_in(db, channel_id), created

        try:
            return await self._transaction(run)
        except asyncpg.UniqueViolationError:  # opened at the same moment elsewhere
            return await self._transaction(run)

    async def dms_of(self, user_id: str) -> list[Channel]:
        rows = await self._fetch(n(q.DMS_OF), user_id, user_id)
        return [sql.channel(row[:-2], row[-2:]) for row in rows]

    async def share_a_community(self, user_a: str, user_b: str) -> bool:
        return bool(await self._fetchval(n(q.SHARE_A_COMMUNITY), user_a, user_b))

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
        values = [q.searchable(" ".join(words)), community_id, *q.cursor(before), *more]
        return [q.found(row[0]) for row in await self._fetch(n(SEARCH + rest), *values)]

    async def add_resource(self, resource: Resource) -> None:
        try:
            await self._execute(n(q.INSERT_RESOURCE), *q.resource_values(resource))
        except asyncpg.UniqueViolationError:
            raise Conflict(f"the community has a resource with the URL {resource.url}") from None

    async def share_urls(
        self, community_id: str, urls: list[str], by: str, ts: int, message: tuple[str, str]
    ) -> None:
        rows = [
            q.resource_values(
                Resource(new_id(), community_id, url, url, None, (), by, ts, 1, message)
            )
            for url in urls
        ]
        await self._transaction(lambda db: db.executemany(n(q.SHARE_URL), rows))

    async def resources(
        self,
        community_id: str,
        tag: str | None,
        query: str | None,
        before: tuple[int, str] | None,
        limit: int,
    ) -> list[Resource]:
        words = q.like(query)
        rows = await self._fetch(
            n(q.RESOURCES),
            community_id,
            q.like(tag, tag=True),
            words,
            *q.cursor(before),
            limit,
        )
        return [q.resource(row) for row in rows]


async def channel_in(db: asyncpg.Connection, channel_id: str) -> Channel:
    row = await db.fetchrow(n(sql.CHANNEL), channel_id)
    if row is None:
        raise KeyError(channel_id)
    members = await db.fetchrow(n(q.DM_MEMBERS), channel_id) if row[3] == "dm" else ()
    return sql.channel(row, members)


async def _read_states(
    db: asyncpg.Connection, user_id: str, channel_ids: list[str]
) -> list[ReadState]:
    states = []
    for channel_id in channel_ids:
        values = (channel_id, user_id, user_id, channel_id, user_id, channel_id)
        states.append(ReadState(channel_id, *await db.fetchrow(n(q.READ_STATE), *values)))
    return states
