"""The HTTP side of PROTOCOL.md against real servers: accounts, health, metrics, web client."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    AgoraProcess,
    Cluster,
    PostgresProcess,
    ServerLog,
    general_channel,
    http_json,
    http_request,
    new_user,
    raw_session,
    timeout,
)

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse"

_names = itertools.count()


def unique(prefix: str = "u") -> str:
    return f"{prefix}{os.getpid()}h{next(_names)}"


def register(server: AgoraProcess, body: Any) -> tuple[int, Any]:
    return http_json("POST", server.http + REGISTER, body)


def assert_error(answer: tuple[int, Any], status: int, code: str) -> str:
    """Assert an error answer; return its message."""
    got_status, body = answer
    assert got_status == status, body
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


# registration


async def test_register_answers_201_with_user_and_token(server: AgoraProcess) -> None:
    name = unique()
    status, body = register(
        server, {"username": name, "password": PASSWORD, "display_name": "  Ada L.  "}
    )
    assert status == 201
    assert set(body) == {"user", "token"}
    assert set(body["user"]) == {"id", "username", "name", "bot"}
    assert body["user"]["username"] == name
    assert body["user"]["name"] == "Ada L."
    assert body["user"]["bot"] is False
    assert isinstance(body["user"]["id"], str) and body["user"]["id"]
    assert isinstance(body["token"], str) and body["token"]
    session = await raw_session(server, token=body["token"])
    assert session.identity["user"] == body["user"]
    await session.ws.close()


async def test_register_without_display_name_uses_the_username(server: AgoraProcess) -> None:
    name = unique()
    status, body = register(server, {"username": name, "password": PASSWORD})
    assert status == 201
    assert body["user"]["name"] == name


async def test_the_first_account_of_a_fresh_server_owns_the_community_and_the_second_is_member(
    make_server,
) -> None:
    server = make_server()
    first = await new_user(server, "first")
    second = await new_user(server, "second")
    roles = []
    for account in (first, second):
        session = await raw_session(server, token=account["token"])
        (community,) = session.identity["communities"]
        assert [c["name"] for c in community["channels"]] == ["general"]
        roles.append((community["id"], community["role"]))
        await session.ws.close()
    assert roles[0][0] == roles[1][0]  # the one community
    assert [role for _, role in roles] == ["owner", "member"]


@pytest.mark.parametrize(
    "spelling", [str.lower, str.upper, str.swapcase, str], ids=["lower", "upper", "swapped", "same"]
)
async def test_a_taken_username_in_any_case_is_409_conflict(server: AgoraProcess, spelling) -> None:
    name = unique("Taken")
    assert register(server, {"username": name, "password": PASSWORD})[0] == 201
    message = assert_error(
        register(server, {"username": spelling(name), "password": "another password"}),
        409,
        "conflict",
    )
    assert "taken" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "nopass"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": "shortpw", "password": "1234567"}, "password"),
        ({"username": "longpw", "password": "x" * 257}, "password"),
        ({"username": "pw-not-str", "password": 12345678}, "password"),
        ({"username": "bad name!", "password": PASSWORD}, "username"),
        ({"username": "bad/slash", "password": PASSWORD}, "username"),
        ({"username": "x", "password": PASSWORD}, "username"),
        ({"username": "y" * 33, "password": PASSWORD}, "username"),
        ({"username": 42, "password": PASSWORD}, "username"),
        ({"username": "longname", "password": PASSWORD, "display_name": "d" * 65}, "display_name"),
        ({"username": "blankname", "password": PASSWORD, "display_name": "   "}, "display_name"),
        ({"username": "numname", "password": PASSWORD, "display_name": 7}, "display_name"),
    ],
    ids=[
        "missing-password",
        "missing-username",
        "short-password",
        "long-password",
        "password-not-string",
        "username-space-bang",
        "username-slash",
        "username-too-short",
        "username-too-long",
        "username-not-string",
        "display-name-too-long",
        "display-name-blank",
        "display-name-not-string",
    ],
)
def test_bad_registration_input_is_400_naming_the_field(
    server: AgoraProcess, body: dict[str, Any], field: str
) -> None:
    message = assert_error(register(server, body), 400, "bad_request")
    assert f"'{field}'" in message


@pytest.mark.parametrize(
    "data",
    [b"not json", b"", b"{bad", b"\xff\xfe", b"[]", b'["username", "password"]', b"null", b"42"],
    ids=["text", "empty", "broken", "not-utf8", "empty-array", "array", "null", "number"],
)
@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_a_body_that_is_not_a_json_object_is_400(
    server: AgoraProcess, path: str, data: bytes
) -> None:
    answer = http_request("POST", server.http + path, data=data)
    assert answer.status == 400
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "bad_request"


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON of exactly ``size`` bytes, padded with a key the server ignores."""
    bare = len(json.dumps({**body, "pad": ""}).encode())
    return json.dumps({**body, "pad": "x" * (size - bare)}).encode()


TOO_LARGE = {"error": {"code": "too_large", "message": "the body is over 16384 bytes"}}


@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_a_body_over_16_kib_is_413_too_large(server: AgoraProcess, path: str) -> None:
    body = {"username": unique("big"), "password": PASSWORD}
    over = http_request("POST", server.http + path, data=padded(body, 16 * 1024 + 1))
    assert (over.status, over.json()) == (413, TOO_LARGE)
    at_the_limit = http_request("POST", server.http + path, data=padded(body, 16 * 1024))
    assert at_the_limit.status == {REGISTER: 201, LOGIN: 401}[path], at_the_limit.json()


async def test_a_bot_body_over_16_kib_is_413_too_large(make_server) -> None:
    server = make_server()
    owner = await new_user(server)  # the first account: the community's owner
    url, token = server.http + "/api/v1/bots", owner["token"]
    over = http_request("POST", url, data=padded({"username": "big"}, 16 * 1024 + 1), token=token)
    assert (over.status, over.json()) == (413, TOO_LARGE)
    at_the_limit = http_request(
        "POST", url, data=padded({"username": "big"}, 16 * 1024), token=token
    )
    assert at_the_limit.status == 201, at_the_limit.json()


@pytest.mark.parametrize(
    "data",
    [b"[" * 5000, b"[" * 5000 + b"]" * 5000, b'{"username": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
    ids=["open", "closed", "in-a-field"],
)
@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_a_deeply_nested_body_is_400_not_a_server_error(
    server: AgoraProcess, path: str, data: bytes
) -> None:
    log = ServerLog(server)
    answer = http_request("POST", server.http + path, data=data)
    status, headers, body = answer.status, answer.headers, answer.body
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "error": {"code": "bad_request", "message": "the body is nested too deeply"}
    }
    log.assert_no_traceback()


@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_a_field_name_with_a_lone_surrogate_is_400_showing_it_escaped(
    server: AgoraProcess, path: str
) -> None:
    log = ServerLog(server)
    data = b'{"username": "ab", "password": "correct horse", "\\ud800x": "\\ud800"}'
    answer = http_request("POST", server.http + path, data=data)
    status, headers, body = answer.status, answer.headers, answer.body
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body) == {
        "error": {"code": "bad_request", "message": "field '\\ud800x' is not valid Unicode"}
    }
    log.assert_no_traceback()


@pytest.mark.parametrize("field", ["username", "password", "display_name", "invite"])
def test_a_nul_in_any_field_is_400_not_a_server_error(server: AgoraProcess, field: str) -> None:
    # PostgreSQL refuses U+0000 in text: it must never reach the store.
    log = ServerLog(server)
    body = {"username": "nulcheck", "password": "correct horse", field: "a\u0000b"}
    answer = http_request("POST", server.http + REGISTER, data=json.dumps(body).encode())
    assert answer.status == 400
    assert json.loads(answer.body) == {
        "error": {
            "code": "bad_request",
            "message": f"field '{field}' must not contain U+0000 (NUL)",
        }
    }
    log.assert_no_traceback()


def test_a_client_that_leaves_mid_body_is_logged_in_one_line_without_traceback(
    make_server,
) -> None:
    server = make_server(log_level="info")  # the line is at level info
    node = server.nodes[0]
    log = ServerLog(server)
    for path in (REGISTER, LOGIN):
        with socket.create_connection(("127.0.0.1", node.port), timeout=timeout(10)) as s:
            s.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n".encode()
                + b'{"username'  # 10 of the 1,000 bytes
            )
    text = log.wait_for("disconnected before sending its whole body", count=2)
    lines = [line for line in text.splitlines() if "disconnect" in line.lower()]
    assert len(lines) == 2, text
    assert {line.split(": ")[1] for line in lines} == {f"POST {REGISTER}", f"POST {LOGIN}"}
    log.assert_no_traceback()


def test_registration_closed_is_403_forbidden(make_server) -> None:
    server = make_server(registration=False)
    assert_error(register(server, {"username": "someone", "password": PASSWORD}), 403, "forbidden")


# login and tokens


async def test_login_answers_200_with_a_token_that_identifies(server: AgoraProcess) -> None:
    account = await new_user(server)
    username = account["user"]["username"]
    status, body = http_json(
        "POST", server.http + LOGIN, {"username": username, "password": PASSWORD}
    )
    assert status == 200
    assert body["user"] == account["user"]
    assert body["token"] != account["token"]  # a new token each time
    session = await raw_session(server, token=body["token"])
    assert session.identity["user"]["id"] == account["user"]["id"]
    await session.ws.close()
    # the token from registration still works too
    session = await raw_session(server, token=account["token"])
    assert session.identity["user"]["id"] == account["user"]["id"]
    await session.ws.close()


async def test_a_wrong_password_is_401_unauthorized(server: AgoraProcess) -> None:
    account = await new_user(server)
    username = account["user"]["username"]
    answer = http_json(
        "POST", server.http + LOGIN, {"username": username, "password": PASSWORD + "!"}
    )
    assert_error(answer, 401, "unauthorized")


def test_an_unknown_user_is_401_unauthorized(server: AgoraProcess) -> None:
    answer = http_json(
        "POST", server.http + LOGIN, {"username": unique("ghost"), "password": PASSWORD}
    )
    assert_error(answer, 401, "unauthorized")


def test_login_without_a_password_is_400_naming_the_field(server: AgoraProcess) -> None:
    message = assert_error(
        http_json("POST", server.http + LOGIN, {"username": "someone"}), 400, "bad_request"
    )
    assert "'password'" in message


def _tampered(token: str) -> list[str]:
    token_id, _, secret = token.partition(".")
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    return [
        f"{token_id}.{flipped}",  # one character of the secret changed
        f"{token_id}.{secret[:-1]}",  # the secret cut short
        f"{token_id}.{secret}x",  # the secret made longer
        f"{token_id}.",  # no secret
    ]


@pytest.mark.parametrize("variant", range(4), ids=["flipped", "short", "long", "empty"])
async def test_a_token_with_a_tampered_secret_closes_identify_with_4001(
    server: AgoraProcess, variant: int
) -> None:
    account = await new_user(server)
    session = await raw_session(server)
    frame = await session.command("identify", {"token": _tampered(account["token"])[variant]})
    assert frame["op"] == "error"
    assert frame["d"]["code"] == "unauthorized"
    assert await session.close_code() == 4001


# health, metrics, web client


def test_healthz_is_200_ok(server: AgoraProcess) -> None:
    assert http_json("GET", server.http + "/healthz") == (200, {"status": "ok"})


def test_healthz_answers_head_without_a_body(server: AgoraProcess) -> None:
    answer = http_request("HEAD", server.http + "/healthz")
    assert (answer.status, answer.body) == (200, b"")


async def test_while_the_store_is_unreachable_http_answers_503_with_retry_after(
    deployment: str, tmp_path: Path
) -> None:
    if deployment == "embedded":
        pytest.skip("the embedded store is a file the server holds open: it cannot be unreachable")
    postgres = PostgresProcess().start()
    server = Cluster(tmp_path, postgres=postgres).start()
    try:
        await _answers_503_while_postgres_is_down(server)
    finally:
        server.shutdown()
        postgres.remove()


async def _answers_503_while_postgres_is_down(server: Cluster) -> None:
    node = server.nodes[0]
    owner = await new_user(node)
    server.postgres.stop()
    for method, path, body in [
        ("POST", REGISTER, {"username": unique(), "password": PASSWORD}),
        ("POST", LOGIN, {"username": owner["user"]["username"], "password": PASSWORD}),
        ("GET", "/api/v1/bots", None),
    ]:
        answer = http_request(method, node.http + path, body=body, token=owner["token"])
        assert answer.status == 503, (path, answer.body)
        assert answer.headers["retry-after"] == "1"
        assert answer.json() == {
            "error": {"code": "unavailable", "message": "the server's storage is unavailable"}
        }
    health = http_request("GET", node.http + "/healthz")
    assert health.status == 503
    assert health.json()["status"] == "unavailable" and health.json()["reason"]


def _metrics(server: AgoraProcess) -> tuple[str, str]:
    answer = http_request("GET", server.http + "/metrics")
    assert answer.status == 200
    return answer.headers["content-type"], answer.body.decode()


async def test_metrics_is_prometheus_text_with_the_agora_series(server: AgoraProcess) -> None:
    server = server.nodes[0]  # one process's /metrics
    errors_before = server.metric("agora_errors_total", 'code="unauthorized"')
    session = await raw_session(server)
    frame = await session.command("ping")  # before identify: an unauthorized error
    assert frame["d"]["code"] == "unauthorized"
    await session.ws.close()
    content_type, text = _metrics(server)
    assert content_type.startswith("text/plain")
    samples = {
        sample.name: sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for name in (
        "agora_connections",
        "agora_sessions",
        "agora_frames_in_total",
        "agora_frames_out_total",
        "agora_events_published_total",
        "agora_fanout_seconds_bucket",
        "agora_errors_total",
    ):
        assert name in samples, name
    assert "# TYPE agora_connections gauge" in text
    assert "# TYPE agora_fanout_seconds histogram" in text
    assert 'agora_fanout_seconds_bucket{le="+Inf"}' in text
    assert server.metric("agora_errors_total", 'code="unauthorized"') == errors_before + 1


async def test_garbage_collections_are_timed_by_generation(make_server) -> None:
    server = make_server().nodes[0]
    session = await raw_session(server)
    young = 'generation="0"'

    def collected() -> bool:
        return server.metric("agora_gc_pause_seconds_count", young) > 0

    deadline = asyncio.get_running_loop().time() + timeout(20)
    while not collected():  # each command and scrape allocates: young collections follow
        assert asyncio.get_running_loop().time() < deadline, "no young collection timed"
        await session.command("ping")
    await session.ws.close()
    total = server.metric("agora_gc_pause_seconds_sum", young)
    longest = server.metric("agora_gc_longest_pause_seconds", young)
    assert 0 < longest <= total
    _, text = _metrics(server)
    assert "# TYPE agora_gc_pause_seconds histogram" in text
    assert 'agora_gc_pause_seconds_bucket{generation="2",le="+Inf"}' in text


async def test_events_published_grows_by_exactly_the_messages_sent(make_server) -> None:
    server = make_server(rate_limit=0)
    assert server.metric("agora_events_published_total") == 0
    account = await new_user(server)
    assert server.metric("agora_events_published_total") == 1  # its member.joined
    session = await raw_session(server, token=account["token"])
    channel = general_channel(session.identity)
    for i in range(7):
        await session.ok("message.send", {"channel": channel, "text": f"m{i}"})
    assert server.metric("agora_events_published_total") == 8
    # a retried nonce stores and publishes nothing new
    await session.ok("message.send", {"channel": channel, "text": "once", "nonce": "n-1"})
    await session.ok("message.send", {"channel": channel, "text": "once", "nonce": "n-1"})
    assert server.metric("agora_events_published_total") == 9
    await session.ws.close()


def test_the_root_serves_the_web_client_as_html(server: AgoraProcess) -> None:
    answer = http_request("GET", server.http + "/")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert b"<html" in answer.body.lower()


# what is stored


@pytest.mark.embedded_only  # reads the SQLite file; PostgreSQL has its own in test_scaleout.py
async def test_passwords_are_stored_as_argon2id_and_token_secrets_only_hashed(
    make_server,
) -> None:
    server = make_server()
    password = "a very particular passphrase"
    status, account = register(server, {"username": "stored", "password": password})
    assert status == 201
    status, logged_in = http_json(
        "POST", server.http + LOGIN, {"username": "stored", "password": password}
    )
    assert status == 200
    # read while the server runs (WAL lets readers in), then again from the files at rest
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        (password_hash,) = db.execute(
            "SELECT password_hash FROM users WHERE id = ?", (account["user"]["id"],)
        ).fetchone()
        tokens = dict(
            db.execute(
                "SELECT id, secret_hash FROM tokens WHERE user_id = ?", (account["user"]["id"],)
            ).fetchall()
        )
    db.close()
    assert password_hash.startswith("$argon2id$")
    assert password not in password_hash
    assert len(tokens) == 2
    for token in (account["token"], logged_in["token"]):
        token_id, _, secret = token.partition(".")
        stored = tokens[token_id]
        assert isinstance(stored, bytes)
        assert secret.encode() not in stored
        assert stored == hashlib.sha256(secret.encode()).digest()
    server.stop()
    at_rest = b"".join(
        path.read_bytes()
        for path in server.db.parent.iterdir()
        if path.name.startswith(server.db.name)
    )
    for token in (account["token"], logged_in["token"]):
        assert token.partition(".")[2].encode() not in at_rest
    assert password.encode() not in at_rest
    assert b"$argon2id$" in at_rest
