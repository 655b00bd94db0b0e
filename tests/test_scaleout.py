"""The scaled deployment: two ``agora serve`` nodes on one PostgreSQL database and a Redis.

Every other server test runs on such a cluster too (see ``Cluster`` in
conftest.py); these are the failures only a cluster has: a node dies,
PostgreSQL or Redis restarts, a node's pub/sub connection drops, Redis loses
everything it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import socket
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets

from clients import Client
from tests.conftest import (
    AgoraProcess,
    Cluster,
    PostgresProcess,
    RawSession,
    general_channel,
    http_json,
    http_request,
    new_user,
    raw_session,
    timeout,
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path, rate_limit=0).start()
    yield started
    started.shutdown()


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster on a PostgreSQL server of its own, which the test may stop and kill."""
    postgres = PostgresProcess().start()
    started = Cluster(tmp_path, postgres=postgres, rate_limit=0).start()
    yield started
    started.shutdown()
    postgres.remove()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[AgoraProcess, str], Awaitable[RawSession]]]:
    """Identified sessions on a given node, closed after the test."""
    opened: list[RawSession] = []

    async def open_session(node: AgoraProcess, token: str) -> RawSession:
        opened.append(await raw_session(node, token=token))
        return opened[-1]

    yield open_session
    for session in opened:
        await session.ws.close()


async def messages(session: RawSession, count: int, seconds: float = 10) -> list[dict[str, Any]]:
    """Read ``count`` message.created events (earlier ones first), skipping other frames."""
    found = [f for f in session.early if f.get("t") == "message.created"]
    session.early.clear()
    async with asyncio.timeout(timeout(seconds)):
        while len(found) < count:
            frame = await session.recv(seconds)
            if frame.get("t") == "message.created":
                found.append(frame)
    return found


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [e["d"]["message"]["text"] for e in events]


async def test_a_message_sent_on_one_node_reaches_a_subscriber_on_the_other_in_order(
    cluster: Cluster,
    connect: Any,
) -> None:
    node1, node2 = cluster.nodes
    account = await new_user(node1)
    listener = await connect(node2, account["token"])
    sender = await connect(node1, account["token"])
    channel = general_channel(sender.identity)
    await listener.ok("subscribe", {"channel": channel})
    sent = [f"cross {i}" for i in range(200)]
    for text in sent:
        await sender.ok("message.send", {"channel": channel, "text": text})
    received = await messages(listener, len(sent))
    assert texts(received) == sent
    offsets = [e["o"] for e in received]
    assert offsets == list(range(offsets[0], offsets[0] + len(sent)))


async def test_a_client_of_a_killed_node_resumes_on_the_other_with_every_message_once(
    cluster: Cluster,
    connect: Any,
) -> None:
    node1, node2 = cluster.nodes
    account = await new_user(node1)
    reader = await connect(node1, account["token"])
    sender = await connect(node2, account["token"])
    channel = general_channel(sender.identity)
    await reader.ok("subscribe", {"channel": channel})
    acknowledged: list[str] = []

    async def send_all() -> None:
        for i in range(300):
            text = f"during {i}"
            await sender.ok("message.send", {"channel": channel, "text": text, "nonce": text})
            acknowledged.append(text)
            await asyncio.sleep(0.002)

    sending = asyncio.create_task(send_all())
    seen = await messages(reader, 100)
    node1.kill()
    with contextlib.suppress(websockets.ConnectionClosed):  # the node dies under the reader
        while True:
            seen += await messages(reader, 1)
    await sending
    last = seen[-1]["o"]
    resumed = await connect(node2, account["token"])
    reply = await resumed.ok("subscribe", {"channel": channel, "since": last})
    assert reply["recovered"] is True
    missing = len(acknowledged) - len(seen)
    seen += await messages(resumed, missing)
    assert texts(seen) == acknowledged
    offsets = [e["o"] for e in seen]
    assert offsets == sorted(set(offsets))
    # nothing past the acknowledged ones and no duplicate: the next message is a new one
    await sender.ok("message.send", {"channel": channel, "text": "sentinel"})
    assert texts(await messages(resumed, 1)) == ["sentinel"]


async def test_after_redis_restarts_both_nodes_serve_history_is_intact_and_no_session_is_deaf(
    cluster: Cluster,
    connect: Any,
) -> None:
    node1 = cluster.nodes[0]
    account = await new_user(node1)
    listeners = [await connect(node, account["token"]) for node in cluster.nodes]
    sender = await connect(node1, account["token"])
    channel = general_channel(sender.identity)
    for listener in listeners:
        await listener.ok("subscribe", {"channel": channel})
    before = [f"before {i}" for i in range(20)]
    for text in before:
        await sender.ok("message.send", {"channel": channel, "text": text})
    for listener in listeners:
        assert texts(await messages(listener, len(before))) == before

    cluster.redis.kill()
    # Stored in PostgreSQL but not published: the answer is "retry", and the
    # nodes deliver it from the store once the broker is back.
    answer = await sender.command("message.send", {"channel": channel, "text": "during"})
    assert answer["op"] == "error"
    assert answer["d"]["code"] == "unavailable"
    assert answer["d"]["retry_after_ms"] > 0
    # Redis holds nothing durable: accounts are still there to log in to
    status, body = http_json(
        "POST", node1.http + "/api/v1/auth/login", {"username": "x", "password": "y" * 8}
    )
    assert status == 401, body
    cluster.redis.start()

    after = [f"after {i}" for i in range(20)]
    for text in after:
        await _send_when_available(sender, channel, text)
    for listener in listeners:  # the sessions that lived through the outage still hear
        assert texts(await messages(listener, 1 + len(after))) == ["during", *after]
    for node in cluster.nodes:
        reader = await connect(node, account["token"])
        history = await reader.ok("history", {"channel": channel, "limit": 100})
        stored = [e for e in history["events"] if e["t"] == "message.created"]
        assert texts(stored) == [*before, "during", *after]


async def test_while_postgres_is_down_commands_answer_unavailable_then_both_nodes_serve_again(
    private_cluster: Cluster,
    connect: Any,
) -> None:
    cluster = private_cluster
    account = await new_user(cluster.nodes[0])
    sessions = [await connect(node, account["token"]) for node in cluster.nodes]
    channel = general_channel(sessions[0].identity)
    await sessions[1].ok("subscribe", {"channel": channel})
    before = [f"before {i}" for i in range(20)]
    for text in before:
        await sessions[0].ok("message.send", {"channel": channel, "text": text})
    assert texts(await messages(sessions[1], len(before))) == before

    cluster.postgres.stop()
    for node, session in zip(cluster.nodes, sessions, strict=True):
        answer = await session.command("message.send", {"channel": channel, "text": "lost"})
        assert answer["op"] == "error", answer
        assert answer["d"]["code"] == "unavailable"
        assert answer["d"]["retry_after_ms"] > 0
        assert http_request("GET", node.http + "/healthz").status == 503
        answer = http_request(
            "POST", node.http + "/api/v1/auth/login", body={"username": "x", "password": "y" * 8}
        )
        assert (answer.status, answer.json()["error"]["code"]) == (503, "unavailable")
        assert int(answer.headers["retry-after"]) > 0
    cluster.postgres.start()

    async with asyncio.timeout(timeout(20)):  # every node serves again within 20 s
        for node in cluster.nodes:
            while not _healthy(node):
                await asyncio.sleep(0.1)
    after = [f"after {i}" for i in range(20)]
    for text in after:
        await _send_when_available(sessions[0], channel, text)
    assert texts(await messages(sessions[1], len(after))) == after
    for node in cluster.nodes:
        reader = await connect(node, account["token"])
        history = await reader.ok("history", {"channel": channel, "limit": 100})
        stored = [e for e in history["events"] if e["t"] == "message.created"]
        assert texts(stored) == before + after


async def test_events_published_while_a_node_was_cut_off_reach_its_sessions(
    cluster: Cluster,
    connect: Any,
) -> None:
    node1, node2 = cluster.nodes
    account = await new_user(node1)
    listener = await connect(node1, account["token"])
    sender = await connect(node2, account["token"])
    channel = general_channel(sender.identity)
    await listener.ok("subscribe", {"channel": channel})
    resumes = node1.metric("agora_broker_resumes_total")
    # Cut every pub/sub connection and send at once: node 1 reconnects after a
    # backoff, so the first events are stored while nobody carries them to it.
    _redis(cluster, "CLIENT", "KILL", "TYPE", "pubsub")
    sent = [f"while cut off {i}" for i in range(20)]
    for text in sent:
        await sender.ok("message.send", {"channel": channel, "text": text})
    assert texts(await messages(listener, len(sent))) == sent
    assert node1.metric("agora_broker_resumes_total") > resumes
    await sender.ok("message.send", {"channel": channel, "text": "and after"})
    assert texts(await messages(listener, 1)) == ["and after"]


async def test_acknowledged_messages_survive_kill_9_of_every_node_postgres_and_redis(
    private_cluster: Cluster,
    connect: Any,
) -> None:
    cluster = private_cluster
    account = await new_user(cluster.nodes[0])
    session = await connect(cluster.nodes[0], account["token"])
    channel = general_channel(session.identity)
    sent = [
        (await session.ok("message.send", {"channel": channel, "text": f"keep {i}"}))["message"]
        for i in range(50)
    ]
    cluster.stop(signal.SIGKILL)
    cluster.redis.kill()
    cluster.postgres.kill()
    cluster.postgres.start()
    cluster.start()
    session = await connect(cluster.nodes[1], account["token"])
    history = await session.ok("history", {"channel": channel, "limit": 100})
    assert [e["d"]["message"] for e in history["events"] if e["t"] == "message.created"] == sent


async def test_flushing_redis_loses_no_history_members_or_channels(
    cluster: Cluster, connect: Any
) -> None:
    account = await new_user(cluster.nodes[0])
    session = await connect(cluster.nodes[0], account["token"])
    channel = general_channel(session.identity)
    for i in range(10):
        await session.ok("message.send", {"channel": channel, "text": f"kept {i}"})
    community = session.identity["communities"][0]["id"]
    members = await session.ok("community.members", {"community": community})
    history = await session.ok("history", {"channel": channel, "limit": 100})

    _redis(cluster, "FLUSHALL")

    for node in cluster.nodes:
        reader = await connect(node, account["token"])
        assert reader.identity["communities"] == session.identity["communities"]
        assert await reader.ok("community.members", {"community": community}) == members
        assert await reader.ok("history", {"channel": channel, "limit": 100}) == history


async def test_one_nonce_sent_through_both_nodes_creates_one_message(
    cluster: Cluster, connect: Any
) -> None:
    account = await new_user(cluster.nodes[0])
    sessions = [await connect(node, account["token"]) for node in cluster.nodes]
    channel = general_channel(sessions[0].identity)
    d = {"channel": channel, "text": "once", "nonce": "n-1"}
    first, second = await asyncio.gather(*(s.ok("message.send", d) for s in sessions))
    assert first["message"] == second["message"]
    history = await sessions[0].ok("history", {"channel": channel})
    assert texts([e for e in history["events"] if e["t"] == "message.created"]) == ["once"]


def _healthy(node: AgoraProcess) -> bool:
    try:
        with urllib.request.urlopen(node.http + "/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


async def _send_when_available(session: RawSession, channel: str, text: str) -> None:
    """Send, retrying with the same nonce while the answer is ``unavailable``."""
    async with asyncio.timeout(timeout(15)):
        while True:
            answer = await session.command(
                "message.send", {"channel": channel, "text": text, "nonce": text}
            )
            if answer["op"] == "reply":
                return
            assert answer["d"]["code"] == "unavailable", answer
            await asyncio.sleep(answer["d"]["retry_after_ms"] / 1000)


def _redis(cluster: Cluster, *args: str) -> None:
    command = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", cluster.redis.port), timeout=5) as s:
        s.sendall(command.encode())
        assert s.recv(64)[:1] in (b"+", b":")


async def test_redis_holds_only_presence_and_postgres_only_argon2id_hashes_and_token_hashes(
    cluster: Cluster, connect: Any
) -> None:
    password = "a very particular passphrase"
    status, account = http_json(
        "POST",
        cluster.nodes[0].http + "/api/v1/auth/register",
        {"username": "stored", "password": password},
    )
    assert status == 201
    session = await connect(cluster.nodes[1], account["token"])
    await session.ok("message.send", {"channel": general_channel(session.identity), "text": "x"})
    with redis.Redis.from_url(cluster.redis.url) as db:
        keys = {key.decode() for key in db.scan_iter(count=1000)}
    # pub/sub carries the events; what is stored is presence, and forgettable
    forgettable = ("agora:presence:", "agora:presence-status:", "agora:node-users:", "agora:nodes")
    assert keys and all(key.startswith(forgettable) for key in keys), keys
    user_id = account["user"]["id"]
    database = cluster.database.rsplit("/", 1)[1]
    password_hash = cluster.postgres.sql(
        f"SELECT password_hash FROM users WHERE id = '{user_id}'", database
    ).strip()
    assert password_hash.startswith("$argon2id$")
    token_id, _, secret = account["token"].partition(".")
    stored = cluster.postgres.sql(
        f"SELECT encode(secret_hash, 'hex') FROM tokens WHERE id = '{token_id}'", database
    ).strip()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    dump = cluster.postgres.sql("SELECT string_agg(t::text, ' ') FROM users t", database)
    dump += cluster.postgres.sql("SELECT string_agg(t::text, ' ') FROM tokens t", database)
    assert password not in dump
    assert secret not in dump


async def test_a_client_that_waits_on_unavailable_gets_its_message_through_a_redis_restart(
    cluster: Cluster,
) -> None:
    account = await new_user(cluster.nodes[0])
    async with Client(cluster.nodes[0].ws, account["token"], wait_on_rate_limit=True) as client:
        general = client.channel_named("general")
        cluster.redis.kill()
        sending = asyncio.create_task(client.send_message(general, "through the outage"))
        await asyncio.sleep(1.5)
        assert not sending.done()  # waiting on `unavailable`, not failed
        cluster.redis.start()
        message = await asyncio.wait_for(sending, timeout(20))
        history = await client.history(general)
    created = [e.d["message"] for e in history if e.t == "message.created"]
    assert created == [message]
