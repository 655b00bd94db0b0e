"""The admin CLI as operators run it: ``python -m server ...`` against a server's database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clients import login, register
from server.store.migrate import HEAD
from tests.agora_cli import agora, ok
from tests.conftest import (
    AgoraProcess,
    Cluster,
    http_json,
    raw_session,
    shared_postgres,
)
from tests.discussion_helpers import event

PASSWORD = "correct horse\n"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "agora.db"


@pytest.fixture
def served(db: Path):
    """``agora serve`` on ``db``, stopped after the test."""
    started: list[AgoraProcess] = []

    def start(path: Path = db) -> AgoraProcess:
        proc = AgoraProcess(path, rate_limit=0).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def fails(*args: str | Path, stdin: str = "") -> str:
    """Run a command that must fail with exit code 1; its stderr."""
    done = agora(*args, stdin=stdin)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.startswith("agora: error: ")
    return done.stderr


def dump(db: Path) -> list[str]:
    """Everything in the database, as SQL."""
    with sqlite3.connect(db) as conn:
        lines = list(conn.iterdump())
    conn.close()
    return lines


async def all_events(session, channel: str) -> list[dict[str, Any]]:
    """Every event of a channel through ``history``, oldest first."""
    events: list[dict[str, Any]] = []
    before = None
    while True:
        d = {"channel": channel, "limit": 100} | ({"before": before} if before else {})
        page = (await session.ok("history", d))["events"]
        if not page:
            return events
        events[:0] = page
        before = page[0]["o"]


def test_help_names_every_command() -> None:
    top = agora("--help").stdout
    for command in ("serve", "user", "community", "channel", "member", "bot", "export", "import"):
        assert command in top
    assert all(a in agora("bot", "--help").stdout for a in ("create", "list", "token"))
    assert "--password-stdin" in agora("user", "create", "--help").stdout
    assert all(a in agora("user", "--help").stdout for a in ("disable", "enable"))
    assert agora("bot").returncode == 2  # an action is required


# users


async def test_user_create_list_and_password(db: Path, served) -> None:
    (ann,) = ok(
        "user", "create", "ann", "--name", "Ann Lee", "--password-stdin", "--db", db, "--create",
        stdin=PASSWORD,
    )  # fmt: skip
    assert ann[1:] == ["ann", "Ann Lee", "user"]
    (bob,) = ok("user", "create", "bob", "--password-stdin", "--db", db, stdin="bob's password\n")
    assert bob[1:] == ["bob", "bob", "user"]
    assert ok("user", "list", "--db", db) == [ann, bob]
    server = served()
    token = (await login(server.http, "ann", "correct horse"))["token"]
    session = await raw_session(server, token=token)
    assert session.identity["user"]["id"] == ann[0]
    assert session.identity["communities"][0]["role"] == "owner"  # the first account
    await session.ws.close()
    assert ok("user", "password", "ANN", "--password-stdin", "--db", db, stdin="a new one!\n") == [
        [ann[0], "ann"]
    ]
    wrong = http_json(
        "POST", server.http + "/api/v1/auth/login", {"username": "ann", "password": "correct horse"}
    )
    assert wrong[0] == 401
    assert (await login(server.http, "ann", "a new one!"))["user"]["id"] == ann[0]


def test_user_errors_exit_1_and_change_nothing(db: Path) -> None:
    ok("user", "create", "ann", "--password-stdin", "--db", db, "--create", stdin=PASSWORD)
    before = dump(db)
    assert "taken" in fails("user", "create", "ANN", "--password-stdin", "--db", db, stdin=PASSWORD)
    assert "8 to 256" in fails("user", "create", "cy", "--password-stdin", "--db", db, stdin="x\n")
    assert "username" in fails(
        "user", "create", "a b", "--password-stdin", "--db", db, stdin=PASSWORD
    )
    assert "--name" in fails(
        "user", "create", "dee", "--name", " ", "--password-stdin", "--db", db, stdin=PASSWORD
    )
    assert "no account" in fails(
        "user", "password", "zed", "--password-stdin", "--db", db, stdin=PASSWORD
    )
    assert "no account" in fails("user", "disable", "zed", "--db", db)
    assert "no account" in fails("user", "enable", "zed", "--db", db)
    assert dump(db) == before


# communities, channels, members


async def test_a_cli_channel_shows_in_identify_of_a_running_server_and_takes_messages(
    db: Path, served
) -> None:
    server = served()
    account = await register(server.http, "ann", "correct horse")
    (row,) = ok("channel", "create", "Agora", "reading-room", "--db", db)
    session = await raw_session(server, token=account["token"])
    channels = session.identity["communities"][0]["channels"]
    assert [c["name"] for c in channels] == ["general", "reading-room"]
    assert channels[1]["id"] == row[0]
    await session.ok("subscribe", {"channel": row[0]})
    sent = await session.ok("message.send", {"channel": row[0], "text": "first!"})
    assert sent["message"]["channel"] == row[0]
    (event,) = [f for f in session.early if f["op"] == "event"]
    assert (event["o"], event["d"]["message"]["text"]) == (1, "first!")
    await session.ws.close()


async def test_community_channel_and_member_commands(db: Path, served) -> None:
    server = served()
    ann = await register(server.http, "ann", "correct horse", "Ann")
    bob = await register(server.http, "bob", "correct horse", "Bob")
    (club,) = ok("community", "create", "Book club", "--owner", "ann", "--db", db)
    assert club[1] == "Book club"
    communities = ok("community", "list", "--db", db)
    assert [c[1:] for c in communities] == [["Agora", "2"], ["Book club", "1"]]
    (poetry,) = ok("channel", "create", "book CLUB", "poetry", "--db", db)  # by name, any case
    (prose,) = ok("channel", "create", club[0], "prose", "--db", db)  # by id
    listed = ok("channel", "list", "Book club", "--db", db)
    assert [r[2] for r in listed] == ["general", "poetry", "prose"]
    assert {r[0] for r in listed} == {club[0]}
    assert [r[1] for r in listed][1:] == [poetry[0], prose[0]]
    assert len(ok("channel", "list", "--db", db)) == 4  # with Agora's general
    assert ok("member", "add", "Book club", "bob", "--db", db) == [[club[0], "bob", "member"]]
    assert ok("member", "add", "Book club", "bob", "--role", "admin", "--db", db)[0][2] == "admin"
    assert ok("member", "list", "Book club", "--db", db) == [
        [ann["user"]["id"], "ann", "Ann", "owner", "user"],
        [bob["user"]["id"], "bob", "Bob", "admin", "user"],
    ]
    # each join is in the community's general, for the running server too
    session = await raw_session(server, token=bob["token"])
    club_view = next(c for c in session.identity["communities"] if c["id"] == club[0])
    assert club_view["role"] == "admin"
    general = club_view["channels"][0]["id"]
    joined = [e["d"]["member"] for e in await all_events(session, general)]
    assert [(m["username"], m["role"]) for m in joined] == [("ann", "owner"), ("bob", "member")]
    members = await session.ok("community.members", {"community": club[0]})
    assert [m["role"] for m in members["members"]] == ["owner", "admin"]
    await session.ws.close()


def test_community_channel_and_member_errors_exit_1_and_change_nothing(db: Path) -> None:
    ok("user", "create", "ann", "--password-stdin", "--db", db, "--create", stdin=PASSWORD)
    ok("community", "create", "Club", "--owner", "ann", "--db", db)
    before = dump(db)
    assert "no account" in fails("community", "create", "X", "--owner", "nobody", "--db", db)
    assert "1 to 64" in fails("community", "create", " ", "--owner", "ann", "--db", db)
    assert "no community" in fails("channel", "create", "Nope", "room", "--db", db)
    assert "named 'general'" in fails("channel", "create", "Club", "GENERAL", "--db", db)
    assert "letters, digits" in fails("channel", "create", "Club", "no/slashes", "--db", db)
    assert "no community" in fails("channel", "list", "Nope", "--db", db)
    assert "no account" in fails("member", "add", "Club", "nobody", "--db", db)
    assert "no community" in fails("member", "list", "Nope", "--db", db)
    assert agora("member", "add", "Club", "ann", "--role", "king", "--db", db).returncode == 2
    assert dump(db) == before


async def test_operator_changes_are_audited_and_communities_and_channels_renamed(
    db: Path, served
) -> None:
    server = served()
    ann = await register(server.http, "ann", "correct horse")  # the owner
    bob = await register(server.http, "bob", "correct horse")
    bob_id = bob["user"]["id"]
    assert ok("member", "add", "Agora", "bob", "--role", "facilitator", "--db", db)
    (room,) = ok("channel", "create", "Agora", " Reading  Room ", "--db", db)
    assert room[1] == "reading-room"  # the app's rule for channel names
    assert ok("channel", "rename", "Agora", "Reading-ROOM", "Book Talk", "--db", db) == [
        [room[0], "book-talk", "open"]
    ]
    assert ok("channel", "archive", "Agora", room[0], "--db", db) == [
        [room[0], "book-talk", "archived"]
    ]
    (renamed,) = ok("community", "rename", "agora", "Book Club", "--db", db)
    assert renamed[1] == "Book Club"
    session = await raw_session(server, token=ann["token"])
    [community] = session.identity["communities"]
    assert community["name"] == "Book Club"
    [talk] = [c for c in community["channels"] if c["id"] == room[0]]
    assert (talk["name"], talk["archived"]) == ("book-talk", True)
    refused = await session.command("message.send", {"channel": room[0], "text": "hi"})
    assert refused["d"]["code"] == "conflict"
    entries = (await session.ok("audit.list", {"community": community["id"]}))["entries"]
    assert [(e["actor"], e["action"], e["target"], e["details"]) for e in entries] == [
        ("operator", "channel.update", room[0], {"archived": True}),
        ("operator", "channel.update", room[0], {"name": "book-talk"}),
        ("operator", "channel.create", room[0], {"name": "reading-room", "kind": "text"}),
        ("operator", "member.role", bob_id, {"from": "member", "to": "facilitator"}),
    ]
    await session.ws.close()
    assert "no channel 'nowhere'" in fails("channel", "archive", "Book Club", "nowhere", "--db", db)


def test_member_add_takes_every_role_and_a_community_keeps_an_owner(db: Path) -> None:
    ok("user", "create", "ann", "--password-stdin", "--db", db, "--create", stdin=PASSWORD)
    ok("user", "create", "bob", "--password-stdin", "--db", db, stdin=PASSWORD)
    for role in ("guest", "member", "facilitator", "admin", "owner"):
        assert ok("member", "add", "Agora", "bob", "--role", role, "--db", db)[0][2] == role
    assert ok("member", "add", "Agora", "ann", "--role", "admin", "--db", db)[0][2] == "admin"
    before = dump(db)
    assert "only owner" in fails("member", "add", "Agora", "bob", "--role", "member", "--db", db)
    assert dump(db) == before
    assert "guest, member, facilitator, admin, owner" in agora("member", "add", "--help").stdout


def test_community_names_are_unique_without_regard_to_case(db: Path) -> None:
    ok("user", "create", "ann", "--password-stdin", "--db", db, "--create", stdin=PASSWORD)
    (club,) = ok("community", "create", "Book Club", "--owner", "ann", "--db", db)
    before = dump(db)
    taken = fails("community", "create", "book CLUB", "--owner", "ann", "--db", db)
    assert f"a community named 'Book Club' ({club[0]}) exists already" in taken
    assert "without regard to case" in taken
    assert "exists already" in fails("community", "rename", "Agora", "BOOK club", "--db", db)
    assert dump(db) == before


def test_a_missing_database_file_is_refused_unless_created(tmp_path: Path) -> None:
    missing = tmp_path / "agora.db"
    for command in (
        ["user", "list", "--db", missing],
        ["migrate", "--db", missing],
        ["community", "list", "--database", f"sqlite:///{missing}"],
        ["user", "create", "ann", "--password-stdin", "--db", missing],
    ):
        refused = fails(*command, stdin=PASSWORD)
        assert f"there is no database file {missing}" in refused
        assert "--create" in refused
        assert not missing.exists()
    assert ok("migrate", "--db", missing, "--create") == [["schema", HEAD]]
    assert ok("user", "list", "--db", missing) == []


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_server_log_names_the_database_it_opened(store: str, tmp_path: Path) -> None:
    settings: dict[str, Any] = {"log_level": "info"}
    if store == "postgresql":
        url = shared_postgres().create_database()
        settings["database"] = url.replace("agora@", "agora:s3cret-word@")
        expected = f"opened the PostgreSQL database {url.rsplit('/', 1)[1]} on 127.0.0.1:"
    else:
        expected = f"opened the SQLite database {tmp_path / 'agora.db'}"
    server = AgoraProcess(tmp_path / "agora.db", **settings).start()
    server.stop()
    log = server.log.read_text()
    assert expected in log
    assert "s3cret-word" not in log


# bots


async def test_bot_create_list_and_token(db: Path, served) -> None:
    ok("user", "create", "ann", "--password-stdin", "--db", db, "--create", stdin=PASSWORD)
    done = agora("bot", "create", "helper", "--owner", "ann", "--name", "Helper", "--db", db)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert "\n" not in token and "." in token
    (listed,) = ok("bot", "list", "--db", db)
    assert listed[1:] == ["helper", "Helper", "ann"]
    server = served()
    (fresh,) = ok("bot", "token", "helper", "--db", db)
    for each in (token, fresh[0]):
        session = await raw_session(server, token=each)
        assert session.identity["user"] == {
            "id": listed[0],
            "username": "helper",
            "name": "Helper",
            "bot": True,
        }
        await session.ws.close()
    refused = http_json(
        "POST",
        server.http + "/api/v1/auth/login",
        {"username": "helper", "password": "correct horse"},
    )
    assert refused[0] == 401
    # the owner sees it over HTTP too
    owner = await login(server.http, "ann", "correct horse")
    status, mine = http_json("GET", server.http + "/api/v1/bots", token=owner["token"])
    assert status == 200
    assert [b["username"] for b in mine["bots"]] == ["helper"]


def test_bot_errors_exit_1(db: Path) -> None:
    ok("user", "create", "ann", "--password-stdin", "--db", db, "--create", stdin=PASSWORD)
    ok("bot", "create", "helper", "--owner", "ann", "--db", db)
    assert "no account" in fails("bot", "create", "b2", "--owner", "nobody", "--db", db)
    assert "a person" in fails("bot", "create", "b2", "--owner", "helper", "--db", db)
    assert "taken" in fails("bot", "create", "ANN", "--owner", "ann", "--db", db)
    assert "not a bot" in fails("bot", "token", "ann", "--db", db)
    assert "no account" in fails("bot", "token", "nobody", "--db", db)
    assert "is a bot" in fails(
        "user", "password", "helper", "--password-stdin", "--db", db, stdin=PASSWORD
    )


# export and import


async def post(session, channel: str, texts: list[str], nonce: str = "") -> None:
    """Send messages pipelined, then wait for every reply."""
    for i, text in enumerate(texts):
        d = {"channel": channel, "text": text} | ({"nonce": f"{nonce}{i}"} if nonce else {})
        await session.send({"op": "message.send", "id": 100_000 + i, "d": d})
    replies = 0
    while replies < len(texts):
        frame = await session.recv(30)
        assert frame["op"] != "error", frame
        replies += frame["op"] == "reply"


async def source_community(db: Path, served) -> tuple[AgoraProcess, str, dict[str, Any]]:
    """A server with a community of three members, two channels and a few hundred messages."""
    server = served(db)
    ann = await register(server.http, "ann", "correct horse", "Ann")
    bob = await register(server.http, "bob", "correct horse", "Bob")
    ok("bot", "create", "helper", "--owner", "ann", "--db", db)
    (club,) = ok("community", "create", "Book club", "--owner", "ann", "--db", db)
    ok("member", "add", club[0], "bob", "--db", db)
    ok("member", "add", club[0], "helper", "--db", db)
    (prose,) = ok("channel", "create", club[0], "prose", "--db", db)
    sessions = [await raw_session(server, token=a["token"]) for a in (ann, bob)]
    general = next(c for c in sessions[0].identity["communities"] if c["id"] == club[0])
    general_id = general["channels"][0]["id"]
    for round_ in range(3):
        for who, session in enumerate(sessions):
            texts = [f"r{round_} u{who} m{i} ünïcode 👋" for i in range(50)]
            await post(session, general_id, texts)
    await post(sessions[0], prose[0], [f"prose {i}" for i in range(20)], nonce="p")
    for session in sessions:
        await session.ws.close()
    return server, club[0], ann


async def test_export_then_import_keeps_ids_offsets_texts_and_authors(
    tmp_path: Path, served
) -> None:
    source_db, target_db = tmp_path / "source.db", tmp_path / "target.db"
    source, club, ann = await source_community(source_db, served)
    path = tmp_path / "club.json"
    done = agora("export", "Book club", path, "--db", source_db)  # while the source serves
    assert done.returncode == 0, done.stderr
    assert "323/323" in done.stderr  # the progress bar counts every event
    exported = json.loads(path.read_text())
    assert (exported["format"], exported["version"]) == ("agora-export", 1)
    assert exported["community"] == {"id": club, "name": "Book club"}
    members = {m["username"]: m for m in exported["members"]}
    assert [m["username"] for m in exported["members"]] == ["ann", "bob", "helper"]
    assert members["helper"]["bot"] is True
    assert members["helper"]["owner_id"] == ann["user"]["id"]
    assert [len(c["events"]) for c in exported["channels"]] == [303, 20]  # 3 joins + 300

    done = agora("import", path, "--db", target_db, "--create")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\t")[:2] == [club, "Book club"]
    assert "agora user password" in done.stderr
    ok("user", "password", "ann", "--password-stdin", "--db", target_db, stdin=PASSWORD)
    target = served(target_db)
    token = (await login(target.http, "ann", "correct horse"))["token"]
    assert token
    old = await raw_session(source, token=ann["token"])
    new = await raw_session(target, token=token)
    assert new.identity["user"] == ann["user"]
    [before] = [c for c in old.identity["communities"] if c["id"] == club]
    [after] = [c for c in new.identity["communities"] if c["id"] == club]
    assert after == before  # same ids, names, order and role
    for channel in after["channels"]:
        moved = await all_events(new, channel["id"])
        assert moved == await all_events(old, channel["id"])  # same frames at the same offsets
        assert [e["o"] for e in moved] == list(range(1, len(moved) + 1))
    texts = [e["d"]["message"]["text"] for e in moved]
    assert texts == [f"prose {i}" for i in range(20)]
    assert {e["d"]["message"]["author"]["id"] for e in moved} == {ann["user"]["id"]}
    # a retry of a message sent before the move is still recognised
    again = await new.ok("message.send", {"channel": channel["id"], "text": "x", "nonce": "p3"})
    assert again["message"] == moved[3]["d"]["message"]
    members = await new.ok("community.members", {"community": club})
    assert [m["username"] for m in members["members"]] == ["ann", "bob", "helper"]
    await old.ws.close()
    await new.ws.close()


async def test_export_then_import_carries_threads_edits_reactions_read_markers_and_resources(
    tmp_path: Path, served
) -> None:
    source_db, target_db = tmp_path / "source.db", tmp_path / "target.db"
    source = served(source_db)
    ann = await register(source.http, "ann", "correct horse", "Ann")
    bob = await register(source.http, "bob", "correct horse", "Bob")
    (club,) = ok("community", "create", "Book club", "--owner", "ann", "--db", source_db)
    ok("member", "add", club[0], "bob", "--db", source_db)
    a, b = [await raw_session(source, token=x["token"]) for x in (ann, bob)]
    general = next(c for c in a.identity["communities"] if c["id"] == club[0])["channels"][0]["id"]
    first = await a.ok("message.send", {"channel": general, "text": "see https://example.org/x"})
    first = first["message"]
    gone = (await b.ok("message.send", {"channel": general, "text": "a secret typo"}))["message"]
    await a.ok("message.edit", {"channel": general, "message": first["id"], "text": "see it"})
    await b.ok("message.delete", {"channel": general, "message": gone["id"]})
    await b.ok("reaction.add", {"channel": general, "message": first["id"], "emoji": "👍"})
    await a.ok("message.pin", {"channel": general, "message": first["id"]})
    thread = await b.ok(
        "thread.create", {"channel": general, "title": "Chapter 3", "message": first["id"]}
    )
    thread_id = thread["thread"]["id"]
    await a.ok("subscribe", {"channel": general})
    await a.ok("message.send", {"channel": thread_id, "text": "in the thread"})
    # #general hears of the reply in a thread.updated a moment later (UPDATE_DELAY); wait
    # for it, or under load it lands after the snapshot below and before the export.
    while (await event(a, "thread.updated", ch=general))["d"]["replies"] != 1:
        pass
    await b.ok("thread.update", {"thread": thread_id, "tags": ["ch3"], "resolved": True})
    await b.ok("read.mark", {"channel": general, "o": 3})
    await a.ok("resource.add", {"community": club[0], "title": "Notes", "note": "read me"})

    async def state(session) -> dict[str, Any]:
        return {
            "general": await all_events(session, general),
            "thread": await all_events(session, thread_id),
            "threads": await session.ok("thread.list", {"channel": general}),
            "pins": await session.ok("channel.pins", {"channel": general}),
            "resources": await session.ok("resource.list", {"community": club[0]}),
            "found": await session.ok("message.search", {"community": club[0], "query": "see"}),
            "reads": [r for r in session.identity["reads"] if r["channel"] in (general, thread_id)],
            "followed": session.identity["threads"],
        }

    b_again = await raw_session(source, token=bob["token"])
    before = await state(b_again)
    path = tmp_path / "club.json"
    assert agora("export", "Book club", path, "--db", source_db).returncode == 0
    assert "a secret typo" not in path.read_text()
    done = agora("import", path, "--db", target_db, "--create")
    assert done.returncode == 0, done.stderr
    ok("user", "password", "bob", "--password-stdin", "--db", target_db, stdin=PASSWORD)
    target = served(target_db)
    token = (await login(target.http, "bob", "correct horse"))["token"]
    moved = await raw_session(target, token=token)
    after = await state(moved)
    assert after["general"] == before["general"]  # edits, deletes, reactions, pins, thread link
    assert after["thread"] == before["thread"]
    assert after == before
    assert before["threads"]["threads"][0]["tags"] == ["ch3"]
    assert [r["title"] for r in before["resources"]["resources"]] == [
        "Notes",
        "https://example.org/x",
    ]
    assert {r["channel"]: r["o"] for r in before["reads"]}[general] == 3
    for session in (a, b, b_again, moved):
        await session.ws.close()


async def test_a_refused_import_leaves_the_target_untouched(tmp_path: Path, served) -> None:
    source_db = tmp_path / "source.db"
    source, club, _ = await source_community(source_db, served)
    source.stop()
    path = tmp_path / "club.json"
    ok("export", club, path, "--db", source_db)

    before = dump(source_db)
    refusal = fails("import", path, "--db", source_db)
    assert f"community id {club} exists here already" in refusal
    assert "nothing was written" in refusal
    assert dump(source_db) == before

    other_db = tmp_path / "other.db"
    ok("user", "create", "BOB", "--password-stdin", "--db", other_db, "--create", stdin=PASSWORD)
    before = dump(other_db)
    assert "username 'bob' is taken here" in fails("import", path, "--db", other_db)
    assert dump(other_db) == before

    exported = json.loads(path.read_text())
    exported["channels"][1]["events"][5]["o"] = 99
    broken = tmp_path / "broken.json"
    for content, message in [
        ("{not json", "is not JSON"),
        (json.dumps({"format": "other"}), '"format" must be "agora-export"'),
        (json.dumps(exported), "channels[1].events[5]"),
    ]:
        broken.write_text(content)
        assert message in fails("import", broken, "--db", other_db)
        assert dump(other_db) == before
    assert "cannot read" in fails("import", tmp_path / "missing.json", "--db", other_db)


# the scaled store


@pytest.fixture
def cluster(tmp_path: Path):
    started = Cluster(tmp_path, rate_limit=0).start()
    yield started
    started.shutdown()


async def test_the_cli_works_on_a_running_scaled_deployment_and_moves_a_community(
    cluster: Cluster, tmp_path: Path
) -> None:
    database = ["--database", cluster.database]
    assert ok("migrate", *database) == [["schema", HEAD]]
    ok("user", "create", "ann", "--password-stdin", *database, stdin=PASSWORD)
    ok("user", "create", "bob", "--password-stdin", *database, stdin=PASSWORD)
    (club,) = ok("community", "create", "Book club", "--owner", "ann", *database)
    ok("member", "add", "Book club", "bob", "--role", "admin", *database)
    (notes,) = ok("channel", "create", "Book club", "notes", *database)
    token = (await login(cluster.nodes[1].http, "ann", "correct horse"))["token"]
    session = await raw_session(cluster.nodes[1], token=token)
    [seen] = [c for c in session.identity["communities"] if c["id"] == club[0]]
    assert [c["name"] for c in seen["channels"]] == ["general", "notes"]
    for i in range(5):
        await session.ok("message.send", {"channel": notes[0], "text": f"note {i}"})
    await session.ws.close()
    members = ok("member", "list", "Book club", *database)
    assert [(m[1], m[3]) for m in members] == [("ann", "owner"), ("bob", "admin")]

    path = tmp_path / "club.json"
    assert agora("export", "Book club", path, *database).returncode == 0
    elsewhere = ["--database", cluster.postgres.create_database()]
    done = agora("import", path, *elsewhere)
    assert done.returncode == 0, done.stderr
    assert ok("member", "list", "Book club", *elsewhere) == members
    assert ok("channel", "list", "Book club", *elsewhere) == ok(
        "channel", "list", "Book club", *database
    )
