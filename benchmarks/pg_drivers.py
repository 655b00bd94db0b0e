#!/usr/bin/env python3
"""PostgreSQL drivers for the scaled store: asyncpg against psycopg 3, on Agora's append.

Against a private PostgreSQL (fsync on), the store's one-statement append (``_APPEND`` of
``server/store/postgres.py``, on the ``channels`` and ``events`` tables and the
``msgpack_uint`` function of migration 0001) runs in closed loops: ``concurrency`` tasks
each append, wait for the commit, append again, for ``--seconds``, through a bounded pool of
``--pool-size`` connections (the store's ``POOL_SIZE``): an asyncpg pool, and a psycopg
``AsyncConnectionPool`` in autocommit. Each concurrency runs over many channels (consecutive
appends on different channels) and over one channel (every append waits for the channel's
row lock). It reports appends/s, the latency of one append (pool wait included) and the CPU
each append costs the client and PostgreSQL. The drivers alternate (asyncpg, psycopg, then
psycopg, asyncpg, ...) so that a change in the machine's load hits both alike.
benchmarks/README.md has the details.

Run ``python3 benchmarks/pg_drivers.py`` (about 80 s) or ``--seconds 0.2 --rounds 1`` (a smoke run).
It needs ``psycopg[binary,pool]`` (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import msgpack
import psycopg
import psycopg_pool
import uvloop
from pgserver import PostgresServer, fsync_latency, postgres_installed

# The tables and function the append needs, as migration 0001 creates them for PostgreSQL
# (server/store/migrations/versions/0001_initial.py), without the foreign key to communities.
SCHEMA = [
    """CREATE TABLE channels(
    id TEXT PRIMARY KEY,
    community_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent TEXT,
    epoch TEXT NOT NULL,
    head BIGINT NOT NULL DEFAULT 0,
    seq BIGINT GENERATED ALWAYS AS IDENTITY)""",
    "CREATE UNIQUE INDEX channels_by_name ON channels(community_id, lower(name))",
    "CREATE INDEX channels_of_community ON channels(community_id, seq)",
    """CREATE TABLE events(
    channel_id TEXT NOT NULL,
    o BIGINT NOT NULL,
    t TEXT NOT NULL,
    frame BYTEA NOT NULL,
    PRIMARY KEY(channel_id, o))""",
    r"""CREATE FUNCTION msgpack_uint(n BIGINT) RETURNS BYTEA LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE
        WHEN n < 128 THEN substring(int8send(n) FROM 8)
        WHEN n < 256 THEN '\xcc'::bytea || substring(int8send(n) FROM 8)
        WHEN n < 65536 THEN '\xcd'::bytea || substring(int8send(n) FROM 7)
        WHEN n < 4294967296 THEN '\xce'::bytea || substring(int8send(n) FROM 5)
        ELSE '\xcf'::bytea || int8send(n)
    END
$$""",
]

#: ``server/store/postgres.py``'s ``_APPEND``, for asyncpg ($n placeholders) ...
APPEND_ASYNCPG = """
WITH h AS (UPDATE channels SET head = head + 1 WHERE id = $1 RETURNING head)
INSERT INTO events(channel_id, o, t, frame)
SELECT $1, head, $2, $3 || msgpack_uint(head) FROM h RETURNING o
"""
#: ... and for psycopg (%s placeholders: the channel id is passed twice).
APPEND_PSYCOPG = """
WITH h AS (UPDATE channels SET head = head + 1 WHERE id = %s RETURNING head)
INSERT INTO events(channel_id, o, t, frame)
SELECT %s, head, %s, %s || msgpack_uint(head) FROM h RETURNING o
"""

#: Unmeasured appends per driver and run, which also prepare the statement on connections.
WARMUP = 200
#: Connections per pool: the store's ``server.store.postgres.POOL_SIZE``.
POOL_SIZE = 10
#: The drivers, in the order of a run's first part.
DRIVERS = ("asyncpg", "asyncpg-noreset", "psycopg")


def channel_ids(n: int) -> list[str]:
    return [f"{7 * 10**18 + i}" for i in range(n)]  # Agora's ids are 19-digit numbers


def unfinished_frame(channel: str, text_bytes: int) -> bytes:
    """A ``message.created`` frame up to its offset, as ``server.store.sql.unfinished_frame``
    makes it: the msgpack of ``{op, t, ch, d, o}`` less the offset's value."""
    message = {
        "id": "7000000000000000001",
        "channel": channel,
        "author": {"id": "7000000000000000002", "name": "bench", "bot": False},
        "text": "x" * text_bytes,
        "ts": 1_700_000_000_000,
    }
    head = b"\x85" + b"".join(
        msgpack.packb(x) for x in ("op", "event", "t", "message.created", "ch", channel)
    )
    return head + msgpack.packb("d") + msgpack.packb({"message": message}) + b"\xa1o"


# ---------------------------------------------------------------------------------------------
# The two drivers, each an ``append(channel, frame)`` on a bounded pool


class Driver:
    name = ""

    async def open(self, url: str, size: int) -> None:
        raise NotImplementedError

    async def append(self, channel: str, frame: bytes) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Asyncpg(Driver):
    """As ``PostgresStore``: ``async with pool.acquire()``, then ``fetchval`` (asyncpg
    prepares the statement once per connection and caches it). On release, asyncpg's pool
    resets the connection with a query of its own (``Connection.get_reset_query``:
    ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``): a second round
    trip, which ``release`` awaits, after every append."""

    name = "asyncpg"

    async def open(self, url: str, size: int) -> None:
        self.pool = await asyncpg.create_pool(url, min_size=size, max_size=size)

    async def append(self, channel: str, frame: bytes) -> int:
        async with self.pool.acquire() as db:
            return int(await db.fetchval(APPEND_ASYNCPG, channel, "message.created", frame))

    async def close(self) -> None:
        await self.pool.close()


class AsyncpgNoReset(Asyncpg):
    """asyncpg with ``create_pool(reset=...)`` a coroutine that does nothing: the pool then
    sends no reset query (it still rolls back a transaction left open). Safe where no one
    changes a connection's session state (``SET``, ``LISTEN``, session advisory locks, open
    cursors), which the store does not."""

    name = "asyncpg-noreset"

    async def open(self, url: str, size: int) -> None:
        async def keep(connection: asyncpg.Connection) -> None:
            return None

        self.pool = await asyncpg.create_pool(url, min_size=size, max_size=size, reset=keep)


class Psycopg(Driver):
    """psycopg 3's ``AsyncConnectionPool``, autocommit connections (a statement is its own
    transaction, as with asyncpg outside ``transaction()``); psycopg prepares a statement on
    a connection from its 5th execution there (``prepare_threshold``)."""

    name = "psycopg"

    async def open(self, url: str, size: int) -> None:
        self.pool = psycopg_pool.AsyncConnectionPool(
            url, min_size=size, max_size=size, kwargs={"autocommit": True}, open=False
        )
        await self.pool.open(wait=True, timeout=30)

    async def append(self, channel: str, frame: bytes) -> int:
        async with self.pool.connection() as db:
            cursor = await db.execute(APPEND_PSYCOPG, (channel, channel, "message.created", frame))
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0])

    async def close(self) -> None:
        await self.pool.close()


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass
class Result:
    driver: str
    concurrency: int
    channels: int
    appends: int = 0
    seconds: float = 0.0
    latencies: list[int] = field(default_factory=list)  # ns
    client_s: float = 0.0  # this process's CPU time
    postgres_s: float = 0.0  # PostgreSQL's CPU time
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.appends / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        values = sorted(self.latencies)
        if not values:
            return 0.0
        return values[min(len(values) - 1, max(0, math.ceil(p * len(values)) - 1))] / 1e6

    def us_per(self, seconds: float) -> float:
        return 1e6 * seconds / self.appends if self.appends else 0.0


async def reset(admin: asyncpg.Connection, channels: list[str]) -> None:
    """Empty logs and fresh channel rows (no dead versions from the last run), then a
    checkpoint, so that every run starts from the same state."""
    await admin.execute("TRUNCATE events, channels")
    await admin.executemany(
        "INSERT INTO channels(id, community_id, name, kind, epoch)"
        " VALUES ($1, 'c', $2, 'text', 'e')",
        [(c, f"ch{i}") for i, c in enumerate(channels)],
    )
    await admin.execute("VACUUM ANALYZE channels")
    await admin.execute("CHECKPOINT")


async def measure(
    driver: Driver,
    postgres: PostgresServer,
    channels: list[str],
    frames: dict[str, bytes],
    concurrency: int,
    seconds: float,
    result: Result,
) -> None:
    """``concurrency`` closed loops of appends for ``seconds``, added to ``result``. Each
    append takes the next channel in turn: consecutive appends are on different channels
    (when there are several)."""
    picks = itertools.cycle(channels)
    latencies: list[int] = []
    errors = 0

    async def warm(count: int) -> None:
        for _ in range(count):
            channel = next(picks)
            await driver.append(channel, frames[channel])

    async def loop(deadline: float) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            channel = next(picks)
            started = time.perf_counter_ns()
            try:
                await driver.append(channel, frames[channel])
            except (asyncpg.PostgresError, psycopg.Error):
                errors += 1
                continue
            latencies.append(time.perf_counter_ns() - started)

    # Unmeasured: enough concurrent appends that every connection of the pool prepares the
    # statement (psycopg does from a connection's 5th execution).
    await asyncio.gather(*(warm(WARMUP // POOL_SIZE) for _ in range(POOL_SIZE)))
    client, pg = time.process_time(), postgres.cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(loop(started + seconds) for _ in range(concurrency)))
    result.seconds += time.perf_counter() - started
    result.client_s += time.process_time() - client
    result.postgres_s += postgres.cpu_seconds() - pg
    result.appends += len(latencies)
    result.latencies += latencies
    result.errors += errors


async def bench(args: argparse.Namespace) -> tuple[list[Result], dict[str, str]]:
    results: dict[tuple[int, int, str], Result] = {}
    with contextlib.ExitStack() as stack:
        postgres = PostgresServer()
        stack.callback(postgres.remove)
        postgres.start()
        url = postgres.create_database("drivers")
        fsync = fsync_latency(postgres.directory)
        versions = {
            "postgres": postgres.version().split()[0],
            "asyncpg": asyncpg.__version__,
            "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__}), "
            f"psycopg_pool {psycopg_pool.__version__}",
            "fsync": f"the disk's fdatasync of 8 KiB: p50 {fsync[0]:.2f} ms, "
            f"p99 {fsync[1]:.2f} ms ({fsync[2]} in 1 s)",
        }
        admin = await asyncpg.connect(url)
        try:
            for statement in SCHEMA:
                await admin.execute(statement)
            drivers: dict[str, Driver] = {
                "asyncpg": Asyncpg(),
                "asyncpg-noreset": AsyncpgNoReset(),
                "psycopg": Psycopg(),
            }
            drivers = {name: drivers[name] for name in args.drivers}
            for driver in drivers.values():
                await driver.open(url, args.pool_size)
            try:
                for concurrency in args.concurrency:
                    for count in (args.channels, 1):
                        channels = channel_ids(count)
                        frames = {c: unfinished_frame(c, args.text_bytes) for c in channels}
                        for part in range(args.rounds):  # asyncpg first, then psycopg first
                            for name in args.drivers[:: 1 if part % 2 == 0 else -1]:
                                key = (concurrency, count, name)
                                result = results.setdefault(key, Result(name, concurrency, count))
                                await reset(admin, channels)
                                await measure(
                                    drivers[name],
                                    postgres,
                                    channels,
                                    frames,
                                    concurrency,
                                    args.seconds / args.rounds,
                                    result,
                                )
                        for name in args.drivers:
                            print(describe(results[(concurrency, count, name)]), flush=True)
            finally:
                for driver in drivers.values():
                    await driver.close()
        finally:
            await admin.close()
    return list(results.values()), versions


# ---------------------------------------------------------------------------------------------
# Report


def describe(r: Result) -> str:
    errors = f", {r.errors} errors" if r.errors else ""
    return (
        f"{r.driver:>8} concurrency {r.concurrency:>3} channels {r.channels:>3}: "
        f"{r.rate:8,.0f} appends/s  p50 {r.percentile_ms(0.5):6.2f} ms  "
        f"p99 {r.percentile_ms(0.99):6.2f} ms  max {r.percentile_ms(1.0):6.2f} ms  "
        f"client {r.us_per(r.client_s):5.1f} us/append  "
        f"postgres {r.us_per(r.postgres_s):5.1f} us/append{errors}"
    )


def per(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else 0.0


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def report(results: list[Result], versions: dict[str, str], args: argparse.Namespace) -> str:
    by = {(r.driver, r.concurrency, r.channels): r for r in results}
    first = args.drivers[0]
    rows = []
    for r in results:
        ref = by.get((first, r.concurrency, r.channels))
        rows.append(
            f"{r.concurrency} | {r.channels} | {r.driver} | {r.rate:,.0f} | "
            f"{r.percentile_ms(0.5):.2f} | {r.percentile_ms(0.99):.2f} | "
            f"{r.percentile_ms(1.0):.2f} | {r.us_per(r.client_s):.1f} | "
            f"{r.us_per(r.postgres_s):.1f} | "
            + (
                f"{ratio(r.rate, ref.rate)} | "
                f"{ratio(r.us_per(r.client_s), ref.us_per(ref.client_s))}"
                if ref is not None and r is not ref
                else "- | -"
            )
        )
    parts = f", in {args.rounds} parts alternating the drivers' order" if args.rounds > 1 else ""
    lines = [
        f"PostgreSQL drivers on Agora's append: asyncpg {versions['asyncpg']} (its pool as "
        f"is, and with no reset query) against psycopg {versions['psycopg']}; pools of "
        f"{args.pool_size} connections; closed loops; {args.seconds:g} s per driver and "
        f"run{parts}; {args.text_bytes}-byte texts; PostgreSQL {versions['postgres']} "
        f"(fsync on); {versions['fsync']}; uvloop; {os.cpu_count()} CPUs, unpinned.",
        "",
        "| concurrency | channels | driver | appends/s | p50 ms | p99 ms | max ms | "
        f"client µs/append | postgres µs/append | appends/s vs {first} | "
        f"client CPU vs {first} |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        *(f"| {row} |" for row in rows),
        "",
    ]
    for a, b in itertools.combinations(args.drivers, 2):
        pairs = [
            (r, by[(a, r.concurrency, r.channels)])
            for r in results
            if r.driver == b and (a, r.concurrency, r.channels) in by
        ]
        if not pairs:
            continue
        speed = geomean([per(x.rate, y.rate) for x, y in pairs])
        p99 = geomean([per(x.percentile_ms(0.99), y.percentile_ms(0.99)) for x, y in pairs])
        cpu = geomean([per(x.us_per(x.client_s), y.us_per(y.client_s)) for x, y in pairs])
        pg = geomean([per(x.us_per(x.postgres_s), y.us_per(y.postgres_s)) for x, y in pairs])
        lines.append(
            f"- **{b} against {a}**, geometric means over the {len(pairs)} runs: "
            f"{speed:.2f}x the appends/s, {p99:.2f}x the p99, {cpu:.2f}x the client CPU "
            f"and {pg:.2f}x PostgreSQL's CPU per append."
        )
    if any(r.errors for r in results):
        lines.append("- **errors**: " + "; ".join(describe(r) for r in results if r.errors))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--seconds", type=float, default=6.0, help="per driver and run, s (default 6)")
    add("--rounds", type=int, default=2, help="alternating parts of each run (default 2)")
    add("--concurrency", default="1,50", help="concurrent appends, comma-separated (1,50)")
    add("--channels", type=int, default=50, help="channels of the many-channel runs (50)")
    add("--drivers", default=",".join(DRIVERS), help=f"of {', '.join(DRIVERS)} (all)")
    add("--pool-size", type=int, default=POOL_SIZE, help=f"connections (default {POOL_SIZE})")
    add("--text-bytes", type=int, default=100, help="message text size (100)")
    add("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    if not args.drivers or not set(args.drivers) <= set(DRIVERS):
        parser.error(f"--drivers takes {', '.join(DRIVERS)}")
    if not args.concurrency or min(args.concurrency) < 1 or args.rounds < 1:
        parser.error("--concurrency and --rounds take positive numbers")
    if args.channels < 2 or args.pool_size < 1:
        parser.error("--channels must be at least 2, --pool-size at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not postgres_installed():
        sys.exit("PostgreSQL is not installed (apt-get install -y postgresql)")
    started = time.perf_counter()
    try:
        results, versions = uvloop.run(bench(args))
    except KeyboardInterrupt:
        sys.exit("interrupted")
    text = report(results, versions, args)
    print(f"\n{text}\n\n(total {time.perf_counter() - started:.0f} s)")
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
