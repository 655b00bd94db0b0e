"""Communities people run themselves: create, invite, channels, roles, moderation, audit.

Every test runs in both deployments; in the scaled one each session names its
node, so that community events are shown to cross nodes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Cluster,
    RawSession,
    general_channel,
    http_json,
    new_user,
    raw_session,
    timeout,
)

_opened: list[RawSession] = []
_clubs = itertools.count()


@pytest.fixture(autouse=True)
async def _close_sessions() -> AsyncIterator[None]:
    yield
    while _opened:
        await _opened.pop().ws.close()


async def connect(server: Any, token: str) -> RawSession:
    """An identified session on ``server``, closed after the test."""
    _opened.append(await raw_session(server, token=token, unsolicited=True))
    return _opened[-1]


def node(server: Any, i: int) -> Any:
    """The i-th node of a deployment (the only one, embedded)."""
    return server.nodes[i % len(server.nodes)]


async def session_for(server: Any, i: int, name: str = "user") -> RawSession:
    """A new account's identified session on node i; its token is ``session.token``."""
    account = await new_user(node(server, i), name)
    session = await connect(node(server, i), account["token"])
    session.token = account["token"]  # type: ignore[attr-defined]
    return session


async def event(
    session: RawSession,
    t: str,
    about: str | None = None,
    *,
    ch: str | None = None,
    seconds: float = 10,
) -> dict[str, Any]:
    """The next event of type ``t`` (about user ``about``, in ``ch``, if given); skips others."""

    def wanted(frame: dict[str, Any]) -> bool:
        if frame.get("t") != t or (ch is not None and frame.get("ch") != ch):
            return False
        d = frame.get("d", {})
        return about is None or about in (d.get("user"), d.get("member", {}).get("id"))

    for i, frame in enumerate(session.early):
        if wanted(frame):
            del session.early[: i + 1]
            return frame
    session.early.clear()
    async with asyncio.timeout(timeout(seconds)):
        while True:
            frame = await session.recv(seconds)
            if wanted(frame):
                return frame


def error(frame: dict[str, Any]) -> tuple[str, str | None]:
    assert frame["op"] == "error", frame
    return frame["d"]["code"], frame["d"].get("permission")


class Community:
    """A community made by ``owner`` over the gateway, and people invited into it."""

    def __init__(self, server: Any, owner: RawSession, d: dict[str, Any]) -> None:
        self.server = server
        self.owner = owner
        self.id = d["id"]
        self.general = d["channels"][0]["id"]

    @classmethod
    async def create(cls, server: Any, owner: RawSession, name: str | None = None) -> Community:
        name = name or f"Club {os.getpid()} {next(_clubs)}"
        reply = await owner.ok("community.create", {"name": name})
        return cls(server, owner, reply["community"])

    async def invite(self, role: str = "member", **limits: Any) -> str:
        reply = await self.owner.ok("invite.create", {"community": self.id, "role": role, **limits})
        return reply["invite"]["code"]

    async def member_by_invite(self) -> str:
        """A new account registered with an invite: a member, with no session; its id."""
        status, body = http_json(
            "POST",
            node(self.server, 1).http + "/api/v1/auth/register",
            {
                "username": f"m{os.getpid()}x{next(_clubs)}",
                "password": "correct horse",
                "invite": await self.invite(),
            },
        )
        assert status == 201, body
        return body["user"]["id"]

    async def join(self, i: int, role: str = "member", name: str = "member") -> RawSession:
        """A new user on node i, in the community with ``role``."""
        session = await session_for(self.server, i, name)
        await session.ok("invite.accept", {"code": await self.invite()})
        if role != "member":
            await self.owner.ok(
                "member.role",
                {"community": self.id, "user": session.identity["user"]["id"], "role": role},
            )
        return session


def uid(session: RawSession) -> str:
    return session.identity["user"]["id"]


async def test_community_create_makes_the_creator_owner_with_a_general_channel(server) -> None:
    owner = await session_for(server, 0, "owner")
    other_tab = await connect(node(server, 1), owner.token)  # type: ignore[attr-defined]
    reply = await owner.ok("community.create", {"name": f"Book club {os.getpid()}"})
    community = reply["community"]
    assert community["role"] == "owner"
    assert [c["name"] for c in community["channels"]] == ["general"]
    # the user's other session hears of it at once, and so do both identify anew
    joined = await event(other_tab, "community.joined")
    assert joined["d"]["community"]["id"] == community["id"]
    fresh = await connect(node(server, 1), owner.token)  # type: ignore[attr-defined]
    assert community["id"] in [c["id"] for c in fresh.identity["communities"]]
    clash = await owner.command("community.create", {"name": f"BOOK CLUB {os.getpid()}"})
    assert error(clash) == ("conflict", None)


async def test_an_invite_takes_a_new_member_in_and_everyone_hears_it(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    code = await club.invite()
    newcomer = await session_for(server, 1, "newcomer")
    reply = await newcomer.ok("invite.accept", {"code": code})
    assert reply["community"]["id"] == club.id
    assert reply["community"]["role"] == "member"
    heard = await event(owner, "member.joined", uid(newcomer), ch=club.id)
    assert heard["ch"] == club.id
    assert heard["d"]["member"]["id"] == uid(newcomer)
    assert "o" not in heard  # the community event; the join line is in general
    await owner.ok("subscribe", {"channel": club.general, "since": 0})
    line = await event(owner, "member.joined", uid(newcomer), ch=club.general)
    assert line["ch"] == club.general and line["o"] >= 1
    # accepting again changes nothing
    again = await newcomer.ok("invite.accept", {"code": code})
    assert again["community"]["id"] == club.id


async def test_invites_expire_run_out_take_guests_and_keep_banned_users_out(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    once = await club.invite(max_uses=1)
    first, second = await session_for(server, 0), await session_for(server, 1)
    await first.ok("invite.accept", {"code": once})
    assert error(await second.command("invite.accept", {"code": once}))[0] == "forbidden"
    assert error(await second.command("invite.accept", {"code": "no-such-code"}))[0] == (
        "not_found"
    )
    guest_code = await club.invite(role="guest")
    guest = await session_for(server, 1)
    assert (await guest.ok("invite.accept", {"code": guest_code}))["community"]["role"] == "guest"
    said = await guest.command("message.send", {"channel": club.general, "text": "hi"})
    assert error(said) == ("forbidden", "post")
    await owner.ok("member.ban", {"community": club.id, "user": uid(first)})
    refused = await first.command("invite.accept", {"code": await club.invite()})
    assert error(refused)[0] == "forbidden"
    assert "banned" in refused["d"]["message"]
    short = await club.invite(expires_s=1)
    late = await session_for(server, 0)
    await asyncio.sleep(1.1)  # past the invite's documented expiry
    assert error(await late.command("invite.accept", {"code": short}))[0] == "forbidden"


async def test_registration_with_an_invite_joins_that_community_or_creates_nothing(
    server,
) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    code = await club.invite()
    name = f"invited{os.getpid()}{id(club) % 10000}"
    status, body = http_json(
        "POST",
        node(server, 1).http + "/api/v1/auth/register",
        {"username": name, "password": "correct horse", "invite": code},
    )
    assert status == 201, body
    session = await connect(node(server, 1), body["token"])
    assert [c["id"] for c in session.identity["communities"]] == [club.id]
    status, body = http_json(
        "POST",
        node(server, 0).http + "/api/v1/auth/register",
        {"username": name + "x", "password": "correct horse", "invite": "nope"},
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _ = http_json(  # the name was not taken by the refused registration
        "POST",
        node(server, 0).http + "/api/v1/auth/register",
        {"username": name + "x", "password": "correct horse"},
    )
    assert status == 201


async def test_channels_are_created_and_changed_by_facilitators_and_everyone_hears(
    server,
) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    member = await club.join(1)
    facilitator = await club.join(0, "facilitator")
    refused = await member.command("channel.create", {"community": club.id, "name": "x"})
    assert error(refused) == ("forbidden", "manage_channels")
    made = await facilitator.ok(
        "channel.create", {"community": club.id, "name": "Reading Notes", "topic": "ch. 3"}
    )
    channel = made["channel"]
    assert (channel["name"], channel["topic"], channel["kind"]) == (
        "reading-notes",
        "ch. 3",
        "text",
    )
    heard = await event(member, "channel.created")  # no subscribe needed
    assert heard["ch"] == club.id and heard["d"]["channel"] == channel
    clash = await facilitator.command(
        "channel.create", {"community": club.id, "name": "READING notes"}
    )
    assert error(clash)[0] == "conflict" and "'reading-notes'" in clash["d"]["message"]
    bad = await facilitator.command("channel.create", {"community": club.id, "name": "a/b"})
    assert error(bad)[0] == "bad_request"
    updated = await facilitator.ok(
        "channel.update", {"channel": channel["id"], "name": "notes", "archived": True}
    )
    assert (updated["channel"]["name"], updated["channel"]["archived"]) == ("notes", True)
    assert (await event(member, "channel.updated"))["d"]["channel"] == updated["channel"]
    archived = await member.command("message.send", {"channel": channel["id"], "text": "x"})
    assert error(archived)[0] == "conflict"


async def test_slow_mode_limits_members_and_not_facilitators(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    member = await club.join(1)
    await owner.ok("channel.update", {"channel": club.general, "slowmode_s": 60})
    await event(member, "channel.updated")
    await member.ok("message.send", {"channel": club.general, "text": "one"})
    limited = await member.command("message.send", {"channel": club.general, "text": "two"})
    assert error(limited)[0] == "rate_limited"
    assert 0 < limited["d"]["retry_after_ms"] <= 60_000
    for text in ("a", "b"):
        await owner.ok("message.send", {"channel": club.general, "text": text})


async def test_roles_follow_the_table_and_a_community_keeps_an_owner(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    admin = await club.join(1, "admin")
    member = await club.join(0)
    change = {"community": club.id, "user": uid(member)}
    made = await admin.ok("member.role", {**change, "role": "facilitator"})
    assert made["member"]["role"] == "facilitator"
    heard = await event(member, "member.updated", uid(member))
    assert heard["d"]["member"] == made["member"]
    assert error(await admin.command("member.role", {**change, "role": "admin"})) == (
        "forbidden",
        "set_roles",
    )
    on_owner = await admin.command(
        "member.role", {"community": club.id, "user": uid(owner), "role": "member"}
    )
    assert error(on_owner)[0] == "forbidden"
    step_down = await owner.command(
        "member.role", {"community": club.id, "user": uid(owner), "role": "admin"}
    )
    assert error(step_down)[0] == "conflict"
    await owner.ok("member.role", {"community": club.id, "user": uid(admin), "role": "owner"})
    await owner.ok("member.role", {"community": club.id, "user": uid(owner), "role": "admin"})


async def test_a_timed_out_member_reads_but_cannot_post_until_the_time_is_up(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    member = await club.join(1)
    target = {"community": club.id, "user": uid(member)}
    await owner.ok("member.timeout", {**target, "seconds": 600})
    said = await member.command("message.send", {"channel": club.general, "text": "x"})
    assert error(said) == ("forbidden", "post")
    await member.ok("history", {"channel": club.general})
    await owner.ok("member.timeout", {**target, "seconds": 0})
    await member.ok("message.send", {"channel": club.general, "text": "back"})


async def test_a_kicked_member_stops_hearing_the_community_at_once(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    member = await club.join(1)
    default_general = general_channel(member.identity)  # they stay in the first community
    for session in (owner, member):
        await session.ok("subscribe", {"channel": club.general})
        await session.ok("subscribe", {"channel": default_general})
    await owner.ok("member.kick", {"community": club.id, "user": uid(member)})
    left = await event(member, "member.left", uid(member))
    assert (left["ch"], left["d"]["user"]) == (club.id, uid(member))
    await owner.ok("message.send", {"channel": club.general, "text": "not for you"})
    await owner.ok("channel.create", {"community": club.id, "name": "secret"})
    await owner.ok("message.send", {"channel": default_general, "text": "sentinel"})
    seen = []
    async with asyncio.timeout(timeout(10)):
        while "sentinel" not in [f["d"].get("message", {}).get("text") for f in seen]:
            seen.append(await member.recv())
    assert all(f.get("ch") != club.id and f.get("ch") != club.general for f in seen), seen
    assert error(await member.command("subscribe", {"channel": club.general}))[0] == "forbidden"
    fresh = await connect(node(server, 0), member.token)  # type: ignore[attr-defined]
    assert club.id not in [c["id"] for c in fresh.identity["communities"]]


async def test_the_audit_log_pages_newest_first_for_facilitators_only(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    member = await club.join(1)
    other = await club.join(0)
    await owner.ok("member.timeout", {"community": club.id, "user": uid(member), "seconds": 5})
    await owner.ok("member.kick", {"community": club.id, "user": uid(other)})
    refused = await member.command("audit.list", {"community": club.id})
    assert error(refused) == ("forbidden", "read_audit_log")
    page = await owner.ok("audit.list", {"community": club.id, "limit": 2})
    actions = [e["action"] for e in page["entries"]]
    assert actions == ["member.kick", "member.timeout"]
    assert page["entries"][0]["target"] == uid(other)
    assert page["entries"][0]["actor"] == uid(owner)
    rest = await owner.ok("audit.list", {"community": club.id, "before": page["next"]})
    assert [e["action"] for e in rest["entries"]][:1] == ["invite.create"]
    assert all(int(e["id"]) < int(page["next"]) for e in rest["entries"])


async def test_presence_follows_sessions_on_both_nodes(server) -> None:
    watcher = await session_for(server, 0, "watcher")
    club = await Community.create(server, watcher)
    code = await club.invite()
    account = await new_user(node(server, 1), "present")
    first = await connect(node(server, 1), account["token"])
    await first.ok("invite.accept", {"code": code})
    await event(watcher, "member.joined", account["user"]["id"], ch=club.id)
    second = await connect(node(server, 0), account["token"])
    user = account["user"]["id"]
    listed = await watcher.ok("community.presence", {"community": club.id})
    assert {"user": user, "status": "online"} in listed["online"]
    await first.ok("presence.set", {"status": "idle"})
    await second.ok("presence.set", {"status": "idle"})
    heard = await event(watcher, "presence.updated", user, ch=club.id)
    if heard["d"]["status"] == "online":  # joining announced it: that may come after the join
        heard = await event(watcher, "presence.updated", user, ch=club.id)
    assert heard["d"] == {"user": user, "status": "idle"}
    await second.ok("presence.set", {"status": "online"})
    assert (await event(watcher, "presence.updated", user, ch=club.id))["d"]["status"] == "online"
    await second.ws.close()  # the idle one stays: idle
    heard = await event(watcher, "presence.updated", user, ch=club.id)
    assert heard["d"] == {"user": user, "status": "idle"}
    await first.ws.close()
    heard = await event(watcher, "presence.updated", user, ch=club.id)
    assert heard["d"] == {"user": user, "status": "offline"}
    listed = await watcher.ok("community.presence", {"community": club.id})
    assert user not in [entry["user"] for entry in listed["online"]]


# the permission table, command by command and role by role

#: Each privileged command, the least role allowed to run it, and its payload
#: against a target member (a plain member) made for each run.
PRIVILEGED: list[tuple[str, str, Any]] = [
    ("message.send", "member", lambda c, t: {"channel": c.general, "text": "hello"}),
    (
        "channel.create",
        "facilitator",
        lambda c, t: {"community": c.id, "name": f"c{os.urandom(3).hex()}"},
    ),
    ("channel.update", "facilitator", lambda c, t: {"channel": c.general, "topic": "new topic"}),
    ("invite.create", "facilitator", lambda c, t: {"community": c.id}),
    ("member.timeout", "facilitator", lambda c, t: {"community": c.id, "user": t, "seconds": 0}),
    ("audit.list", "facilitator", lambda c, t: {"community": c.id}),
    ("member.role", "admin", lambda c, t: {"community": c.id, "user": t, "role": "guest"}),
    ("member.kick", "admin", lambda c, t: {"community": c.id, "user": t}),
    ("member.ban", "admin", lambda c, t: {"community": c.id, "user": t}),
]
ROLE_ORDER = ["guest", "member", "facilitator", "admin", "owner"]


async def test_every_privileged_command_is_allowed_from_its_least_role_up_only(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    actors = {"owner": owner}
    for i, role in enumerate(ROLE_ORDER[:-1]):
        actors[role] = await club.join(i, role, name=role)
    outcomes: dict[tuple[str, str], str] = {}
    target = await club.member_by_invite()
    for op, _, payload in PRIVILEGED:
        for role in ROLE_ORDER:
            answer = await actors[role].command(op, payload(club, target))
            if answer["op"] == "reply" and op in ("member.kick", "member.ban"):
                target = await club.member_by_invite()  # the last one is gone
            if answer["op"] == "reply":
                outcomes[op, role] = "allowed"
            else:
                code, permission = error(answer)
                assert code == "forbidden", (op, role, answer)
                assert permission, (op, role, answer)  # the missing permission is named
                outcomes[op, role] = "forbidden"
    expected = {
        (op, role): "allowed" if ROLE_ORDER.index(role) >= ROLE_ORDER.index(least) else "forbidden"
        for op, least, _ in PRIVILEGED
        for role in ROLE_ORDER
    }
    assert outcomes == expected


async def test_moderation_never_reaches_an_equal_or_higher_role(server) -> None:
    owner = await session_for(server, 0, "owner")
    club = await Community.create(server, owner)
    admin = await club.join(1, "admin", "admin")
    other_admin = await club.join(0, "admin", "admin2")
    facilitator = await club.join(1, "facilitator", "facilitator")
    for op in ("member.kick", "member.ban", "member.timeout"):
        d = {"community": club.id, "user": uid(other_admin)}
        if op == "member.timeout":
            d["seconds"] = 60
        assert error(await admin.command(op, d))[0] == "forbidden", op
        d["user"] = uid(owner)
        assert error(await admin.command(op, d))[0] == "forbidden", op
    on_admin = {"community": club.id, "user": uid(admin), "seconds": 60}
    assert error(await facilitator.command("member.timeout", on_admin))[0] == "forbidden"
    no_owner_kick = {"community": club.id, "user": uid(owner)}
    await owner.ok("member.role", {**no_owner_kick, "user": uid(admin), "role": "owner"})
    assert error(await admin.command("member.kick", no_owner_kick))[0] == "forbidden"
    itself = {"community": club.id, "user": uid(admin)}
    assert error(await admin.command("member.kick", itself))[0] == "bad_request"


# state a client can trust: identify + the events it heard == a fresh identify


def apply(state: dict[str, dict[str, Any]], me: str, frame: dict[str, Any]) -> None:
    """Fold one community or user event into ``{community id: community}`` (identify's shape)."""
    t, d, ch = frame["t"], frame["d"], frame["ch"]
    if t == "community.joined":
        state[d["community"]["id"]] = d["community"]
    elif ch not in state:
        return
    elif t == "channel.created":
        state[ch]["channels"].append(d["channel"])
    elif t == "channel.updated":
        channels = state[ch]["channels"]
        channels[:] = [d["channel"] if c["id"] == d["channel"]["id"] else c for c in channels]
    elif t == "member.updated" and d["member"]["id"] == me:
        state[ch]["role"] = d["member"]["role"]
    elif t == "member.left" and d["user"] == me:
        del state[ch]


def by_position(community: dict[str, Any]) -> dict[str, Any]:
    """A community with its channels in identify's order (position; ties keep the order)."""
    return {**community, "channels": sorted(community["channels"], key=lambda c: c["position"])}


async def test_identify_plus_the_events_heard_equals_a_fresh_identify(server) -> None:
    import random

    rng = random.Random(20261201)
    owner = await session_for(server, 0, "owner")
    watcher_account = await new_user(node(server, 1), "watcher")
    watcher = await connect(node(server, 1), watcher_account["token"])
    me = watcher_account["user"]["id"]
    state = {c["id"]: c for c in watcher.identity["communities"]}
    clubs = [await Community.create(server, owner) for _ in range(2)]
    channels: list[str] = []
    for _ in range(30):
        club = rng.choice(clubs)
        action = rng.choice(["join", "channel", "rename", "move", "archive", "role", "kick"])
        member = (await owner.ok("community.members", {"community": club.id}))["members"]
        inside = any(m["id"] == me for m in member)
        if action == "join" or not inside:
            await watcher.ok("invite.accept", {"code": await club.invite()})
        elif action == "channel":
            made = await owner.ok(
                "channel.create", {"community": club.id, "name": f"c{rng.randrange(10**6)}"}
            )
            channels.append(made["channel"]["id"])
        elif action in ("rename", "move", "archive") and channels:
            change: dict[str, Any] = {"channel": rng.choice(channels)}
            if action == "rename":
                change["name"] = f"r{rng.randrange(10**6)}"
            elif action == "move":
                change["position"] = rng.randrange(5)
            else:
                change["archived"] = rng.random() < 0.5
            await owner.command("channel.update", change)  # a channel of the other club: refused
        elif action == "role":
            role = rng.choice(["guest", "member", "facilitator", "admin"])
            await owner.ok("member.role", {"community": club.id, "user": me, "role": role})
        elif action == "kick":
            await owner.ok("member.kick", {"community": club.id, "user": me})
    # a last command to the watcher's node: every event published before it has arrived
    await owner.ok("channel.create", {"community": clubs[0].id, "name": "the-end"})
    await watcher.ok("invite.accept", {"code": await clubs[0].invite()})
    for role in ("guest", "member"):  # the second changes the role for sure
        await owner.ok("member.role", {"community": clubs[0].id, "user": me, "role": role})
    heard: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout(10)):
        while not heard or heard[-1]["d"].get("member") != {
            **watcher_account["user"],
            "role": "member",
        }:
            frame = await watcher.recv()
            if frame["op"] == "event" and "o" not in frame:
                heard.append(frame)
    for frame in watcher.early + heard:
        if frame.get("op") == "event" and "o" not in frame:
            apply(state, me, frame)
    fresh = await connect(node(server, 0), watcher_account["token"])
    expected = {c["id"]: c for c in fresh.identity["communities"]}
    assert {k: by_position(v) for k, v in state.items()} == expected


async def test_a_user_whose_node_was_killed_goes_offline_within_the_presence_timeout(
    deployment: str, tmp_path: Path
) -> None:
    if deployment == "embedded":
        pytest.skip("one process: nothing survives its death to notice")
    cluster = Cluster(tmp_path, rate_limit=0, presence_timeout_ms=1500).start()
    try:
        watcher = await session_for(cluster, 0, "watcher")
        club = await Community.create(cluster, watcher)
        present = await club.join(1, name="present")
        user = uid(present)
        listed = await watcher.ok("community.presence", {"community": club.id})
        assert {"user": user, "status": "online"} in listed["online"]
        cluster.nodes[1].kill()  # no session closes: only the heartbeat stops
        heard = await event(watcher, "presence.updated", user, ch=club.id, seconds=15)
        assert heard["d"] == {"user": user, "status": "offline"}
        listed = await watcher.ok("community.presence", {"community": club.id})
        assert user not in [entry["user"] for entry in listed["online"]]
    finally:
        for session in _opened:
            if session.ws.state.name != "CLOSED":
                await session.ws.close()
        _opened.clear()
        cluster.shutdown()
