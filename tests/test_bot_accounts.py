"""Bot accounts over HTTP, ``member.joined``, and ``community.members``, on real servers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from clients import register
from tests.agora_cli import ok, storage
from tests.conftest import (
    AgoraProcess,
    general_channel,
    http_json,
    http_request,
    new_user,
    raw_session,
    read_events,
)


def call(
    server: AgoraProcess, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    """A request to ``path`` with ``Authorization: Bearer token``; status and JSON answer."""
    return http_json(method, server.http + path, body, token=token)


@pytest.fixture
async def fresh(make_server) -> tuple[AgoraProcess, dict[str, Any]]:
    """A server of its own and its first account, the community's owner."""
    server = make_server(rate_limit=0)
    return server, await register(server.http, "owner", "correct horse")


async def make_admin(server: AgoraProcess, account: dict[str, Any]) -> None:
    """Make the account an admin of its community, with the admin CLI."""
    session = await raw_session(server, token=account["token"])
    community = session.identity["communities"][0]["id"]
    await session.ws.close()
    username = account["user"]["username"]
    ok("member", "add", community, username, "--role", "admin", *storage(server))


# creating bots


async def test_an_owner_creates_a_bot_that_identifies_as_a_bot_member(fresh) -> None:
    server, owner = fresh
    status, answer = call(
        server,
        "POST",
        "/api/v1/bots",
        owner["token"],
        {"username": "helper", "display_name": " H "},
    )
    assert status == 201
    bot = answer["user"]
    assert bot == {"id": bot["id"], "username": "helper", "name": "H", "bot": True}
    session = await raw_session(server, token=answer["token"])
    assert session.identity["user"] == bot
    (community,) = session.identity["communities"]
    assert community["role"] == "member"
    assert general_channel(session.identity)
    await session.ws.close()


async def test_a_bot_without_display_name_is_named_after_its_username(fresh) -> None:
    server, owner = fresh
    status, answer = call(server, "POST", "/api/v1/bots", owner["token"], {"username": "plain"})
    assert status == 201
    assert answer["user"]["name"] == "plain"


ROUTES = [("POST", "/api/v1/bots"), ("GET", "/api/v1/bots"), ("POST", "/api/v1/bots/1/tokens")]


async def test_bot_routes_without_a_valid_bearer_token_are_401(fresh) -> None:
    server, owner = fresh
    token_id = owner["token"].partition(".")[0]
    for method, path in ROUTES:
        for token in (None, "", "nonsense", f"{token_id}.wrong-secret", "a.b.c"):
            status, answer = call(server, method, path, token, {"username": "sneaky"})
            assert (status, answer["error"]["code"]) == (401, "unauthorized"), (path, token)
        basic = {"authorization": "Basic " + owner["token"]}
        assert http_request(method, server.http + path, headers=basic).status == 401
    assert call(server, "GET", "/api/v1/bots", owner["token"]) == (200, {"bots": []})


async def test_a_plain_member_and_a_bot_may_not_create_bots(fresh) -> None:
    server, owner = fresh
    member = await new_user(server, "member")
    status, answer = call(server, "POST", "/api/v1/bots", member["token"], {"username": "nope"})
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    _, made = call(server, "POST", "/api/v1/bots", owner["token"], {"username": "first-bot"})
    status, answer = call(server, "POST", "/api/v1/bots", made["token"], {"username": "bot-bot"})
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert "bots cannot create bots" in answer["error"]["message"]
    # the refused attempts created nothing: the names are still free
    assert (await register(server.http, "nope", "correct horse"))["user"]["username"] == "nope"
    assert call(server, "GET", "/api/v1/bots", member["token"]) == (200, {"bots": []})


async def test_an_admin_may_create_bots(fresh) -> None:
    server, _ = fresh
    admin = await new_user(server, "admin")
    await make_admin(server, admin)
    status, answer = call(server, "POST", "/api/v1/bots", admin["token"], {"username": "adm-bot"})
    assert status == 201
    assert answer["user"]["bot"] is True


BAD_FIELDS = [
    ({"username": "x"}, "username"),
    ({"username": "has space"}, "username"),
    ({"username": "a" * 33}, "username"),
    ({"username": 7}, "username"),
    ({}, "username"),
    ({"username": "fine", "display_name": ""}, "display_name"),
    ({"username": "fine", "display_name": "n" * 65}, "display_name"),
    ({"username": "fine", "display_name": 3}, "display_name"),
]


async def test_bad_bot_fields_are_400_naming_the_field(fresh) -> None:
    server, owner = fresh
    for body, field in BAD_FIELDS:
        status, answer = call(server, "POST", "/api/v1/bots", owner["token"], body)
        assert (status, answer["error"]["code"]) == (400, "bad_request"), body
        assert f"'{field}'" in answer["error"]["message"]
    for body in ([1], "text", None):
        status, answer = call(server, "POST", "/api/v1/bots", owner["token"], body)
        assert (status, answer["error"]["code"]) == (400, "bad_request"), body
    assert call(server, "GET", "/api/v1/bots", owner["token"]) == (200, {"bots": []})


async def test_a_taken_username_in_any_case_is_409(fresh) -> None:
    server, owner = fresh
    assert call(server, "POST", "/api/v1/bots", owner["token"], {"username": "helper"})[0] == 201
    for spelling in ("OWNER", "Helper", "HELPER"):
        status, answer = call(
            server, "POST", "/api/v1/bots", owner["token"], {"username": spelling}
        )
        assert (status, answer["error"]["code"]) == (409, "conflict"), spelling
    (only,) = call(server, "GET", "/api/v1/bots", owner["token"])[1]["bots"]
    assert only["username"] == "helper"


# listing bots and their tokens


async def test_get_bots_lists_exactly_the_callers_bots(fresh) -> None:
    server, owner = fresh
    admin = await new_user(server, "admin")
    await make_admin(server, admin)
    mine = [
        call(server, "POST", "/api/v1/bots", owner["token"], {"username": f"o-bot{i}"})[1]["user"]
        for i in range(3)
    ]
    theirs = call(server, "POST", "/api/v1/bots", admin["token"], {"username": "a-bot"})[1]
    assert call(server, "GET", "/api/v1/bots", owner["token"]) == (200, {"bots": mine})
    assert call(server, "GET", "/api/v1/bots", admin["token"]) == (200, {"bots": [theirs["user"]]})
    assert call(server, "GET", "/api/v1/bots", theirs["token"]) == (200, {"bots": []})


async def test_a_fresh_bot_token_works_and_only_the_owner_may_mint_one(fresh) -> None:
    server, owner = fresh
    _, made = call(server, "POST", "/api/v1/bots", owner["token"], {"username": "helper"})
    bot_id = made["user"]["id"]
    status, answer = call(server, "POST", f"/api/v1/bots/{bot_id}/tokens", owner["token"])
    assert status == 201
    assert answer["token"] != made["token"]
    for token in (answer["token"], made["token"]):  # the old one stays valid
        session = await raw_session(server, token=token)
        assert session.identity["user"]["id"] == bot_id
        await session.ws.close()
    other = await new_user(server, "other")
    for who, target in [
        (other["token"], bot_id),  # not their bot
        (made["token"], bot_id),  # a bot is not its own owner
        (owner["token"], "123456"),  # no such account
        (owner["token"], other["user"]["id"]),  # a person, not a bot
    ]:
        status, answer = call(server, "POST", f"/api/v1/bots/{target}/tokens", who)
        assert (status, answer["error"]["code"]) == (404, "not_found")


async def test_a_bot_cannot_log_in_with_any_password(fresh) -> None:
    server, owner = fresh
    call(server, "POST", "/api/v1/bots", owner["token"], {"username": "helper"})
    for password in ("", "correct horse", "helper", "x" * 256):
        status, answer = http_json(
            "POST", server.http + "/api/v1/auth/login", {"username": "helper", "password": password}
        )
        assert (status, answer["error"]["code"]) == (401, "unauthorized")


# member.joined


async def test_member_joined_is_delivered_live_when_someone_registers(fresh) -> None:
    server, owner = fresh
    sub = await raw_session(server.nodes[0], token=owner["token"])
    general = general_channel(sub.identity)
    await sub.ok("subscribe", {"channel": general})
    newcomer = await register(server.nodes[-1].http, "newcomer", "correct horse", "New Comer")
    (event,) = await read_events(sub, 1, t="member.joined")
    assert event["ch"] == general
    assert isinstance(event["o"], int)
    before = time.time_ns() // 1_000_000
    assert event["d"] == {
        "member": {
            "id": newcomer["user"]["id"],
            "username": "newcomer",
            "name": "New Comer",
            "bot": False,
            "role": "member",
        },
        "ts": event["d"]["ts"],
    }
    assert abs(event["d"]["ts"] - before) < 60_000  # ms since the epoch, now
    # durable: history has it at the same offset
    history = await sub.ok("history", {"channel": general})
    assert event in history["events"]
    await sub.ws.close()


async def test_member_joined_is_delivered_live_when_a_bot_is_created(fresh) -> None:
    server, owner = fresh
    sub = await raw_session(server.nodes[0], token=owner["token"])
    general = general_channel(sub.identity)
    await sub.ok("subscribe", {"channel": general})
    bots = "/api/v1/bots"
    _, made = call(server.nodes[-1], "POST", bots, owner["token"], {"username": "welcome"})
    (event,) = await read_events(sub, 1, t="member.joined")
    assert event["d"]["member"] == {**made["user"], "role": "member"}
    assert event["d"]["member"]["bot"] is True
    await sub.ws.close()


async def test_the_first_account_joins_as_owner_at_offset_one(fresh) -> None:
    server, owner = fresh
    session = await raw_session(server, token=owner["token"])
    history = await session.ok("history", {"channel": general_channel(session.identity)})
    (first,) = history["events"]
    assert (first["t"], first["o"]) == ("member.joined", 1)
    assert first["d"]["member"]["role"] == "owner"
    assert first["d"]["member"]["id"] == owner["user"]["id"]
    await session.ws.close()


# community.members


async def test_community_members_lists_everyone_in_join_order(fresh) -> None:
    server, owner = fresh
    people = [await register(server.http, f"p{i}", "correct horse") for i in range(3)]
    _, bot = call(server, "POST", "/api/v1/bots", owner["token"], {"username": "helper"})
    session = await raw_session(server, token=people[1]["token"])
    community = session.identity["communities"][0]["id"]
    reply = await session.ok("community.members", {"community": community})
    expected = [{**owner["user"], "role": "owner"}]
    expected += [{**p["user"], "role": "member"} for p in people]
    expected += [{**bot["user"], "role": "member"}]
    assert reply == {"members": expected}
    await session.ws.close()


async def test_community_members_of_an_unknown_or_foreign_community_is_refused(fresh) -> None:
    server, owner = fresh
    outsider = await new_user(server, "outsider")
    (club,) = ok("community", "create", "Club", "--owner", "owner", *storage(server))
    session = await raw_session(server, token=outsider["token"])
    unknown = await session.command("community.members", {"community": "404404"})
    assert unknown["d"]["code"] == "not_found"
    foreign = await session.command("community.members", {"community": club[0]})
    assert foreign["d"]["code"] == "forbidden"
    for bad in ({}, {"community": ""}, {"community": 5}):
        assert (await session.command("community.members", bad))["d"]["code"] == "bad_request"
    too_long = await session.command("community.members", {"community": "1" * 65})
    assert too_long["d"]["code"] == "too_large"
    # the owner of that community may read it
    mine = await raw_session(server, token=owner["token"])
    reply = await mine.ok("community.members", {"community": club[0]})
    assert reply == {"members": [{**owner["user"], "role": "owner"}]}
    await session.ws.close()
    await mine.ws.close()
