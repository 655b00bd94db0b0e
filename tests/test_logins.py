"""Throttled logins and registrations, the bounded hash queue, and the first owner's setup
code (issue 13, items 3 and 8), over real sockets in both deployments."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
from typing import Any

from tests.agora_cli import ok, storage
from tests.conftest import http_request, raw_session, timeout

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse"
_names = itertools.count()


def unique(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid()}k{next(_names)}"


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    answer = http_request("POST", url, body=body)
    return answer.status, answer.headers, answer.json()


def login(node: Any, username: str, password: str) -> tuple[int, dict[str, str], Any]:
    return post(node.http + LOGIN, {"username": username, "password": password})


def register(node: Any, username: str, **fields: Any) -> tuple[int, dict[str, str], Any]:
    return post(node.http + REGISTER, {"username": username, "password": PASSWORD, **fields})


def assert_throttled(answer: tuple[int, dict[str, str], Any], status: int = 429) -> int:
    """Assert a throttled answer: the status, Retry-After in whole seconds, the JSON error
    shape with ``retry_after_ms``. Returns Retry-After."""
    got, headers, body = answer
    assert got == status, body
    retry_after = int(headers["retry-after"])
    assert retry_after >= 1
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == ("rate_limited" if status == 429 else "unavailable")
    assert error["retry_after_ms"] == retry_after * 1000
    assert isinstance(error["message"], str) and error["message"]
    return retry_after


# failed logins


def test_failed_logins_of_one_account_over_the_limit_are_429_even_with_the_right_password(
    make_server,
) -> None:
    server = make_server(login_account_limit=3)
    name = unique()
    assert register(server, name)[0] == 201
    for _ in range(3):
        assert login(server, name, "wrong password")[0] == 401
    assert_throttled(login(server, name, "wrong password"))
    assert_throttled(login(server, name, PASSWORD))
    assert_throttled(login(server, name.upper(), PASSWORD))  # names compare case-insensitively


def test_an_unknown_account_name_is_throttled_like_a_known_one(make_server) -> None:
    server = make_server(login_account_limit=3)
    known, unknown = unique("known"), unique("nobody")
    assert register(server, known)[0] == 201
    answers = {}
    for name in (known, unknown):
        statuses = [login(server, name, "wrong password")[0] for _ in range(3)]
        assert statuses == [401, 401, 401]
        status, headers, body = login(server, name, "wrong password")
        assert_throttled((status, headers, body))
        answers[name] = (status, body["error"]["code"], set(body["error"]))
    assert answers[known] == answers[unknown]


def test_successful_logins_do_not_count_toward_the_limit(make_server) -> None:
    server = make_server(login_account_limit=2)
    name = unique()
    assert register(server, name)[0] == 201
    assert login(server, name, "wrong password")[0] == 401
    for _ in range(5):
        assert login(server, name, PASSWORD)[0] == 200
    assert login(server, name, "wrong password")[0] == 401
    assert_throttled(login(server, name, PASSWORD))


def test_failed_logins_from_one_address_over_the_limit_are_429_for_any_name(make_server) -> None:
    server = make_server(login_account_limit=0, login_address_limit=3)
    for _ in range(3):
        assert login(server, unique("guess"), "wrong password")[0] == 401
    assert_throttled(login(server, unique("guess"), "wrong password"))


def test_failures_on_one_node_count_on_the_other(make_server) -> None:
    server = make_server(login_account_limit=2)
    first, last = server.nodes[0], server.nodes[-1]
    name = unique()
    assert register(first, name)[0] == 201
    assert login(first, name, "wrong password")[0] == 401
    assert login(first, name, "wrong password")[0] == 401
    assert_throttled(login(last, name, PASSWORD))


# registration


def test_registrations_from_one_address_over_the_limit_are_429(make_server) -> None:
    server = make_server(register_address_limit=2)
    assert register(server.nodes[0], unique())[0] == 201
    assert register(server.nodes[-1], unique())[0] == 201
    assert_throttled(register(server.nodes[0], unique()))


# the hash queue


async def _raw_login(port: int, body: bytes) -> tuple[int, dict[str, str]]:
    """POST a login on a raw socket: the status and headers (lower-case names)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST " + LOGIN.encode() + b" HTTP/1.1\r\nhost: agora\r\n"
        b"content-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    writer.close()
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines)}
    return int(status_line.split()[1]), headers


async def test_logins_beyond_the_hash_queue_are_503_with_retry_after_at_once(make_server) -> None:
    # No one may wait: beyond the hashes that run, a login is refused without hashing.
    server = make_server(hash_queue=0, login_account_limit=0)
    node = server.nodes[0]
    bodies = [
        json.dumps({"username": unique("flood"), "password": "wrong password"}).encode()
        for _ in range(60)
    ]
    async with asyncio.timeout(timeout(60)):
        answers = await asyncio.gather(*(_raw_login(node.port, b) for b in bodies))
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {401, 503}, statuses
    busy = [headers for status, headers in answers if status == 503]
    assert busy, "60 logins at once never filled 4 hashing threads"
    assert all(int(headers["retry-after"]) >= 1 for headers in busy)


# the first owner


def _setup_codes(server: Any) -> list[str]:
    """The setup code each node wrote to its log."""
    codes = []
    for node in server.nodes:
        found = re.search(r"setup code ([0-9a-f]{20})", node.log.read_text())
        assert found is not None, node.log.read_text()
        codes.append(found[1])
    return codes


async def _role(node: Any, token: str) -> str:
    session = await raw_session(node, token=token)
    await session.ws.close()
    return session.identity["communities"][0]["role"]


async def test_beyond_loopback_the_first_account_needs_the_setup_code_from_the_log(
    make_server,
) -> None:
    server = make_server(host="0.0.0.0")
    codes = _setup_codes(server)
    assert len(set(codes)) == 1  # every node logged the one code
    first, last = server.nodes[0], server.nodes[-1]

    status, _, body = register(first, unique("eager"))
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"
    assert body["error"]["reason"] == "setup_code"
    assert "log" in body["error"]["message"]
    status, _, body = register(last, unique("eager"), setup_code="0" * 20)
    assert (status, body["error"]["reason"]) == (403, "setup_code")

    status, _, owner = register(last, unique("owner"), setup_code=codes[0])
    assert status == 201, owner
    assert await _role(first, owner["token"]) == "owner"
    status, _, member = register(first, unique("member"))  # no code needed any more
    assert status == 201, member
    assert await _role(last, member["token"]) == "member"


async def test_on_loopback_the_first_account_is_the_owner_without_a_code(make_server) -> None:
    server = make_server()
    assert all("setup code" not in node.log.read_text() for node in server.nodes)
    status, _, owner = register(server, unique("owner"))
    assert status == 201, owner
    assert await _role(server.nodes[0], owner["token"]) == "owner"


async def test_the_operator_can_make_the_owner_with_the_cli_instead(make_server) -> None:
    server = make_server(host="0.0.0.0")
    boss = unique("boss")
    ok("user", "create", boss, "--password-stdin", *storage(server), stdin=PASSWORD)
    status, _, member = register(server.nodes[-1], unique("member"))
    assert status == 201, member
    assert await _role(server.nodes[0], member["token"]) == "member"
    status, _, answer = login(server.nodes[0], boss, PASSWORD)
    assert status == 200, answer
    assert await _role(server.nodes[-1], answer["token"]) == "owner"
