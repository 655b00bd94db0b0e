"""Bounded connections (issue 13, items 4 and 5), over raw TCP sockets.

Deadlines for request headers and bodies, the cap on connections per client
address, the cap on sessions per account, the open-file limit, and the outbox
limit counting every byte a session holds, replies included. Deadlines are set
small so that the tests are quick; nothing here asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path
from typing import Any

from protocol import Encoding
from server.addresses import address_key
from tests.conftest import (
    BIG_TEXT,
    AgoraProcess,
    ServerLog,
    closed_with,
    documented_close,
    eventually,
    general_channel,
    kernel_buffering,
    never_reading,
    new_user,
    raw_session,
    timeout,
)

#: Short deadlines: a silent or slow socket is closed within a fraction of a second.
QUICK = {"request_header_timeout_ms": 300, "request_body_timeout_ms": 300}


async def open_socket(node: AgoraProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", node.port)


async def drip(writer: asyncio.StreamWriter, data: bytes, closed: asyncio.Task[bytes]) -> int:
    """Send ``data`` a byte every 20 ms until the server closes; the bytes sent.

    The client's pace, not a wait for the server: 6,000 bytes would take two minutes,
    and the deadlines under test are a fraction of a second.
    """
    sent = 0
    while not closed.done() and sent < len(data):
        try:
            writer.write(data[sent : sent + 1])
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        await asyncio.sleep(0.02)
    return sent


async def read_to_close(reader: asyncio.StreamReader, wait: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    async with asyncio.timeout(timeout(wait)):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


async def healthz(node: AgoraProcess) -> bytes:
    """The status line of ``GET /healthz`` on a new connection."""
    reader, writer = await open_socket(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: agora\r\nConnection: close\r\n\r\n")
    answer = await read_to_close(reader)
    writer.close()
    return answer.split(b"\r\n", 1)[0]


# request deadlines


async def test_a_silent_connection_is_closed_at_the_header_deadline(make_server) -> None:
    node = make_server(**QUICK).nodes[0]
    reader, writer = await open_socket(node)
    assert await read_to_close(reader) == b""  # closed, and nothing was answered
    writer.close()


async def test_half_sent_request_headers_are_closed_at_the_deadline(make_server) -> None:
    node = make_server(**QUICK).nodes[0]
    reader, writer = await open_socket(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: agora\r\nX-Slow: ")  # never finished
    assert await read_to_close(reader) == b""
    writer.close()


async def test_headers_dripped_a_byte_at_a_time_are_closed_before_they_end(make_server) -> None:
    node = make_server(**QUICK).nodes[0]
    reader, writer = await open_socket(node)
    request = b"GET /healthz HTTP/1.1\r\nHost: agora\r\n" + b"X-Drip: a\r\n" * 500 + b"\r\n"
    closed = asyncio.create_task(read_to_close(reader, wait=30))
    sent = await drip(writer, request, closed)
    assert await closed == b""
    assert sent < len(request)
    writer.close()


async def test_a_body_that_does_not_arrive_is_closed_at_the_deadline(make_server) -> None:
    server = make_server(**QUICK)
    node = server.nodes[0]
    log = ServerLog(server)
    reader, writer = await open_socket(node)
    writer.write(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: agora\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"username":'
    )
    assert await read_to_close(reader) == b""
    writer.close()
    assert await healthz(node) == b"HTTP/1.1 200 OK"  # the server answers the next one
    log.assert_no_traceback()


async def test_a_body_dripped_a_byte_at_a_time_is_closed_before_it_ends(make_server) -> None:
    node = make_server(**QUICK).nodes[0]
    reader, writer = await open_socket(node)
    body = b'{"username": "' + b"a" * 3000 + b'"}'
    writer.write(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: agora\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    closed = asyncio.create_task(read_to_close(reader, wait=30))
    sent = await drip(writer, body, closed)
    assert await closed == b""
    assert sent < len(body)
    writer.close()


async def test_a_kept_alive_connection_has_the_deadline_for_its_next_request(
    make_server,
) -> None:
    node = make_server(**QUICK).nodes[0]
    reader, writer = await open_socket(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: agora\r\n\r\n")
    first = await reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK")
    (length,) = [h.split(b":")[1] for h in first.split(b"\r\n") if h.startswith(b"content-length")]
    await reader.readexactly(int(length))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: ag")  # the next request stalls
    assert await read_to_close(reader) == b""
    writer.close()


async def test_a_websocket_session_outlives_the_header_deadline(make_server) -> None:
    node = make_server(**QUICK).nodes[0]
    account = await new_user(node)
    session = await raw_session(node, token=account["token"])
    # A silent socket opened after the session is closed at its deadline; the
    # session's own (armed before it, then disarmed by the upgrade) has passed too.
    reader, writer = await open_socket(node)
    assert await read_to_close(reader) == b""
    writer.close()
    assert await session.ok("ping") == {}
    await session.ws.close()


# caps


async def test_connections_over_the_per_address_cap_are_closed_at_accept(make_server) -> None:
    server = make_server(max_connections_per_address=3, request_header_timeout_ms=60_000)
    node = server.nodes[0]
    log = ServerLog(server)
    held = [await open_socket(node) for _ in range(3)]
    reader, writer = await open_socket(node)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: agora\r\n\r\n")
    assert await read_to_close(reader) == b""  # closed unanswered
    writer.close()
    log.wait_for("holds 3 connections (max_connections_per_address)")
    _, first = held.pop()
    first.close()

    async def answered() -> bool:
        return await healthz(node) == b"HTTP/1.1 200 OK"

    # once one of the three is gone, the address may connect again
    deadline = asyncio.get_running_loop().time() + timeout(10)
    while not await answered():
        assert asyncio.get_running_loop().time() < deadline, "never served again"
    for _, writer in held:
        writer.close()


async def test_identify_past_the_sessions_per_user_cap_is_forbidden_and_closed_1008(
    make_server, encoding: Encoding
) -> None:
    node = make_server(max_sessions_per_user=2).nodes[0]
    account = await new_user(node)
    first = await raw_session(node, encoding, token=account["token"])
    second = await raw_session(node, encoding, token=account["token"])
    third = await raw_session(node, encoding)
    refused = await third.command("identify", {"token": account["token"]})
    assert refused["op"] == "error" and refused["id"] == 1
    assert refused["d"] == {"code": "forbidden", "message": "too many sessions for this account"}
    assert await closed_with(third.ws) == documented_close(
        1008, "too many sessions for this account"
    )
    other = await new_user(node)  # another account is not affected
    stranger = await raw_session(node, encoding, token=other["token"])
    await first.ws.close()
    # once a session has ended, the account may identify again
    await eventually(lambda: node.metric("agora_sessions") == 2, "the first session's end")
    again = await raw_session(node, encoding, token=account["token"])
    assert again.identity["user"]["id"] == account["user"]["id"]
    for session in (second, stranger, again):
        await session.ws.close()


# the open-file limit


def low_file_limit(soft: int, hard: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def open_file_limits(node: AgoraProcess) -> tuple[int, int]:
    assert node.proc is not None
    limits = Path(f"/proc/{node.proc.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


async def test_the_open_file_soft_limit_is_raised_to_the_hard_limit(make_server) -> None:
    server = make_server(preexec_fn=low_file_limit(256, 2048))
    for node in server.nodes:
        assert open_file_limits(node) == (2048, 2048)


async def test_open_connections_near_the_file_limit_log_a_warning(make_server) -> None:
    server = make_server(preexec_fn=low_file_limit(256, 256), request_header_timeout_ms=60_000)
    node = server.nodes[0]
    log = ServerLog(server)
    held = [await open_socket(node) for _ in range(int(0.8 * 256) + 1)]
    text = log.wait_for("near this process's limit of 256 open files")
    assert text.count("near this process's limit") == 1  # once, not once per connection
    for _, writer in held:
        writer.close()


# every byte a session holds counts (item 5)


async def post(node: AgoraProcess, token: str, channel: str, count: int) -> None:
    session = await raw_session(node, token=token)
    for i in range(count):
        await session.ok("message.send", {"channel": channel, "text": f"{i:04d}{BIG_TEXT}"})
    await session.ws.close()


async def test_a_reply_over_the_outbox_limit_is_refused_with_too_large(
    make_server, encoding: Encoding
) -> None:
    limit = 64 * 1024
    server = make_server(rate_limit=0, outbox_limit=limit)
    node = server.nodes[0]
    account = await new_user(node)
    session = await raw_session(node, encoding, token=account["token"])
    channel = general_channel(session.identity)
    await post(server.nodes[-1], account["token"], channel, 6)  # ~96 KB of text
    refused = await session.command("history", {"channel": channel, "limit": 6})
    assert refused["op"] == "error" and refused["d"]["code"] == "too_large"
    assert "outbox_limit of 65536" in refused["d"]["message"]
    # a page that fits is answered, and the session stays open
    page = await session.ok("history", {"channel": channel, "limit": 2})
    assert len(page["events"]) == 2
    await session.ws.close()


async def test_sockets_that_ask_for_history_and_never_read_are_cut_at_4010(make_server) -> None:
    limit = 64 * 1024
    # a long close deadline: the clients read their close frames only at the end
    server = make_server(rate_limit=0, outbox_limit=limit, close_timeout_ms=120_000)
    node = server.nodes[0]
    account = await new_user(node)
    first = await raw_session(node, token=account["token"])
    channel = general_channel(first.identity)
    await first.ws.close()
    await post(server.nodes[-1], account["token"], channel, 3)
    sockets = 4
    slow = []
    for _ in range(sockets):
        connect_args = never_reading(node)
        buffering = kernel_buffering(connect_args)  # at most what the kernel holds for it
        slow.append((await raw_session(node, token=account["token"], **connect_args), buffering))
    page = 3 * len(BIG_TEXT.encode())  # each answer is a little more than this
    asks = (slow[0][1] + limit) // page + 1  # more than the kernel and the outbox hold
    for session, _ in slow:
        for i in range(asks):
            await session.send(
                {"op": "history", "id": 10 + i, "d": {"channel": channel, "limit": 3}}
            )
    await eventually(
        lambda: node.metric("agora_closes_total", 'code="4010"') == sockets, "every 4010", wait=30
    )
    # what the server holds for them stays within their limits, though none has read
    assert node.metric("agora_outbox_bytes") <= sockets * limit
    for session, buffering in slow:
        read: list[Any] = []
        assert await closed_with(session.ws, wait=30, read=read) == documented_close(
            4010, "outbound buffer overflowed"
        )
        assert sum(len(m) for m in read) <= buffering + limit


def test_an_ipv6_client_counts_by_its_64_for_the_connection_cap_as_for_logins() -> None:
    # Loopback offers one IPv6 address, so the rule is checked on the key itself: the
    # guard and the throttle share it, and a host changing its last 64 bits stays one.
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
