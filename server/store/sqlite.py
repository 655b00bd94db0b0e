"""The embedded Store: one SQLite file in WAL mode, written by one thread.

Every operation runs on a single worker thread that owns the connection. The
worker takes all the operations queued at that moment and runs them in one
transaction (each in its own savepoint, so one failure rolls back only
itself), commits once, and only then resolves their futures, in order.
Offsets are assigned by ``UPDATE channels SET head = head + 1`` inside that
transaction, so they are gapless.

Durability is SQLite's ``synchronous`` setting. ``NORMAL`` (the default): a
commit is in the WAL file when it returns, so acknowledged writes survive a
crash or ``kill -9`` of the process; a power loss may lose the last ones.
``FULL``: an fsync per commit (per batch, thanks to the group commit) also
survives a power loss, but every fsync stall on a slow disk delays every
event behind it. (Measured here: fan-out p99 at 1,000 subscribers x 50 msg/s
went from about 16 ms to 120-330 ms.) After a power loss that may have lost
commits, every channel gets a new epoch when the store opens (see
``server/store/epochs.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import msgpack

from protocol import event
from server.domain.names import skeleton
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
from server.store.migrate import upgrade_sqlite
from server.store.sql_discussions import indexed_message
from server.store.sqlite_discussions import SQLiteDiscussions, channel_of, index_message
from server.store.workshops import FIRST_O, Stale, WorkshopStore, Write

T = TypeVar("T")

#: Most operations committed in one transaction.
BATCH_MAX = 512
_HEAD = "UPDATE channels SET head = head + 1 WHERE id = ? RETURNING head"
#: A new message also counts in its channel; ``last_ts`` never goes back.
_COUNTED_HEAD = (
    "UPDATE channels SET head = head + 1, msgs = msgs + 1,"
    " last_ts = max(COALESCE(last_ts, 0), ?) WHERE id = ? RETURNING head"
)
#: Seconds between checkpoints of the write-ahead log into the database file.
CHECKPOINT_INTERVAL = 1.0

log = logging.getLogger("agora.store")

#: Most ids one ``IN (...)`` lists (SQLite allows 32,766 parameters).
IN_LIST_MAX = 500

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class SQLiteStore(SQLiteDiscussions, WorkshopStore):
    def __init__(
        self, path: str, *, community_name: str = "Agora", synchronous: str = "normal"
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'normal' or 'full', got {synchronous!r}")
        self.path = path
        self.community_name = community_name
        self.synchronous = synchronous.upper()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_epochs_rotated: Callable[[], None] | None = None  # only ever in open()
        #: this process's ``run:`` record in ``meta`` (see ``server/store/epochs.py``)
        self._run = epochs.RUN + secrets.token_hex(8)

    # lifecycle

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._work, args=(ready,), name="agora-sqlite", daemon=True
        )
        self._thread.start()
        await ready
        self._stopping.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint, name="agora-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()
        await self._call(self._bootstrap)

    async def close(self) -> None:
        self._stopping.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def check(self) -> None:
        await self._call(lambda db: db.execute("SELECT 1").fetchone())

    async def renew_epochs(self) -> int:
        def run(db: sqlite3.Connection) -> int:
            _set_meta(db, epochs.ROTATED, str(now_ms()))
            return int(db.execute(epochs.ROTATE_SQLITE).rowcount)

        return await self._call(run)

    async def has_users(self) -> bool:
        return bool(await self._call(lambda db: db.execute(sql.HAS_USERS).fetchone()[0]))

    async def setup_code(self, new: str) -> str:
        def run(db: sqlite3.Connection) -> str:
            db.execute(sql.KEEP_SETUP_CODE, (new,))
            return str(db.execute(sql.SETUP_CODE).fetchone()[0])

        return await self._call(run)

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
        return await self._call(self._create_user, user, password_hash, invite)

    async def user(self, user_id: str) -> User | None:
        def run(db: sqlite3.Connection) -> User | None:
            row = db.execute(sql.USER, (user_id,)).fetchone()
            return None if row is None else sql.user(row)

        return await self._call(run)

    async def user_like(self, username: str) -> User | None:
        def run(db: sqlite3.Connection) -> User | None:
            row = db.execute(sql.USER_LIKE, (skeleton(username),)).fetchone()
            return None if row is None else sql.user(row)

        return await self._call(run)

    async def users(self) -> list[User]:
        return await self._call(
            lambda db: [
                sql.user(row)
                for row in db.execute(f"SELECT {sql.USER_COLUMNS} FROM users u ORDER BY u.rowid")
            ]
        )

    async def credentials(self, username: str) -> tuple[User, str] | None:
        def run(db: sqlite3.Connection) -> tuple[User, str] | None:
            row = db.execute(
                f"SELECT {sql.USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = ?",
                (username,),
            ).fetchone()
            return None if row is None else (sql.user(row), row[5])

        return await self._call(run)

    async def set_password(self, user_id: str, password_hash: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            changed = db.execute(sql.SET_PASSWORD, (password_hash, user_id)).rowcount
            if not changed:
                raise KeyError(user_id)

        await self._call(run)

    async def set_disabled(self, user_id: str, disabled_ms: int | None) -> None:
        def run(db: sqlite3.Connection) -> None:
            if not db.execute(sql.SET_DISABLED, (disabled_ms, user_id)).rowcount:
                raise KeyError(user_id)

        await self._call(run)

    async def disabled_ms(self, user_id: str) -> int | None:
        def run(db: sqlite3.Connection) -> int | None:
            row = db.execute(sql.DISABLED_MS, (user_id,)).fetchone()
            return None if row is None else row[0]

        return await self._call(run)

    async def add_token(
        self, token_id: str, user_id: str, secret_hash: bytes, *, label: str | None = None
    ) -> None:
        await self._call(
            lambda db: db.execute(sql.ADD_TOKEN, (token_id, user_id, secret_hash, now_ms(), label))
        )

    async def token(self, token_id: str) -> Token | None:
        def run(db: sqlite3.Connection) -> Token | None:
            row = db.execute(sql.TOKEN, (token_id,)).fetchone()
            return None if row is None else sql.token(row)

        return await self._call(run)

    async def tokens(self, token_ids: list[str]) -> list[Token]:
        def run(db: sqlite3.Connection) -> list[Token]:
            found: list[Token] = []
            for chunk in _chunks(token_ids):
                where = f" WHERE t.id IN ({', '.join('?' * len(chunk))})"
                found += [sql.token(row) for row in db.execute(sql.TOKENS + where, chunk)]
            return found

        return await self._call(run)

    async def tokens_of(self, user_id: str) -> list[Token]:
        return await self._call(
            lambda db: [sql.token(row) for row in db.execute(sql.TOKENS_OF, (user_id,))]
        )

    async def touch_tokens(self, token_ids: list[str], used_ms: int) -> None:
        def run(db: sqlite3.Connection) -> None:
            for chunk in _chunks(token_ids):
                listed = ", ".join("?" * len(chunk))
                db.execute(
                    f"UPDATE tokens SET last_used_ms = ? WHERE id IN ({listed})"
                    " AND (last_used_ms IS NULL OR last_used_ms < ?)",
                    (used_ms, *chunk, used_ms),
                )

        await self._call(run)

    async def revoke_tokens(
        self, user_id: str, token_ids: list[str] | None = None, *, keep: str | None = None
    ) -> list[str]:
        def run(db: sqlite3.Connection) -> list[str]:
            statement = "DELETE FROM tokens WHERE user_id = ? AND id IS NOT ?"
            if token_ids is None:
                return [r[0] for r in db.execute(statement + " RETURNING id", (user_id, keep))]
            revoked: list[str] = []
            for chunk in _chunks(token_ids):
                listed = f" AND id IN ({', '.join('?' * len(chunk))}) RETURNING id"
                revoked += [r[0] for r in db.execute(statement + listed, (user_id, keep, *chunk))]
            return revoked

        return await self._call(run)

    # communities and channels

    async def create_community(
        self, name: str, owner_id: str, *, community_id: str | None = None
    ) -> Community:
        community = Community(community_id or new_id(), name)

        def run(db: sqlite3.Connection) -> Community:
            if db.execute("SELECT 1 FROM users WHERE id = ?", (owner_id,)).fetchone() is None:
                raise KeyError(owner_id)
            if db.execute(sql.COMMUNITY, (community.id,)).fetchone():
                raise Conflict(f"community id '{community.id}' is taken")
            try:
                db.execute(sql.INSERT_COMMUNITY, (community.id, name, now_ms()))
            except sqlite3.IntegrityError:
                raise Conflict(f"a community named '{name}' exists") from None
            _join(db, community.id, owner_id, "owner")
            return community

        return await self._call(run)

    async def communities(self) -> list[Community]:
        return await self._call(
            lambda db: [
                Community(*row)
                for row in db.execute("SELECT id, name FROM communities ORDER BY rowid")
            ]
        )

    async def community(self, community_id: str) -> Community | None:
        def run(db: sqlite3.Connection) -> Community | None:
            row = db.execute(sql.COMMUNITY, (community_id,)).fetchone()
            return None if row is None else Community(*row)

        return await self._call(run)

    async def communities_of(self, user_id: str) -> list[CommunityView]:
        def run(db: sqlite3.Connection) -> list[CommunityView]:
            views = []
            for cid, name, role in db.execute(
                "SELECT c.id, c.name, m.role FROM members m"
                " JOIN communities c ON c.id = m.community_id"
                " WHERE m.user_id = ? ORDER BY c.rowid",
                (user_id,),
            ).fetchall():
                views.append(CommunityView(cid, name, role, tuple(_channels(db, cid))))
            return views

        return await self._call(run)

    async def channels(self, community_id: str) -> list[Channel]:
        return await self._call(_channels, community_id)

    async def set_role(self, community_id: str, user_id: str, role: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            if (
                db.execute("SELECT 1 FROM communities WHERE id = ?", (community_id,)).fetchone()
                is None
            ):
                raise KeyError(community_id)
            if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise KeyError(user_id)
            changed = db.execute(
                "UPDATE members SET role = ? WHERE community_id = ? AND user_id = ?",
                (role, community_id, user_id),
            ).rowcount
            if not changed:
                _join(db, community_id, user_id, role)

        await self._call(run)

    async def members(self, community_id: str) -> list[tuple[User, str]]:
        return await self._call(
            lambda db: [
                (sql.user(row), row[5])
                for row in db.execute(
                    sql.MEMBERS,
                    (community_id,),
                )
            ]
        )

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

        def run(db: sqlite3.Connection) -> Channel:
            if (
                db.execute("SELECT 1 FROM communities WHERE id = ?", (community_id,)).fetchone()
                is None
            ):
                raise KeyError(community_id)
            if db.execute("SELECT 1 FROM channels WHERE id = ?", (channel.id,)).fetchone():
                raise Conflict(f"channel id '{channel.id}' is taken")
            try:
                _insert_channel(db, channel)
            except sqlite3.IntegrityError:
                raise _name_taken(db, community_id, name) from None
            return channel

        return await self._call(run)

    async def update_channel(self, channel_id: str, changes: dict[str, Any]) -> Channel:
        statement, values = sql.update_channel(changes)

        def run(db: sqlite3.Connection) -> Channel:
            row = db.execute(sql.CHANNEL, (channel_id,)).fetchone()
            if row is None:
                raise KeyError(channel_id)
            try:
                db.execute(statement, (*values, channel_id))
            except sqlite3.IntegrityError:
                raise _name_taken(db, row[1], changes["name"]) from None
            return sql.channel(db.execute(sql.CHANNEL, (channel_id,)).fetchone())

        return await self._call(run)

    async def channel(self, channel_id: str) -> Channel | None:
        return await self._call(channel_of, channel_id)

    async def membership(self, community_id: str, user_id: str) -> Membership | None:
        def run(db: sqlite3.Connection) -> Membership | None:
            return Membership.of(db.execute(sql.MEMBERSHIP, (community_id, user_id)).fetchone())

        return await self._call(run)

    async def remove_member(
        self, community_id: str, user_id: str, *, banned_by: str | None = None
    ) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            removed = db.execute(sql.DELETE_MEMBER, (community_id, user_id)).rowcount > 0
            if banned_by is not None:
                db.execute(sql.INSERT_BAN, (community_id, user_id, banned_by, now_ms()))
            return removed

        return await self._call(run)

    async def banned(self, community_id: str, user_id: str) -> bool:
        return await self._call(
            lambda db: db.execute(sql.BANNED, (community_id, user_id)).fetchone() is not None
        )

    async def set_timeout(self, community_id: str, user_id: str, until_ms: int | None) -> None:
        def run(db: sqlite3.Connection) -> None:
            if not db.execute(sql.SET_TIMEOUT, (until_ms, community_id, user_id)).rowcount:
                raise KeyError(user_id)

        await self._call(run)

    async def create_invite(self, invite: Invite) -> None:
        await self._call(
            lambda db: db.execute(
                sql.INSERT_INVITE,
                (
                    invite.code,
                    invite.community_id,
                    invite.role,
                    invite.max_uses,
                    invite.expires_ts,
                    invite.created_by,
                    now_ms(),
                ),
            )
        )

    async def accept_invite(self, code: str, user_id: str, now_ms: int) -> tuple[Invite, bool]:
        return await self._call(_accept_invite, code, user_id, now_ms)

    async def add_audit(
        self,
        community_id: str,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any],
    ) -> AuditEntry:
        ts, encoded = now_ms(), json.dumps(details)

        def run(db: sqlite3.Connection) -> AuditEntry:
            (seq,) = db.execute(
                sql.INSERT_AUDIT, (community_id, ts, actor, action, target, encoded)
            ).fetchone()
            return AuditEntry(seq, community_id, ts, actor, action, target, details)

        return await self._call(run)

    async def audit(self, community_id: str, before: int | None, limit: int) -> list[AuditEntry]:
        bound = sql.NO_BOUND if before is None else before
        return await self._call(
            lambda db: [
                sql.audit_entry(row)
                for row in db.execute(sql.AUDIT, (community_id, bound, limit)).fetchall()
            ]
        )

    async def rename_community(self, community_id: str, name: str) -> Community:
        def run(db: sqlite3.Connection) -> Community:
            try:
                changed = db.execute(sql.RENAME_COMMUNITY, (name, community_id)).rowcount
            except sqlite3.IntegrityError:
                raise Conflict(f"a community named '{name}' exists") from None
            if not changed:
                raise KeyError(community_id)
            return Community(community_id, name)

        return await self._call(run)

    async def role(self, community_id: str, user_id: str) -> str | None:
        def run(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                sql.ROLE,
                (community_id, user_id),
            ).fetchone()
            return None if row is None else row[0]

        return await self._call(run)

    # channel logs

    async def append(
        self,
        channel_id: str,
        t: str,
        d: dict[str, Any],
        *,
        idempotency: tuple[str, str] | None = None,
    ) -> Appended:
        return await self._call(self._append, channel_id, t, d, idempotency)

    async def append_many(self, events: list[Publishable]) -> list[Appended | Exception]:
        def run(db: sqlite3.Connection) -> list[Appended | Exception]:
            appended: list[Appended | Exception] = []
            for e in events:
                if (check := e.member_check) is not None:
                    row = db.execute(sql.MEMBERSHIP, (check.community_id, check.user_id))
                    if (refusal := check.refusal(row.fetchone())) is not None:
                        appended.append(refusal)  # nothing to store for this one
                        continue
                db.execute("SAVEPOINT event")
                try:
                    appended.append(self._append(db, e.channel_id, e.t, e.d, e.idempotency))
                except (KeyError, sqlite3.IntegrityError) as exc:
                    db.execute("ROLLBACK TO event")
                    appended.append(exc)
                db.execute("RELEASE event")
            return appended

        return await self._call(run)

    async def read_after(self, channel_id: str, after: int, limit: int) -> list[bytes]:
        return await self._call(
            lambda db: [
                row[0]
                for row in db.execute(
                    sql.READ_AFTER,
                    (channel_id, after, limit),
                )
            ]
        )

    async def read_before(self, channel_id: str, before: int | None, limit: int) -> list[bytes]:
        def run(db: sqlite3.Connection) -> list[bytes]:
            rows = db.execute(
                sql.READ_BEFORE,
                (channel_id, before if before is not None else sql.NO_BOUND, limit),
            ).fetchall()
            return [row[0] for row in reversed(rows)]

        return await self._call(run)

    async def log_head(self, channel_id: str) -> LogHead:
        def run(db: sqlite3.Connection) -> LogHead:
            row = db.execute(sql.LOG_HEAD, (channel_id,)).fetchone()
            if row is None:
                raise KeyError(channel_id)
            return LogHead(row[0], row[1])

        return await self._call(run)

    # workshops (see server/store/workshops.py)

    async def _rows(self, statement: str, values: tuple[Any, ...]) -> list[Any]:
        return await self._call(lambda db: db.execute(statement, values).fetchall())

    async def _commit(
        self,
        bump: tuple[str, int, int] | None,
        channel_id: str,
        events: list[tuple[str, dict[str, Any]]],
        writes: list[Write],
    ) -> list[Appended]:
        def run(db: sqlite3.Connection) -> list[Appended]:
            if bump is not None:
                workshop_id, version, by = bump
                if not db.execute(workshops_sql.BUMP, (by, workshop_id, version)).fetchall():
                    raise Stale(workshop_id)
            appended = [self._append(db, channel_id, t, d, None) for t, d in events]
            first = appended[0].offset if appended else 0
            try:
                for write in writes:
                    values = tuple(first if v is FIRST_O else v for v in write.values)
                    db.execute(write.statement, values).fetchall()
            except sqlite3.IntegrityError as exc:
                raise Conflict(str(exc)) from None
            return appended

        return await self._call(run)

    # the worker thread

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, args, future))
        return await future

    def _work(self, ready: asyncio.Future[None]) -> None:
        assert self._loop is not None
        loop = self._loop
        try:
            upgrade_sqlite(self.path)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint
            self._start_run(db)
        except Exception as exc:  # report to open() instead of dying silently
            loop.call_soon_threadsafe(_settle, [(ready, None, exc)])
            return
        loop.call_soon_threadsafe(_settle, [(ready, None, None)])
        try:
            while (job := self._jobs.get()) is not None:
                batch = [job]
                while len(batch) < BATCH_MAX:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._jobs.put(None)  # finish this batch, then stop
                        break
                    batch.append(more)
                loop.call_soon_threadsafe(_settle, self._run_batch(db, batch))
            self._end_run(db)
        finally:
            db.close()

    def _start_run(self, db: sqlite3.Connection) -> None:
        """Record this run; first give every channel a new epoch if commits may be lost."""
        runs = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE ?", (epochs.RUN + "%",)))
        boot = epochs.boot_id()
        with _fsynced(db, self.synchronous):
            if epochs.sqlite_may_have_lost(runs, boot):
                rotated = db.execute(epochs.ROTATE_SQLITE).rowcount
                _set_meta(db, epochs.ROTATED, str(now_ms()))
                log.warning(
                    "the store stopped without closing (synchronous=NORMAL) and the machine"
                    " restarted since: its last commits may be lost, so %d channels got a new"
                    " epoch (subscribers refetch)",
                    rotated,
                )
            for key in epochs.ended_runs(runs, boot):
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            _set_meta(db, self._run, epochs.run_record(self.synchronous, boot))

    def _end_run(self, db: sqlite3.Connection) -> None:
        """A clean close: every commit so far is fsynced with the deletion of the record."""
        try:
            with _fsynced(db, self.synchronous):
                db.execute("DELETE FROM meta WHERE key = ?", (self._run,))
        except sqlite3.Error:
            log.exception("could not record the clean close of the store")

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file, off the writer's thread.

        SQLite's automatic checkpoint runs inside the commit that crosses its
        threshold and fsyncs the database file there: a stall of hundreds of
        milliseconds on a slow disk, in front of every event waiting to be
        stored. A passive checkpoint on a connection of its own never blocks
        the writer.
        """
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(CHECKPOINT_INTERVAL):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed; retrying")
            with contextlib.suppress(sqlite3.Error):  # best effort: the next open catches up
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()

    @staticmethod
    def _run_batch(db: sqlite3.Connection, batch: list[_Job]) -> list[_Outcome]:
        results: list[_Outcome] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for fn, args, future in batch:
                db.execute("SAVEPOINT job")
                try:
                    value = fn(db, *args)
                except Exception as exc:
                    db.execute("ROLLBACK TO job")
                    results.append((future, None, exc))
                else:
                    results.append((future, value, None))
                db.execute("RELEASE job")
            db.execute("COMMIT")
        except Exception as exc:  # the commit failed: nothing of this batch is durable
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            return [(future, None, exc) for _, _, future in batch]
        return results

    # operations, run on the worker thread

    def _bootstrap(self, db: sqlite3.Connection) -> None:
        if db.execute("SELECT value FROM meta WHERE key = 'default_community'").fetchone():
            return
        community_id = new_id()
        db.execute(
            sql.INSERT_COMMUNITY,
            (community_id, self.community_name, now_ms()),
        )
        _insert_channel(db, Channel(new_id(), community_id, "general"))
        db.execute("INSERT INTO meta(key, value) VALUES ('default_community', ?)", (community_id,))

    @staticmethod
    def _create_user(
        db: sqlite3.Connection, user: User, password_hash: str, invite: str | None
    ) -> User:
        first = db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None
        if db.execute("SELECT 1 FROM users WHERE id = ?", (user.id,)).fetchone():
            raise Conflict(f"user id '{user.id}' is taken")
        name_skeleton = skeleton(user.username)
        like = db.execute(sql.USER_LIKE, (name_skeleton,)).fetchone()
        if like is not None:
            raise Conflict(sql.name_conflict(user.username, sql.user(like)))
        try:
            db.execute(
                sql.INSERT_USER,
                (
                    user.id,
                    user.username,
                    user.display_name,
                    password_hash,
                    user.bot,
                    user.owner_id,
                    now_ms(),
                    name_skeleton,
                ),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"username '{user.username}' is taken") from None
        if invite is not None:
            _accept_invite(db, invite, user.id, now_ms())
            return user
        (community_id,) = db.execute(
            "SELECT value FROM meta WHERE key = 'default_community'"
        ).fetchone()
        _join(db, community_id, user.id, "owner" if first else "member")
        return user

    def _append(
        self,
        db: sqlite3.Connection,
        channel_id: str,
        t: str,
        d: dict[str, Any],
        idempotency: tuple[str, str] | None,
    ) -> Appended:
        if idempotency is not None:
            row = db.execute(
                sql.NONCE_FRAME,
                (channel_id, *idempotency),
            ).fetchone()
            if row is not None:
                frame = row[0]
                stored = msgpack.unpackb(frame, raw=False)
                return Appended(stored["o"], stored, frame, created=False)
        message = indexed_message(d)
        new_message = t == "message.created" and message is not None
        row = db.execute(
            _COUNTED_HEAD if new_message else _HEAD,
            (message["ts"], channel_id) if new_message else (channel_id,),  # type: ignore[index]
        ).fetchone()
        if row is None:
            raise KeyError(channel_id)
        offset = row[0]
        frame_map = event(t, channel_id, d, offset)
        frame = msgpack.packb(frame_map, use_bin_type=True)
        db.execute(
            "INSERT INTO events(channel_id, o, t, frame, message_id) VALUES (?, ?, ?, ?, ?)",
            (channel_id, offset, t, frame, None if message is None else message["id"]),
        )
        if new_message:
            index_message(db, channel_id, offset, message)
            self._indexed(db)
        if idempotency is not None:
            db.execute(
                "INSERT INTO nonces(channel_id, user_id, nonce, o) VALUES (?, ?, ?, ?)",
                (channel_id, *idempotency, offset),
            )
        return Appended(offset, frame_map, frame, created=True)


def _channels(db: sqlite3.Connection, community_id: str) -> list[Channel]:
    return [
        sql.channel(row)
        for row in db.execute(
            f"SELECT {sql.CHANNEL_COLUMNS} FROM channels"
            " WHERE community_id = ? AND kind NOT IN ('thread', 'breakout')"
            " ORDER BY position, rowid",
            (community_id,),
        )
    ]


def _accept_invite(
    db: sqlite3.Connection, code: str, user_id: str, now: int
) -> tuple[Invite, bool]:
    row = db.execute(sql.INVITE, (code,)).fetchone()
    invite = None if row is None else sql.invite(row)
    if invite is not None and db.execute(sql.ROLE, (invite.community_id, user_id)).fetchone():
        return invite, False  # a member already: nothing to check, no use counted
    banned = invite is not None and bool(
        db.execute(sql.BANNED, (invite.community_id, user_id)).fetchone()
    )
    refusal = sql.invite_refusal(invite, now, banned=banned)
    if refusal is not None:
        raise refusal
    assert invite is not None
    _join(db, invite.community_id, user_id, invite.role)
    db.execute(sql.USE_INVITE, (code,))
    return replace(invite, uses=invite.uses + 1), True


def _name_taken(db: sqlite3.Connection, community_id: str, name: str) -> Conflict:
    row = db.execute(sql.CHANNEL_NAMED, (community_id, name)).fetchone()
    return Conflict(f"the community has a channel named '{row[0] if row else name}'")


def _join(db: sqlite3.Connection, community_id: str, user_id: str, role: str) -> None:
    db.execute(
        "INSERT INTO members(community_id, user_id, role, joined_ms, seq) VALUES (?, ?, ?, ?,"
        " (SELECT COALESCE(MAX(seq), 0) + 1 FROM members WHERE community_id = ?))",
        (community_id, user_id, role, now_ms(), community_id),
    )


def _insert_channel(db: sqlite3.Connection, channel: Channel) -> None:
    db.execute(
        sql.INSERT_CHANNEL,
        (
            channel.id,
            channel.community_id,
            channel.name,
            channel.kind,
            channel.parent,
            channel.topic,
            secrets.token_hex(8),
        ),
    )


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


@contextlib.contextmanager
def _fsynced(db: sqlite3.Connection, synchronous: str) -> Iterator[None]:
    """One transaction committed with an fsync, whatever ``synchronous`` says."""
    db.execute("PRAGMA synchronous=FULL")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.execute(f"PRAGMA synchronous={synchronous}")


def _settle(results: list[_Outcome]) -> None:
    for future, value, exc in results:
        if future.done():  # its awaiter was cancelled
            continue
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)


def _chunks(ids: list[str]) -> list[list[str]]:
    """``ids`` in lists of at most ``IN_LIST_MAX``."""
    return [ids[i : i + IN_LIST_MAX] for i in range(0, len(ids), IN_LIST_MAX)]
