"""Epochs change when the store may have lost acknowledged commits, and only then.

A power loss under SQLite's ``synchronous=NORMAL`` is played by restoring a
consistent copy of the database taken mid-stream (what a power loss leaves: a
prefix of the commits) whose run records name an earlier boot (a power loss
means the machine booted again). A PostgreSQL crash is a ``kill -9`` of the
private PostgreSQL server.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agora_cli import ok, storage
from tests.conftest import (
    AgoraProcess,
    Cluster,
    PostgresProcess,
    RawSession,
    ServerLog,
    closed_with,
    documented_close,
    general_channel,
    http_request,
    new_user,
    raw_session,
    read_events,
    timeout,
)

_opened: list[RawSession] = []


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    while _opened:
        await _opened.pop().ws.close()


async def _subscribed(
    server: Any, token: str, since: int | None = None, epoch: str | None = None
) -> tuple[RawSession, str, dict[str, Any]]:
    """A session subscribed to general (resuming from ``since``/``epoch``) and the reply."""
    session = await raw_session(server, token=token)
    _opened.append(session)
    channel = general_channel(session.identity)
    d: dict[str, Any] = {"channel": channel}
    if since is not None:
        d |= {"since": since, "epoch": epoch}
    return session, channel, await session.ok("subscribe", d)


async def _send_and_see(session: RawSession, channel: str, texts: list[str]) -> int:
    """Send messages and read their events; the offset of the last."""
    for text in texts:
        await session.ok("message.send", {"channel": channel, "text": text})
    events = await read_events(session, len(texts), t="message.created")
    assert [e["d"]["message"]["text"] for e in events] == texts
    return events[-1]["o"]


def _copy_consistently(db: Path, copy: Path) -> None:
    """A copy of the committed state at one instant, as SQLite's backup API reads it."""
    source, target = sqlite3.connect(db), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _restore(copy: Path, db: Path, *, boot: str | None) -> None:
    """Put ``copy`` in place of the database (and its WAL); with ``boot``, its run
    records name that boot, as after a power loss and a reboot."""
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    copy.rename(db)
    if boot is not None:
        with sqlite3.connect(db) as restored:
            runs = restored.execute(
                "UPDATE meta SET value = substr(value, 1, instr(value, ' ')) || ?"
                " WHERE key LIKE 'run:%'",
                (boot,),
            ).rowcount
        restored.close()
        assert runs == 1  # the run the copy was taken in


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Any]:
    """Start one embedded server on ``tmp_path/agora.db`` with given settings."""
    started: list[AgoraProcess] = []

    def start(**settings: Any) -> AgoraProcess:
        server = AgoraProcess(tmp_path / "agora.db", rate_limit=0, **settings).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.mark.embedded_only
async def test_after_a_power_loss_a_client_that_saw_lost_offsets_gets_recovered_false(
    deployment: str, embedded: Any, tmp_path: Path
) -> None:
    server = embedded()  # synchronous=normal, the default
    account = await new_user(server)
    reader, channel, first = await _subscribed(server, account["token"])
    await _send_and_see(reader, channel, ["kept 1", "kept 2"])
    _copy_consistently(server.db, tmp_path / "copy.db")
    seen = await _send_and_see(reader, channel, ["lost 1", "lost 2", "lost 3"])
    server.kill()
    _restore(tmp_path / "copy.db", server.db, boot="an-earlier-boot")
    log = ServerLog(server)
    server.start()
    writer, _, _ = await _subscribed(server, account["token"])
    # the lost offsets are taken again, by other events, and one more
    head = await _send_and_see(writer, channel, ["new 1", "new 2", "new 3", "new 4"])
    assert head == seen + 1

    resumed, _, reply = await _subscribed(server, account["token"], seen, first["epoch"])

    assert reply["recovered"] is False  # not a replay of "new 4" alone
    assert reply["epoch"] != first["epoch"]
    assert reply["offset"] == head
    history = await resumed.ok("history", {"channel": channel, "before": head + 1, "limit": 4})
    assert [e["d"]["message"]["text"] for e in history["events"]] == [
        "new 1",
        "new 2",
        "new 3",
        "new 4",
    ]
    await writer.ok("message.send", {"channel": channel, "text": "live"})
    assert [e["d"]["message"]["text"] for e in await read_events(resumed, 1)] == ["live"]
    assert "channels got a new epoch" in log.text()
    log.assert_no_traceback()


@pytest.mark.embedded_only
async def test_a_kill_9_on_the_same_boot_keeps_the_epochs_nothing_was_lost(
    deployment: str, embedded: Any
) -> None:
    server = embedded()
    account = await new_user(server)
    reader, channel, first = await _subscribed(server, account["token"])
    seen = await _send_and_see(reader, channel, ["one", "two"])
    server.kill()
    server.start()

    _, _, reply = await _subscribed(server, account["token"], seen, first["epoch"])

    assert (reply["recovered"], reply["epoch"], reply["offset"]) == (True, first["epoch"], seen)


@pytest.mark.embedded_only
async def test_with_synchronous_full_a_power_loss_keeps_the_epochs(
    deployment: str, embedded: Any, tmp_path: Path
) -> None:
    server = embedded(sqlite_synchronous="full")
    account = await new_user(server)
    reader, channel, first = await _subscribed(server, account["token"])
    seen = await _send_and_see(reader, channel, ["one", "two"])
    _copy_consistently(server.db, tmp_path / "copy.db")  # full loses nothing: all of it
    server.kill()
    _restore(tmp_path / "copy.db", server.db, boot="an-earlier-boot")
    server.start()

    _, _, reply = await _subscribed(server, account["token"], seen, first["epoch"])

    assert (reply["recovered"], reply["epoch"], reply["offset"]) == (True, first["epoch"], seen)


async def test_a_clean_stop_and_start_keeps_the_epochs(make_server: Any) -> None:
    server = make_server(rate_limit=0)
    account = await new_user(server)
    reader, channel, first = await _subscribed(server, account["token"])
    seen = await _send_and_see(reader, channel, ["one", "two"])
    await reader.ws.close()
    server.stop()
    server.start()

    _, _, reply = await _subscribed(server, account["token"], seen, first["epoch"])

    assert (reply["recovered"], reply["epoch"], reply["offset"]) == (True, first["epoch"], seen)


@pytest.fixture
def private_cluster(deployment: str, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster on a PostgreSQL server of its own, which the test may kill."""
    if deployment == "embedded":
        pytest.skip("about PostgreSQL; the embedded store's power loss is tested above")
    postgres = PostgresProcess().start()
    started = Cluster(tmp_path, postgres=postgres, rate_limit=0).start()
    yield started
    started.shutdown()
    postgres.remove()


def _crash_postgres(cluster: Cluster) -> None:
    """``kill -9`` PostgreSQL, start it again, and wait until both nodes use it again."""
    cluster.postgres.kill()
    cluster.postgres.start()
    for node in cluster.nodes:
        # each node's pool reconnects (and checks for a restart) on its next query
        _healthy_soon(node)


def _healthy_soon(node: AgoraProcess) -> None:
    deadline = time.monotonic() + timeout(20)
    while http_request("GET", node.http + "/healthz").status != 200:
        assert time.monotonic() < deadline, "the node never reached PostgreSQL again"
        time.sleep(0.05)


async def test_a_postgres_crash_with_synchronous_commit_off_gives_every_channel_a_new_epoch(
    private_cluster: Cluster,
) -> None:
    cluster = private_cluster
    database = cluster.database.rsplit("/", 1)[1]
    cluster.postgres.sql(f"ALTER DATABASE {database} SET synchronous_commit = off")
    account = await new_user(cluster.nodes[0])
    sessions = []
    for node in cluster.nodes:
        sessions.append(await _subscribed(node, account["token"]))
    reader, channel, first = sessions[0]
    seen = await _send_and_see(reader, channel, ["one", "two"])
    log = ServerLog(cluster)

    _crash_postgres(cluster)

    for session, _, _ in sessions:  # live subscribers resubscribe: their offsets may be lost
        assert await closed_with(session.ws, 20) == documented_close(1012, "store restarted")
    _, _, reply = await _subscribed(cluster.nodes[-1], account["token"], seen, first["epoch"])
    assert reply["recovered"] is False
    assert reply["epoch"] != first["epoch"]
    assert "every channel got a new epoch" in log.text()


async def test_a_postgres_crash_with_safe_settings_keeps_the_epochs(
    private_cluster: Cluster,
) -> None:
    cluster = private_cluster
    account = await new_user(cluster.nodes[0])
    reader, channel, first = await _subscribed(cluster.nodes[0], account["token"])
    seen = await _send_and_see(reader, channel, ["one", "two"])

    _crash_postgres(cluster)

    _, _, reply = await _subscribed(cluster.nodes[-1], account["token"], seen, first["epoch"])
    assert (reply["recovered"], reply["epoch"], reply["offset"]) == (True, first["epoch"], seen)
    await reader.ok("ping")  # the session lives on


async def test_agora_renew_epochs_after_a_restore_makes_resuming_clients_refetch(
    make_server: Any,
) -> None:
    server = make_server(rate_limit=0)
    account = await new_user(server)
    reader, channel, first = await _subscribed(server, account["token"])
    seen = await _send_and_see(reader, channel, ["one", "two"])
    await reader.ws.close()
    server.stop()

    renewed = ok("renew-epochs", *storage(server))
    server.start()

    assert renewed[0][0] == "channels" and int(renewed[0][1]) >= 1
    _, _, reply = await _subscribed(server, account["token"], seen, first["epoch"])
    assert (reply["recovered"], reply["offset"]) == (False, seen)
    assert reply["epoch"] != first["epoch"]
