"""The scaled Store: PostgreSQL, shared by every process of a deployment.

Each operation runs on a connection of one bounded pool (asyncpg), in its own
transaction, and returns after the commit: acknowledged is durable as far as
the server's ``synchronous_commit`` says (``on``, the default, waits for the
WAL flush).

An append is one statement, so one round trip and one commit::

    UPDATE channels SET head = head + 1 … RETURNING head   -- locks the channel row
    INSERT INTO events … frame = unfinished || msgpack_uint(head)
    INSERT INTO nonces …                                     -- with an idempotency key

The channel's row lock serializes appends to one channel across every
process until the commit, so offsets are gapless and commit in offset order.
Python encodes the frame as a msgpack map whose last key is ``o`` (the
``unfinished`` bytes) and SQL appends the offset's msgpack, so the stored
frame is exactly what ``msgpack.packb`` makes of the event. A repeated
idempotency key breaks the ``nonces`` primary key; the statement then
changed nothing, and the original event is read back.

With ``synchronous_commit = off`` (or ``fsync = off``) a crash of PostgreSQL
can lose acknowledged commits. The store notices a restart of the PostgreSQL
server when it opens and on every new connection (all of them are new after
a restart), and then gives every channel a new epoch (see
``server/store/epochs.py``) and calls ``on_epochs_rotated``: the app closes
its sessions so that they resubscribe and learn of it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg
import msgpack

from protocol import event
from server.domain.names import skeleton
from server.errors import Unavailable
from server.ids import new_id, now_ms
from server.store import epochs, sql
from server.store import workshops as workshops_sql
from server.store.base import (
    Appended,
    AuditEntry,
    Channel,
    Community,
    CommunityView,
    Conflict,
    Invite,
    LogHead,
    Membership,
    Publishable,
    Token,
    User,
)
from server.store.migrate import LOCK_KEY, upgrade_postgres
from server.store.postgres_discussions import PostgresDiscussions, channel_in
from server.store.sql_discussions import indexed_message, searchable
from server.store.workshops import FIRST_O, Stale, WorkshopStore, Write

T = TypeVar("T")

log = logging.getLogger("agora.store")

#: Connections to PostgreSQL per process; more concurrent operations wait for one.
POOL_SIZE = 10
#: Seconds to open a connection or wait for a free one; an outage fails fast.
CONNECT_TIMEOUT = 2.0
#: Seconds one statement may take before it fails with ``Unavailable``.
COMMAND_TIMEOUT = 10.0

#: The errors that mean "the database cannot be reached", not "the operation is wrong".
_OUTAGES = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # the connection failed or was lost (class 08)
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up (class 57)
    asyncpg.InterfaceError,  # a connection closed under the pool
)

_USERS = f"SELECT {sql.USER_COLUMNS} FROM users u ORDER BY u.seq"
_CREDENTIALS = (
    f"SELECT {sql.USER_COLUMNS}, u.password_hash FROM users u WHERE lower(u.username) = lower($1)"
)
_COMMUNITIES = "SELECT id, name FROM communities ORDER BY seq"
_COMMUNITIES_OF = (
    "SELECT c.id, c.name, m.role FROM members m JOIN communities c ON c.id = m.community_id"
    " WHERE m.user_id = $1 ORDER BY c.seq"
)
_CHANNELS = (
    f"SELECT {sql.CHANNEL_COLUMNS} FROM channels WHERE community_id = $1"
    " AND kind NOT IN ('thread', 'breakout')"
    " ORDER BY position, seq"
)
_CHANNELS_OF = (
    f"SELECT {sql.CHANNEL_COLUMNS} FROM channels WHERE community_id = ANY($1::text[])"
    " AND kind NOT IN ('thread', 'breakout') ORDER BY position, seq"
)
# Locks the invite's row: two users taking its last use one after the other.
_INVITE = sql.numbered(sql.INVITE) + " FOR UPDATE"
_JOIN = sql.numbered(
    "INSERT INTO members(community_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (community_id, user_id) DO UPDATE SET role = excluded.role"
)


@functools.cache
def _append_statement(new_message: bool, once: bool) -> str:
    """One statement that appends an event (see the module docstring); a new message is
    also indexed and counted in its channel, and an idempotency key kept."""
    counted = ", msgs = msgs + 1, last_ts = GREATEST(last_ts, $6)" if new_message else ""
    ctes = [
        f"h AS (UPDATE channels SET head = head + 1{counted} WHERE id = $1 RETURNING head)",
        "e AS (INSERT INTO events(channel_id, o, t, frame, message_id)"
        " SELECT $1, head, $2, $3 || msgpack_uint(head), $4 FROM h RETURNING o)",
    ]
    if new_message:
        ctes.append(
            "m AS (INSERT INTO messages(id, channel_id, o, author_id, ts, text)"
            " SELECT $4, $1, o, $5, $6, $7 FROM e RETURNING o)"
        )
    last = ctes[-1][0]
    if once:
        first = 8 if new_message else 5
        ctes.append(
            "n AS (INSERT INTO nonces(channel_id, user_id, nonce, o)"
            f" SELECT $1, ${first}, ${first + 1}, o FROM {last} RETURNING o)"
        )
        last = "n"
    return "WITH " + ",\n".join(ctes) + f"\nSELECT o FROM {last}"


class PostgresStore(PostgresDiscussions, WorkshopStore):
    def __init__(
        self, url: str, *, community_name: str = "Agora", pool_size: int = POOL_SIZE
    ) -> None:
        self.url = url
        self.community_name = community_name
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        #: called when the epochs changed while the store was open (a PostgreSQL restart)
        self.on_epochs_rotated: Callable[[], None] | None = None
        #: ``pg_postmaster_start_time()`` and the last rotation this process knows of
        self._postgres_started: str | None = None
        self._rotated: str | None = None

    # lifecycle

    async def open(self) -> None:
        with _unavailable_on_errors():
            await upgrade_postgres(self.url)
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                reset=_keep_as_is,
                init=self._on_new_connection,
            )
        try:
            await self._transaction(self._bootstrap)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def check(self) -> None:
        await self._fetchval("SELECT 1")

    async def renew_epochs(self) -> int:
        async def run(db: asyncpg.Connection) -> int:
            await _set_meta(db, epochs.ROTATED, str(now_ms()))
            return int((await db.execute(epochs.ROTATE_POSTGRES)).split()[-1])

        return await self._transaction(run)

    async def has_users(self) -> bool:
        return bool(await self._fetchval(sql.HAS_USERS))

    async def setup_code(self, new: str) -> str:
        async def run(db: asyncpg.Connection) -> str:
            await db.execute(sql.numbered(sql.KEEP_SETUP_CODE), new)
            return str(await db.fetchval(sql.SETUP_CODE))

        return await self._transaction(run)

    # accounts

    async def create_user(
        self,
        username: str,
        display_name: str,
        password_hash: str,
        *,
        bot: bool = False,
        owner_id: str | None = None,
        user_id: str | None = None,
        invite: str | None = None,
    ) -> User:
        user = User(user_id or new_id(), username, display_name, bot, owner_id)

        async def run(db: asyncpg.Connection) -> User:
            # Locking the default community's row serializes account creation,
            # so exactly one account can be the first.
            community_id = await db.fetchval(
                "SELECT value FROM meta WHERE key = 'default_community' FOR UPDATE"
            )
            first = await db.fetchval("SELECT NOT EXISTS (SELECT 1 FROM users)")
            if await db.fetchval("SELECT 1 FROM users WHERE id = $1", user.id):
                raise Conflict(f"user id '{user.id}' is taken")
            name_skeleton = skeleton(user.username)
            like = await db.fetchrow(sql.numbered(sql.USER_LIKE), name_skeleton)
            if like is not None:
                raise Conflict(sql.name_conflict(user.username, sql.user(like)))
            try:
                await db.execute(
                    sql.numbered(sql.INSERT_USER),
                    user.id,
                    user.username,
                    user.display_name,
                    password_hash,
                    user.bot,
                    user.owner_id,
                    now_ms(),
                    name_skeleton,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"username '{user.username}' is taken") from None
            if invite is not None:
                await _accept_invite(db, invite, user.id, now_ms())
            else:
                role = "owner" if first else "member"
                await db.execute(_JOIN, community_id, user.id, role, now_ms())
            return user

        return await self._transaction(run)

    async def user(self, user_id: str) -> User | None:
        row = await self._fetchrow(sql.numbered(sql.USER), user_id)
        return None if row is None else sql.user(row)

    async def user_like(self, username: str) -> User | None:
        row = await self._fetchrow(sql.numbered(sql.USER_LIKE), skeleton(username))
        return None if row is None else sql.user(row)

    async def users(self) -> list[User]:
        return [sql.user(row) for row in await self._fetch(_USERS)]

    async def credentials(self, username: str) -> tuple[User, str] | None:
        row = await self._fetchrow(_CREDENTIALS, username)
        return None if row is None else (sql.user(row), row[5])

    async def set_password(self, user_id: str, password_hash: str) -> None:
        if await self._execute(sql.numbered(sql.SET_PASSWORD), password_hash, user_id) == (
            "UPDATE 0"
        ):
            raise KeyError(user_id)

    async def set_disabled(self, user_id: str, disabled_ms: int | None) -> None:
        if await self._execute(sql.numbered(sql.SET_DISABLED), disabled_ms, user_id) == (
            "UPDATE 0"
        ):
            raise KeyError(user_id)

    async def disabled_ms(self, user_id: str) -> int | None:
        return await self._fetchval(sql.numbered(sql.DISABLED_MS), user_id)

    async def add_token(
        self, token_id: str, user_id: str, secret_hash: bytes, *, label: str | None = None
    ) -> None:
        await self._execute(
            sql.numbered(sql.ADD_TOKEN), token_id, user_id, secret_hash, now_ms(), label
        )

    async def token(self, token_id: str) -> Token | None:
        row = await self._fetchrow(sql.numbered(sql.TOKEN), token_id)
        return None if row is None else sql.token(row)

    async def tokens(self, token_ids: list[str]) -> list[Token]:
        rows = await self._fetch(sql.TOKENS + " WHERE t.id = ANY($1::text[])", token_ids)
        return [sql.token(row) for row in rows]

    async def tokens_of(self, user_id: str) -> list[Token]:
        return [sql.token(row) for row in await self._fetch(sql.numbered(sql.TOKENS_OF), user_id)]

    async def touch_tokens(self, token_ids: list[str], used_ms: int) -> None:
        await self._execute(
            "UPDATE tokens SET last_used_ms = $2 WHERE id = ANY($1::text[])"
            " AND (last_used_ms IS NULL OR last_used_ms < $2)",
            token_ids,
            used_ms,
        )

    async def revoke_tokens(
        self, user_id: str, token_ids: list[str] | None = None, *, keep: str | None = None
    ) -> list[str]:
        rows = await self._fetch(
            "DELETE FROM tokens WHERE user_id = $1 AND id IS DISTINCT FROM $2"
            " AND ($3::text[] IS NULL OR id = ANY($3::text[])) RETURNING id",
            user_id,
            keep,
            token_ids,
        )
        return [row[0] for row in rows]

    # communities and channels

    async def create_community(
        self, name: str, owner_id: str, *, community_id: str | None = None
    ) -> Community:
        community = Community(community_id or new_id(), name)

        async def run(db: asyncpg.Connection) -> Community:
            if not await db.fetchval("SELECT 1 FROM users WHERE id = $1", owner_id):
                raise KeyError(owner_id)
            if await db.fetchval(sql.numbered(sql.COMMUNITY), community.id):
                raise Conflict(f"community id '{community.id}' is taken")
            try:
                await db.execute(sql.numbered(sql.INSERT_COMMUNITY), community.id, name, now_ms())
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a community named '{name}' exists") from None
            await db.execute(_JOIN, community.id, owner_id, "owner", now_ms())
            return community

        return await self._transaction(run)

    async def communities(self) -> list[Community]:
        return [Community(*row) for row in await self._fetch(_COMMUNITIES)]

    async def community(self, community_id: str) -> Community | None:
        row = await self._fetchrow(sql.numbered(sql.COMMUNITY), community_id)
        return None if row is None else Community(*row)

    async def communities_of(self, user_id: str) -> list[CommunityView]:
        async def run(db: asyncpg.Connection) -> list[CommunityView]:
            rows = await db.fetch(_COMMUNITIES_OF, user_id)
            channels: dict[str, list[Channel]] = {row[0]: [] for row in rows}
            for channel in await db.fetch(_CHANNELS_OF, list(channels)):
                channels[channel[1]].append(sql.channel(channel))
            return [
                CommunityView(cid, name, role, tuple(channels[cid])) for cid, name, role in rows
            ]

        return await self._transaction(run)

    async def channels(self, community_id: str) -> list[Channel]:
        return [sql.channel(row) for row in await self._fetch(_CHANNELS, community_id)]

    async def set_role(self, community_id: str, user_id: str, role: str) -> None:
        async def run(db: asyncpg.Connection) -> None:
            if not await db.fetchval("SELECT 1 FROM communities WHERE id = $1", community_id):
                raise KeyError(community_id)
            if not await db.fetchval("SELECT 1 FROM users WHERE id = $1", user_id):
                raise KeyError(user_id)
            await db.execute(_JOIN, community_id, user_id, role, now_ms())

        await self._transaction(run)

    async def members(self, community_id: str) -> list[tuple[User, str]]:
        return [
            (sql.user(row), row[5])
            for row in await self._fetch(sql.numbered(sql.MEMBERS), community_id)
        ]

    async def create_channel(
        self,
        community_id: str,
        name: str,
        *,
        kind: str = "text",
        parent: str | None = None,
        channel_id: str | None = None,
        topic: str | None = None,
    ) -> Channel:
        channel = Channel(channel_id or new_id(), community_id, name, kind, parent, topic)

        async def run(db: asyncpg.Connection) -> Channel:
            if not await db.fetchval("SELECT 1 FROM communities WHERE id = $1", community_id):
                raise KeyError(community_id)
            if await db.fetchval("SELECT 1 FROM channels WHERE id = $1", channel.id):
                raise Conflict(f"channel id '{channel.id}' is taken")
            try:
                async with db.transaction():  # a savepoint: the name lookup runs after it
                    await _insert_channel(db, channel)
            except asyncpg.UniqueViolationError:
                raise await _name_taken(db, community_id, name) from None
            return channel

        return await self._transaction(run)

    async def update_channel(self, channel_id: str, changes: dict[str, Any]) -> Channel:
        statement, values = sql.update_channel(changes)
        statement = sql.numbered(statement)

        async def run(db: asyncpg.Connection) -> Channel:
            row = await db.fetchrow(sql.numbered(sql.CHANNEL), channel_id)
            if row is None:
                raise KeyError(channel_id)
            try:
                async with db.transaction():  # a savepoint: the name lookup runs after it
                    await db.execute(statement, *values, channel_id)
            except asyncpg.UniqueViolationError:
                raise await _name_taken(db, row[1], changes["name"]) from None
            return sql.channel(await db.fetchrow(sql.numbered(sql.CHANNEL), channel_id))

        return await self._transaction(run)

    async def channel(self, channel_id: str) -> Channel | None:
        async with self._connection() as db:
            try:
                return await channel_in(db, channel_id)
            except KeyError:
                return None

    async def membership(self, community_id: str, user_id: str) -> Membership | None:
        return Membership.of(
            await self._fetchrow(sql.numbered(sql.MEMBERSHIP), community_id, user_id)
        )

    async def remove_member(
        self, community_id: str, user_id: str, *, banned_by: str | None = None
    ) -> bool:
        async def run(db: asyncpg.Connection) -> bool:
            status = await db.execute(sql.numbered(sql.DELETE_MEMBER), community_id, user_id)
            if banned_by is not None:
                await db.execute(
                    sql.numbered(sql.INSERT_BAN), community_id, user_id, banned_by, now_ms()
                )
            return status != "DELETE 0"

        return await self._transaction(run)

    async def banned(self, community_id: str, user_id: str) -> bool:
        return bool(await self._fetchval(sql.numbered(sql.BANNED), community_id, user_id))

    async def set_timeout(self, community_id: str, user_id: str, until_ms: int | None) -> None:
        status = await self._execute(sql.numbered(sql.SET_TIMEOUT), until_ms, community_id, user_id)
        if status == "UPDATE 0":
            raise KeyError(user_id)

    async def create_invite(self, invite: Invite) -> None:
        await self._execute(
            sql.numbered(sql.INSERT_INVITE),
            invite.code,
            invite.community_id,
            invite.role,
            invite.max_uses,
            invite.expires_ts,
            invite.created_by,
            now_ms(),
        )

    async def accept_invite(self, code: str, user_id: str, now_ms: int) -> tuple[Invite, bool]:
        return await self._transaction(lambda db: _accept_invite(db, code, user_id, now_ms))

    async def add_audit(
        self,
        community_id: str,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any],
    ) -> AuditEntry:
        ts = now_ms()
        seq = await self._fetchval(
            sql.numbered(sql.INSERT_AUDIT),
            community_id,
            ts,
            actor,
            action,
            target,
            json.dumps(details),
        )
        return AuditEntry(seq, community_id, ts, actor, action, target, details)

    async def audit(self, community_id: str, before: int | None, limit: int) -> list[AuditEntry]:
        rows = await self._fetch(
            sql.numbered(sql.AUDIT),
            community_id,
            sql.NO_BOUND if before is None else before,
            limit,
        )
        return [sql.audit_entry(row) for row in rows]

    async def rename_community(self, community_id: str, name: str) -> Community:
        try:
            status = await self._execute(sql.numbered(sql.RENAME_COMMUNITY), name, community_id)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a community named '{name}' exists") from None
        if status == "UPDATE 0":
            raise KeyError(community_id)
        return Community(community_id, name)

    async def role(self, community_id: str, user_id: str) -> str | None:
        return await self._fetchval(sql.numbered(sql.ROLE), community_id, user_id)

    # channel logs

    async def append(
        self,
        channel_id: str,
        t: str,
        d: dict[str, Any],
        *,
        idempotency: tuple[str, str] | None = None,
    ) -> Appended:
        async with self._connection() as db:
            appended = await self._append_one(db, Publishable(channel_id, t, d, idempotency))
        if isinstance(appended, Exception):
            raise appended
        return appended

    async def append_many(self, events: list[Publishable]) -> list[Appended | Exception]:
        async with self._connection() as db:
            if len(events) == 1:  # nothing to commit together: no transaction, no savepoint
                return [await self._append_one(db, events[0])]
            async with db.transaction():
                return [await self._append_one(db, e, savepoint=True) for e in events]

    async def _append_one(
        self, db: asyncpg.Connection, e: Publishable, *, savepoint: bool = False
    ) -> Appended | Exception:
        """Check and append one event: what it stored, or why it was refused. In a
        transaction, a ``savepoint`` lets a used key or a bad channel refuse it alone."""
        if (check := e.member_check) is not None:
            row = await db.fetchrow(sql.numbered(sql.MEMBERSHIP), check.community_id, check.user_id)
            if (refusal := check.refusal(row)) is not None:
                return refusal  # nothing to store for this one
        try:
            async with db.transaction() if savepoint else contextlib.nullcontext():
                return await self._append_in(db, e.channel_id, e.t, e.d, e.idempotency)
        except asyncpg.UniqueViolationError:  # the key was used: nothing was stored
            assert e.idempotency is not None
            frame = await db.fetchval(sql.numbered(sql.NONCE_FRAME), e.channel_id, *e.idempotency)
            stored = msgpack.unpackb(frame, raw=False)
            return Appended(stored["o"], stored, frame, created=False)
        except KeyError as exc:
            return exc

    async def _append_in(
        self,
        db: asyncpg.Connection,
        channel_id: str,
        t: str,
        d: dict[str, Any],
        idempotency: tuple[str, str] | None = None,
    ) -> Appended:
        unfinished = sql.unfinished_frame(t, channel_id, d)
        message = indexed_message(d)
        statement = _append_statement(
            t == "message.created" and message is not None, idempotency is not None
        )
        values: list[Any] = [channel_id, t, unfinished, None if message is None else message["id"]]
        if t == "message.created" and message is not None:
            values += [message["author"]["id"], message["ts"], searchable(message["text"])]
        if idempotency is not None:
            values += idempotency
        offset = await db.fetchval(statement, *values)
        if offset is None:
            raise KeyError(channel_id)
        return Appended(
            offset, event(t, channel_id, d, offset), unfinished + msgpack.packb(offset), True
        )

    async def read_after(self, channel_id: str, after: int, limit: int) -> list[bytes]:
        rows = await self._fetch(sql.numbered(sql.READ_AFTER), channel_id, after, limit)
        return [row[0] for row in rows]

    async def read_before(self, channel_id: str, before: int | None, limit: int) -> list[bytes]:
        rows = await self._fetch(
            sql.numbered(sql.READ_BEFORE),
            channel_id,
            before if before is not None else sql.NO_BOUND,
            limit,
        )
        return [row[0] for row in reversed(rows)]

    async def log_head(self, channel_id: str) -> LogHead:
        row = await self._fetchrow(sql.numbered(sql.LOG_HEAD), channel_id)
        if row is None:
            raise KeyError(channel_id)
        return LogHead(row[0], row[1])

    # helpers

    async def _on_new_connection(self, db: asyncpg.Connection) -> None:
        """Before a new connection serves anything: has PostgreSQL restarted?"""
        if self._postgres_started is None:
            return  # still opening: the bootstrap checks
        started = await db.fetchval("SELECT pg_postmaster_start_time()::text")
        if started == self._postgres_started:
            return
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await self._check_restart(db)
        # Another node may have rotated first: what matters is that a rotation happened.
        rotated = await db.fetchval("SELECT value FROM meta WHERE key = $1", epochs.ROTATED)
        if rotated != self._rotated:
            self._rotated = rotated
            if self.on_epochs_rotated is not None:
                self.on_epochs_rotated()

    async def _check_restart(self, db: asyncpg.Connection) -> None:
        """Rotate every epoch if PostgreSQL restarted since it was last seen, unsafely."""
        started, unsafe = await db.fetchrow(epochs.POSTGRES_DURABILITY)
        meta = dict(
            await db.fetch(
                "SELECT key, value FROM meta WHERE key = ANY($1::text[])",
                [epochs.POSTGRES_STARTED, epochs.POSTGRES_UNSAFE],
            )
        )
        if epochs.postgres_may_have_lost(meta, started, unsafe):
            rotated = await db.execute(epochs.ROTATE_POSTGRES)
            await _set_meta(db, epochs.ROTATED, str(now_ms()))
            log.warning(
                "PostgreSQL restarted with synchronous_commit or fsync off: its last commits"
                " may be lost, so every channel got a new epoch (%s; subscribers refetch)",
                rotated,
            )
        await _set_meta(db, epochs.POSTGRES_STARTED, started)
        await _set_meta(db, epochs.POSTGRES_UNSAFE, "1" if unsafe else "0")
        self._postgres_started = started

    async def _bootstrap(self, db: asyncpg.Connection) -> None:
        await db.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)  # one bootstrap at once
        await self._check_restart(db)
        self._rotated = await db.fetchval("SELECT value FROM meta WHERE key = $1", epochs.ROTATED)
        if await db.fetchval("SELECT value FROM meta WHERE key = 'default_community'"):
            return
        community_id = new_id()
        await db.execute(
            sql.numbered(sql.INSERT_COMMUNITY), community_id, self.community_name, now_ms()
        )
        await _insert_channel(db, Channel(new_id(), community_id, "general"))
        await db.execute(
            "INSERT INTO meta(key, value) VALUES ('default_community', $1)", community_id
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        with _unavailable_on_errors():
            async with self._pool.acquire() as connection:
                yield connection

    # workshops (see server/store/workshops.py)

    async def _rows(self, statement: str, values: tuple[Any, ...]) -> list[Any]:
        return await self._fetch(sql.numbered(statement), *values)

    async def _commit(
        self,
        bump: tuple[str, int, int] | None,
        channel_id: str,
        events: list[tuple[str, dict[str, Any]]],
        writes: list[Write],
    ) -> list[Appended]:
        async def run(db: asyncpg.Connection) -> list[Appended]:
            if bump is not None:
                workshop_id, version, by = bump
                bumped = await db.fetchval(
                    sql.numbered(workshops_sql.BUMP), by, workshop_id, version
                )
                if bumped is None:
                    raise Stale(workshop_id)
            appended = [await self._append_in(db, channel_id, t, d) for t, d in events]
            first = appended[0].offset if appended else 0
            try:
                for write in writes:
                    values = [first if v is FIRST_O else v for v in write.values]
                    await db.execute(sql.numbered(write.statement), *values)
            except asyncpg.UniqueViolationError as exc:
                raise Conflict(str(exc)) from None
            return appended

        return await self._transaction(run)

    async def _transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._connection() as db, db.transaction():
            return await fn(db)

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection() as db:
            return await db.fetch(query, *args)

    async def _fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self._connection() as db:
            return await db.fetchrow(query, *args)

    async def _fetchval(self, query: str, *args: Any) -> Any:
        async with self._connection() as db:
            return await db.fetchval(query, *args)

    async def _execute(self, query: str, *args: Any) -> str:
        async with self._connection() as db:
            return await db.execute(query, *args)


async def _accept_invite(
    db: asyncpg.Connection, code: str, user_id: str, now: int
) -> tuple[Invite, bool]:
    row = await db.fetchrow(_INVITE, code)
    invite = None if row is None else sql.invite(row)
    member = invite is not None and await db.fetchval(
        sql.numbered(sql.ROLE), invite.community_id, user_id
    )
    if member:
        return invite, False  # a member already: nothing to check, no use counted
    banned = invite is not None and bool(
        await db.fetchval(sql.numbered(sql.BANNED), invite.community_id, user_id)
    )
    refusal = sql.invite_refusal(invite, now, banned=banned)
    if refusal is not None:
        raise refusal
    assert invite is not None
    await db.execute(_JOIN, invite.community_id, user_id, invite.role, now)
    await db.execute(sql.numbered(sql.USE_INVITE), code)
    return replace(invite, uses=invite.uses + 1), True


async def _name_taken(db: asyncpg.Connection, community_id: str, name: str) -> Conflict:
    row = await db.fetchrow(sql.numbered(sql.CHANNEL_NAMED), community_id, name)
    return Conflict(f"the community has a channel named '{row[0] if row else name}'")


async def _insert_channel(db: asyncpg.Connection, channel: Channel) -> None:
    await db.execute(
        sql.numbered(sql.INSERT_CHANNEL),
        channel.id,
        channel.community_id,
        channel.name,
        channel.kind,
        channel.parent,
        channel.topic,
        secrets.token_hex(8),
    )


async def _set_meta(db: asyncpg.Connection, key: str, value: str) -> None:
    await db.execute(
        "INSERT INTO meta(key, value) VALUES ($1, $2)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        key,
        value,
    )


async def _keep_as_is(connection: asyncpg.Connection) -> None:
    """A released connection needs no reset: the store sets nothing on it (no SET, LISTEN,
    session locks or cursors). asyncpg's default reset is one more round trip per use."""


@contextmanager
def _unavailable_on_errors() -> Iterator[None]:
    """Turn "PostgreSQL cannot be reached" into ``Unavailable``; other errors pass."""
    try:
        yield
    except _OUTAGES as exc:
        raise Unavailable(f"PostgreSQL is unavailable: {exc}") from exc
