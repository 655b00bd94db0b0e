"""Names that cannot impersonate (issue 13, item 6): clean display names, confusable and
reserved usernames, over HTTP, the admin CLI, and a database migrated from before."""

from __future__ import annotations

import itertools
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from server.domain.names import skeleton
from tests.agora_cli import ok, storage
from tests.conftest import (
    AgoraProcess,
    Cluster,
    http_json,
    new_user,
    stop_deployment,
)

REGISTER = "/api/v1/auth/register"
PASSWORD = "correct horse"
_names = itertools.count()


def unique(prefix: str = "n") -> str:
    """A fresh name of letters and digits that the skeleton rule leaves alone (no 0, 1)."""
    digits = str(os.getpid()).replace("0", "2").replace("1", "3")
    return f"{prefix}{digits}k{str(next(_names)).replace('0', 'z').replace('1', 'y')}"


def register(server: Any, username: str, **fields: Any) -> tuple[int, Any]:
    return http_json(
        "POST", server.http + REGISTER, {"username": username, "password": PASSWORD, **fields}
    )


# display names


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("Ann\u202eevil", "Annevil"),  # right-to-left override
        ("\u2067Ann\u2069 Lee", "Ann Lee"),  # an isolate
        ("A\u200bn\u200dn\ufeff", "Ann"),  # zero-width space, joiner, BOM
        ("Ann\nLee\r\n", "Ann Lee"),  # newlines
        ("Ann\x07\x1b[31mLee", "Ann[31mLee"),  # control characters (a terminal escape)
        ("  Ann\u061c  ", "Ann"),  # an Arabic letter mark, then trimmed
    ],
    ids=["override", "isolate", "zero-width", "newline", "control", "mark"],
)
def test_a_registered_display_name_loses_control_bidi_and_zero_width_characters(
    server: Any, typed: str, kept: str
) -> None:
    status, body = register(server, unique(), display_name=typed)
    assert status == 201, body
    assert body["user"]["name"] == kept


def test_a_display_name_of_invisible_characters_only_is_400(server: Any) -> None:
    status, body = register(server, unique(), display_name="\u202e\u200b\n\u2066")
    assert status == 400, body
    assert "display_name" in body["error"]["message"]


async def test_a_bot_display_name_is_cleaned_too(make_server) -> None:
    server = make_server()
    owner = await new_user(server, "owner")  # the first account: the owner, who may make bots
    status, body = http_json(
        "POST",
        server.http + "/api/v1/bots",
        {"username": unique("bot"), "display_name": "Helper\u202e\u200b\nBot"},
        token=owner["token"],
    )
    assert status == 201, body
    assert body["user"]["name"] == "Helper Bot"


def test_the_admin_cli_cleans_a_display_name(server: Any) -> None:
    name = unique("cli")
    rows = ok(
        "user", "create", name, "--name", "Ops\u202e\u200bPerson", "--password-stdin",
        *storage(server), stdin=PASSWORD,
    )  # fmt: skip
    assert rows[0][1:3] == [name, "OpsPerson"]


# confusable usernames


@pytest.mark.parametrize(
    ("first", "second"),
    [("l", "1"), ("l", "I"), ("I", "1"), ("o", "0"), ("O", "0"), ("m", "rn"), ("w", "vv")],
    ids=["l-1", "l-I", "I-1", "o-0", "O-0", "m-rn", "w-vv"],
)
def test_a_username_confusable_with_an_existing_one_is_409(
    server: Any, first: str, second: str
) -> None:
    base = unique("p")
    status, body = register(server, f"{base}{first}x")
    assert status == 201, body
    status, body = register(server, f"{base}{second}x")
    assert status == 409, body
    assert body["error"]["code"] == "conflict"
    assert "looks like an existing name" in body["error"]["message"]


def test_a_username_that_only_looks_different_in_case_is_taken_not_confusable(
    server: Any,
) -> None:
    base = unique("q")
    assert register(server, f"{base}ab")[0] == 201
    status, body = register(server, f"{base.upper()}AB")
    assert status == 409, body
    assert "is taken" in body["error"]["message"]


def test_a_bot_username_confusable_with_an_account_is_409(server: Any) -> None:
    base = unique("r")
    status, owner = register(server, f"{base}lx")
    assert status == 201, owner
    # Admins may create bots: make this account one.
    ok("member", "add", _community(server), f"{base}lx", "--role", "admin", *storage(server))
    status, body = http_json(
        "POST", server.http + "/api/v1/bots", {"username": f"{base}1x"}, token=owner["token"]
    )
    assert status == 409, body
    assert "looks like an existing name" in body["error"]["message"]


def _community(server: Any) -> str:
    return ok("community", "list", *storage(server))[0][0]


@pytest.mark.parametrize(
    "username", ["admin", "ADMIN", "adrnin", "system", "agora", "ag0ra", "everyone", "Here"]
)
def test_a_reserved_username_or_a_lookalike_is_409(server: Any, username: str) -> None:
    status, body = register(server, username)
    assert status == 409, body
    assert body["error"]["code"] == "conflict"
    assert "reserved" in body["error"]["message"]


# a database from before the skeleton column


def _prepare_at_0004(url: str, username: str) -> None:
    """Migrate a database to revision 0004 (no skeleton column) and add an account."""
    import asyncio

    import sqlalchemy
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import create_async_engine

    from server.store.migrate import sqlalchemy_url

    def upgrade(connection: sqlalchemy.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", "server.store:migrations")
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO users(id, username, display_name, password_hash, created_ms)"
                " VALUES ('old1', :name, 'Old', '', 1)"
            ),
            {"name": username},
        )

    if url.startswith("sqlite:///"):
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as connection:
            upgrade(connection)
        engine.dispose()
        return

    async def run() -> None:
        engine = create_async_engine(sqlalchemy_url(url))
        async with engine.begin() as connection:
            await connection.run_sync(upgrade)
        await engine.dispose()

    asyncio.run(run())


def test_the_migration_gives_existing_accounts_their_skeleton(
    deployment: str, tmp_path: Path
) -> None:
    old = unique("olda")
    if deployment == "scaled":
        server: Any = Cluster(tmp_path)
        _prepare_at_0004(server.database, old + "l")
        server.start()
    else:
        db = tmp_path / "agora.db"
        _prepare_at_0004(f"sqlite:///{db}", old + "l")
        server = AgoraProcess(db).start()
    try:
        status, body = register(server, old + "1")
        assert status == 409, body
        assert f"looks like an existing name ('{old}l')" in body["error"]["message"]
        if deployment == "embedded":
            with sqlite3.connect(server.db) as db_file:
                (row,) = db_file.execute("SELECT skeleton FROM users WHERE id = 'old1'")
            assert row[0] == skeleton(old + "l")
    finally:
        stop_deployment(server)
