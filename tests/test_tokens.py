"""Tokens that can be taken back (issue 13 item 2): logout, sessions, password change,
sliding expiry and disabled accounts, closing open sessions on every node."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from clients import Client, CommandError, change_password, login, sessions
from protocol import Encoding
from tests.agora_cli import agora, ok, storage
from tests.conftest import (
    AgoraProcess,
    ServerLog,
    closed_with,
    documented_close,
    http_json,
    http_request,
    new_user,
    raw_session,
    timeout,
)

PASSWORD = "correct horse"
LOGOUT = "/api/v1/auth/logout"
SESSIONS = "/api/v1/auth/sessions"
PASSWORD_ROUTE = "/api/v1/auth/password"


def call(
    node: AgoraProcess, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    return http_json(method, node.http + path, body, token=token)


async def second_token(server: Any, account: dict[str, Any]) -> str:
    return (await login(server.nodes[0].http, account["user"]["username"], PASSWORD))["token"]


def token_id(token: str) -> str:
    return token.partition(".")[0]


async def still_open(session: Any) -> bool:
    return (await session.command("ping"))["op"] == "reply"


# logout and sessions


async def test_logout_revokes_the_token_and_closes_its_session_on_the_other_node(
    server: Any,
) -> None:
    account = await new_user(server)
    other = await second_token(server, account)
    leaving = await raw_session(server.nodes[-1], token=account["token"])
    staying = await raw_session(server.nodes[-1], token=other)

    assert http_request("POST", server.nodes[0].http + LOGOUT, token=account["token"]).status == 204

    assert await closed_with(leaving.ws) == documented_close(4001, "logged out")
    assert await still_open(staying)
    again = await raw_session(server.nodes[-1])
    await again.send({"op": "identify", "id": 1, "d": {"token": account["token"]}})
    assert await closed_with(again.ws) == documented_close(4001, "bad token")
    status, answer = call(server.nodes[0], "GET", SESSIONS, account["token"])
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    assert call(server.nodes[0], "POST", LOGOUT, account["token"])[0] == 401
    await staying.ws.close()


async def test_sessions_list_every_working_token_without_secrets_and_mark_the_current(
    server: Any,
) -> None:
    account = await new_user(server)
    other = await second_token(server, account)
    status, answer = call(server.nodes[-1], "GET", SESSIONS, other)
    assert status == 200
    listed = answer["sessions"]
    assert [s["id"] for s in listed] == [token_id(account["token"]), token_id(other)]
    assert [s["current"] for s in listed] == [False, True]
    for listed_session in listed:
        assert set(listed_session) == {"id", "created_ts", "last_used_ts", "label", "current"}
        assert listed_session["label"].startswith("Python-urllib/")  # the client's User-Agent
        assert listed_session["last_used_ts"] >= listed_session["created_ts"]
    for secret in (account["token"], other):
        assert secret.partition(".")[2] not in str(answer)  # never a secret
    other_user = await new_user(server)
    assert [s["id"] for s in await sessions(server.nodes[0].http, other_user["token"])] == [
        token_id(other_user["token"])
    ]


async def test_a_user_revokes_one_of_their_sessions_and_only_their_own(server: Any) -> None:
    account = await new_user(server)
    other = await second_token(server, account)
    stranger = await new_user(server)
    revoked = await raw_session(server.nodes[-1], token=other)
    path = f"{SESSIONS}/{token_id(other)}"

    status, answer = call(server.nodes[0], "DELETE", path, stranger["token"])
    assert (status, answer) == (
        404,
        {"error": {"code": "not_found", "message": "you have no session with this id"}},
    )
    assert await still_open(revoked)
    assert http_request("DELETE", server.nodes[0].http + path, token=account["token"]).status == 204
    assert await closed_with(revoked.ws) == documented_close(4001, "token revoked")
    assert call(server.nodes[0], "DELETE", path, account["token"])[0] == 404
    assert call(server.nodes[0], "GET", SESSIONS, other)[0] == 401
    assert call(server.nodes[0], "GET", SESSIONS, account["token"])[0] == 200


async def test_revoking_the_others_closes_every_session_but_the_current(server: Any) -> None:
    account = await new_user(server)
    others = [await second_token(server, account) for _ in range(2)]
    closing = [await raw_session(server.nodes[-1], token=t) for t in others]
    current = await raw_session(server.nodes[0], token=account["token"])

    status, answer = call(server.nodes[0], "DELETE", SESSIONS, account["token"])

    assert (status, answer) == (200, {"revoked": 2})
    for session in closing:
        assert await closed_with(session.ws) == documented_close(4001, "token revoked")
    assert await still_open(current)
    listed = call(server.nodes[-1], "GET", SESSIONS, account["token"])[1]["sessions"]
    assert [s["id"] for s in listed] == [token_id(account["token"])]
    await current.ws.close()


async def test_the_python_client_logs_out_lists_and_revokes_sessions(server: Any) -> None:
    account = await new_user(server)
    other = await second_token(server, account)
    async with Client(server.nodes[0].ws, account["token"]) as client:
        listed = await client.sessions()
        assert [(s["id"], s["current"]) for s in listed] == [
            (token_id(account["token"]), True),
            (token_id(other), False),
        ]
        await client.revoke_session(token_id(other))
        with pytest.raises(CommandError) as refused:
            await client.revoke_session(token_id(other))
        assert refused.value.code == "not_found"
        await client.logout()
    assert call(server.nodes[-1], "GET", SESSIONS, account["token"])[0] == 401


# password change


async def test_a_password_change_revokes_every_other_token_but_not_the_current(
    server: Any,
) -> None:
    account = await new_user(server)
    username = account["user"]["username"]
    other = await second_token(server, account)
    elsewhere = await raw_session(server.nodes[-1], token=other)
    here = await raw_session(server.nodes[0], token=account["token"])

    await change_password(server.nodes[0].http, account["token"], PASSWORD, "a new password")

    assert await closed_with(elsewhere.ws) == documented_close(4001, "password changed")
    assert await still_open(here)
    listed = call(server.nodes[-1], "GET", SESSIONS, account["token"])[1]["sessions"]
    assert [s["id"] for s in listed] == [token_id(account["token"])]
    with pytest.raises(CommandError):
        await login(server.nodes[-1].http, username, PASSWORD)
    assert (await login(server.nodes[-1].http, username, "a new password"))["user"]["username"] == (
        username
    )
    await here.ws.close()


async def test_a_password_change_needs_the_current_password_and_a_valid_new_one(
    server: Any,
) -> None:
    account = await new_user(server)
    token = account["token"]
    node = server.nodes[0]
    wrong = call(
        node, "POST", PASSWORD_ROUTE, token, {"password": "not it!!", "new_password": "x" * 9}
    )
    assert wrong == (403, {"error": {"code": "forbidden", "message": "wrong password"}})
    short = call(
        node, "POST", PASSWORD_ROUTE, token, {"password": PASSWORD, "new_password": "short"}
    )
    assert short == (
        400,
        {
            "error": {
                "code": "bad_request",
                "message": "field 'new_password' must be 8 to 256 characters",
            }
        },
    )
    missing = call(node, "POST", PASSWORD_ROUTE, token, {"password": PASSWORD})
    assert missing[0] == 400
    assert missing[1]["error"]["message"] == "field 'new_password' must be a string"
    anonymous = call(
        node, "POST", PASSWORD_ROUTE, None, {"password": PASSWORD, "new_password": "x" * 9}
    )
    assert anonymous[0] == 401
    # nothing changed
    assert (await login(node.http, account["user"]["username"], PASSWORD))["token"]


async def test_guessing_the_current_password_is_throttled_like_logins(make_server) -> None:
    server = make_server(rate_limit=0, login_account_limit=2)
    account = await new_user(server)
    guess = {"password": "not the one", "new_password": "a new password"}
    for _ in range(2):
        assert call(server.nodes[0], "POST", PASSWORD_ROUTE, account["token"], guess)[0] == 403
    answer = http_request(
        "POST", server.nodes[-1].http + PASSWORD_ROUTE, body=guess, token=account["token"]
    )
    assert (answer.status, answer.json()["error"]["code"]) == (429, "rate_limited")
    assert int(answer.headers["retry-after"]) > 0
    right = {"password": PASSWORD, "new_password": "a new password"}
    assert call(server.nodes[0], "POST", PASSWORD_ROUTE, account["token"], right)[0] == 429


# expiry


async def test_an_unused_token_expires_and_a_used_one_slides(make_server) -> None:
    ttl = timeout(3)  # seconds
    server = make_server(rate_limit=0, token_ttl_days=ttl / 86_400)
    account = await new_user(server)
    used = await second_token(server, account)
    unused = account["token"]
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.5 * ttl
    # Time passing is what is under test: use one token every tenth of the TTL for
    # longer than the TTL, and the other not at all (asking about it would use it).
    while loop.time() < until:
        assert call(server.nodes[0], "GET", SESSIONS, used)[0] == 200
        await asyncio.sleep(ttl / 10)
    status, answer = call(server.nodes[-1], "GET", SESSIONS, unused)
    assert (status, answer["error"]["message"]) == (401, "this token has expired; log in again")
    session = await raw_session(server.nodes[-1], token=used)  # still good after a TTL and more
    await session.ws.close()
    listed = call(server.nodes[0], "GET", SESSIONS, used)[1]["sessions"]
    assert [s["id"] for s in listed] == [token_id(used)]


async def test_identify_with_an_expired_token_closes_with_token_expired(make_server) -> None:
    ttl = timeout(1)
    server = make_server(rate_limit=0, token_ttl_days=ttl / 86_400)
    account = await new_user(server)
    loop = asyncio.get_running_loop()
    issued = loop.time()
    await asyncio.sleep(ttl * 1.5)  # time passing is what is under test
    assert loop.time() - issued > ttl
    session = await raw_session(server.nodes[-1])
    await session.send({"op": "identify", "id": 1, "d": {"token": account["token"]}})
    refused = await session.recv()
    assert refused["d"] == {"code": "unauthorized", "message": "token expired"}
    assert await closed_with(session.ws) == documented_close(4001, "token expired")


async def test_a_tokens_use_is_written_coarsely_not_on_every_identify(server: Any) -> None:
    account = await new_user(server)
    for node in (server.nodes[0], server.nodes[-1], server.nodes[0]):
        session = await raw_session(node, token=account["token"])
        await session.ws.close()
    (listed,) = call(server.nodes[0], "GET", SESSIONS, account["token"])[1]["sessions"]
    assert listed["last_used_ts"] == listed["created_ts"]  # within the hour: not written


# disabled accounts


def reached_by_the_cli(make_server: Any, deployment: str) -> tuple[Any, list[str]]:
    """A server, and the admin CLI's options that close its sessions.

    Embedded, the CLI cannot reach the server: its check of the store (every 200 ms
    here) closes the sessions. Scaled, the CLI tells the nodes through Redis, and the
    check is too rare (10 minutes) to be what closes them.
    """
    check_ms = 600_000 if deployment == "scaled" else 200
    server = make_server(rate_limit=0, revocation_check_ms=check_ms)
    return server, storage(server) + (
        ["--redis", server.redis.url] if deployment == "scaled" else []
    )


async def test_disable_closes_sessions_on_every_node_and_refuses_login_until_enabled(
    make_server, deployment: str
) -> None:
    server, cli = reached_by_the_cli(make_server, deployment)
    account = await new_user(server)
    username = account["user"]["username"]
    open_sessions = [await raw_session(n, token=account["token"]) for n in server.nodes]
    bystander = await new_user(server)
    watching = await raw_session(server.nodes[-1], token=bystander["token"])

    assert ok("user", "disable", username, *cli) == [[account["user"]["id"], username, "disabled"]]

    for session in open_sessions:
        assert await closed_with(session.ws, wait=10) == documented_close(4001, "account disabled")
    assert await still_open(watching)
    with pytest.raises(CommandError) as refused:
        await login(server.nodes[0].http, username, PASSWORD)
    assert (refused.value.code, refused.value.message) == ("forbidden", "this account is disabled")
    status, answer = call(server.nodes[-1], "GET", SESSIONS, account["token"])
    assert (status, answer["error"]["message"]) == (401, "this account is disabled")
    again = await raw_session(server.nodes[-1])
    await again.send({"op": "identify", "id": 1, "d": {"token": account["token"]}})
    assert await closed_with(again.ws) == documented_close(4001, "account disabled")

    assert ok("user", "enable", username, *cli) == [[account["user"]["id"], username, "enabled"]]
    assert (await login(server.nodes[0].http, username, PASSWORD))["user"]["id"] == (
        account["user"]["id"]
    )
    back = await raw_session(server.nodes[-1], token=account["token"])  # its old token too
    await back.ws.close()
    await watching.ws.close()


async def test_disabling_a_person_stops_the_bots_they_own_until_enabled(make_server) -> None:
    server = make_server(rate_limit=0, revocation_check_ms=200)
    owner = await new_user(server)
    username = owner["user"]["username"]
    bot_name = username + "-bot"
    made = agora("bot", "create", bot_name, "--owner", username, *storage(server))
    assert made.returncode == 0, made.stderr
    bot_token = made.stdout.strip()
    bot_session = await raw_session(server.nodes[-1], token=bot_token)

    ok("user", "disable", username, *storage(server))

    assert await closed_with(bot_session.ws, wait=10) == documented_close(4001, "account disabled")
    status, answer = call(server.nodes[0], "GET", SESSIONS, bot_token)
    assert (status, answer["error"]["message"]) == (401, "this account is disabled")
    ok("user", "enable", username, *storage(server))
    back = await raw_session(server.nodes[0], token=bot_token)
    await back.ws.close()


async def test_a_password_set_by_the_operator_revokes_every_token_of_the_account(
    make_server, deployment: str
) -> None:
    server, cli = reached_by_the_cli(make_server, deployment)
    account = await new_user(server)
    username = account["user"]["username"]
    session = await raw_session(server.nodes[-1], token=account["token"])

    ok("user", "password", username, "--password-stdin", *cli, stdin="a new password\n")

    reason = "password changed" if deployment == "scaled" else "token revoked"
    assert await closed_with(session.ws, wait=10) == documented_close(4001, reason)
    status, _ = call(server.nodes[0], "GET", SESSIONS, account["token"])
    assert status == 401
    assert (await login(server.nodes[0].http, username, "a new password"))["token"]


# bad input


async def test_nothing_sent_to_the_token_routes_makes_a_traceback(server: Any) -> None:
    account = await new_user(server)
    token = account["token"]
    node = server.nodes[0]
    log = ServerLog(server)
    headers_tried = [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Basic abc"},
        {"authorization": "Bearer " + "x" * 5000},
        {"authorization": "Bearer ." + "y" * 40},
        {"authorization": "Bearer 1.2.3"},
        {"authorization": "bearer \u00e9\u00e9.\u00ff"},
    ]
    for headers in headers_tried:
        for method, path in [
            ("POST", LOGOUT),
            ("GET", SESSIONS),
            ("DELETE", SESSIONS),
            ("DELETE", SESSIONS + "/1"),
            ("POST", PASSWORD_ROUTE),
        ]:
            answer = http_request(method, node.http + path, data=b"{}", headers=headers)
            assert answer.status == 401, (method, path, headers)
            assert answer.json()["error"]["code"] == "unauthorized"
    for data in [
        b"",
        b"[" * 5000,
        b"not json",
        b"[]",
        b'{"password": 1, "new_password": "x"}',
        b'{"password": "\\ud800", "new_password": "abcdefghij"}',
        b'{"password": "x", "new_password": "' + b"y" * 20_000 + b'"}',
    ]:
        answer = http_request("POST", node.http + PASSWORD_ROUTE, data=data, token=token)
        assert answer.status in (400, 413), data[:40]
        assert answer.json()["error"]["code"] in ("bad_request", "too_large")
    for session_id in ["x" * 5000, "%ED%A0%80", "%F0%9F%98%80", "%00", "%FF"]:
        answer = http_request("DELETE", f"{node.http}{SESSIONS}/{session_id}", token=token)
        assert answer.status == 404, session_id
        assert answer.json()["error"]["code"] == "not_found"
    for bad in ["\\u0000.x", "1\\u0000.x", "1." + "\\u0000" * 9, "\\ud800.x", "1.\\ud800"]:
        session = await raw_session(node, Encoding.JSON)
        await session.ws.send('{"op": "identify", "id": 1, "d": {"token": "' + bad + '"}}')
        answer = await session.recv()
        # Invalid Unicode and NUL are refused as any command's are (§2, §8), before a
        # token is looked at (PostgreSQL would refuse a NUL in the query).
        assert answer["d"]["code"] == "bad_request", bad
        await session.ws.close()
    assert call(node, "GET", SESSIONS, token)[0] == 200  # the token survived all that
    log.assert_no_traceback()


def test_a_revocation_heard_while_identify_reads_its_token_is_found_by_that_identify() -> None:
    # identify awaits the store between reading its token and registering its session;
    # a revocation heard in between finds no session, so identify looks it up itself.
    from protocol import AuthCloseReason
    from server.domain.tokens import RecentRevocations

    heard = RecentRevocations()
    heard.add("u1", ["old"], AuthCloseReason.LOGGED_OUT)
    started = time.monotonic()
    assert heard.since(started, "u1", "old") is None  # before the token was read: the store knew
    heard.add("u1", ["t1"], AuthCloseReason.TOKEN_REVOKED)
    heard.add("u2", None, AuthCloseReason.ACCOUNT_DISABLED)
    assert heard.since(started, "u1", "t1") is AuthCloseReason.TOKEN_REVOKED
    assert heard.since(started, "u1", "t2") is None
    assert heard.since(started, "u2", "any") is AuthCloseReason.ACCOUNT_DISABLED
