"""Helpers of the discussion tests (issue 10): sessions on named nodes, a community of
one's own per test, and reading events in order.

Every session hears user events (``unsolicited=True``): mentions, thread activity,
read markers and new DMs are what these tests are about.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

from tests.conftest import RawSession, new_user, raw_session, timeout

_clubs = itertools.count()
opened: list[RawSession] = []


async def close_all() -> None:
    while opened:
        await opened.pop().ws.close()


def node(server: Any, i: int) -> Any:
    """The i-th node of a deployment (the only one, embedded)."""
    return server.nodes[i % len(server.nodes)]


async def connect(server: Any, token: str) -> RawSession:
    """An identified session, closed after the test; its token is ``session.token``."""
    # an unbounded receive queue: a session the test never reads (community events pile up
    # in it) must still take the server's close frame at the end of the test at once
    session = await raw_session(server, token=token, unsolicited=True, max_queue=None)
    session.token = token  # type: ignore[attr-defined]
    opened.append(session)
    return session


async def session_for(server: Any, i: int, name: str = "user") -> RawSession:
    """A new account's identified session on node i."""
    account = await new_user(node(server, i), name)
    return await connect(node(server, i), account["token"])


def uid(session: RawSession) -> str:
    return session.identity["user"]["id"]


def username(session: RawSession) -> str:
    return session.identity["user"]["username"]


def error(frame: dict[str, Any]) -> tuple[str, str | None]:
    assert frame["op"] == "error", frame
    return frame["d"]["code"], frame["d"].get("permission")


def matches(frame: dict[str, Any], t: str, ch: str | None) -> bool:
    return frame.get("op") == "event" and frame.get("t") == t and ch in (None, frame.get("ch"))


async def event(
    session: RawSession, t: str, *, ch: str | None = None, seconds: float = 10
) -> dict[str, Any]:
    """The next event of type ``t`` (in ``ch``, if given); other frames are passed over."""
    for i, frame in enumerate(session.early):
        if matches(frame, t, ch):
            del session.early[: i + 1]
            return frame
    session.early.clear()
    async with asyncio.timeout(timeout(seconds)):
        while True:
            frame = await session.recv(seconds)
            if matches(frame, t, ch):
                return frame


async def until(
    session: RawSession, t: str, *, ch: str | None = None, seconds: float = 10
) -> list[dict[str, Any]]:
    """Every frame up to and including the next event ``t`` (in ``ch``): what came before
    a sentinel."""
    seen: list[dict[str, Any]] = []
    while session.early:
        frame = session.early.pop(0)
        seen.append(frame)
        if matches(frame, t, ch):
            return seen
    async with asyncio.timeout(timeout(seconds)):
        while True:
            frame = await session.recv(seconds)
            seen.append(frame)
            if matches(frame, t, ch):
                return seen


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    return [f["t"] for f in frames if f.get("op") == "event"]


class Club:
    """A community of one test's own, made by ``owner`` over the gateway."""

    def __init__(self, server: Any, owner: RawSession, d: dict[str, Any]) -> None:
        self.server = server
        self.owner = owner
        self.id: str = d["id"]
        self.general: str = d["channels"][0]["id"]

    @classmethod
    async def create(cls, server: Any, owner: RawSession) -> Club:
        name = f"Discussion club {os.getpid()} {next(_clubs)} {os.urandom(3).hex()}"
        reply = await owner.ok("community.create", {"name": name})
        return cls(server, owner, reply["community"])

    async def join(self, i: int, role: str = "member", name: str = "member") -> RawSession:
        """A new user on node i, in the community with ``role``."""
        session = await session_for(self.server, i, name)
        code = (await self.owner.ok("invite.create", {"community": self.id}))["invite"]["code"]
        await session.ok("invite.accept", {"code": code})
        if role != "member":
            await self.owner.ok(
                "member.role", {"community": self.id, "user": uid(session), "role": role}
            )
        return session

    async def channel(self, name: str, kind: str = "text") -> str:
        made = await self.owner.ok(
            "channel.create", {"community": self.id, "name": name, "kind": kind}
        )
        return made["channel"]["id"]


async def all_events(session: RawSession, channel: str) -> list[dict[str, Any]]:
    """Every durable event of a channel through ``history``, oldest first."""
    events: list[dict[str, Any]] = []
    before = None
    while True:
        d = {"channel": channel, "limit": 100} | ({"before": before} if before else {})
        page = (await session.ok("history", d))["events"]
        if not page:
            return events
        events[:0] = page
        before = page[0]["o"]


async def send(session: RawSession, channel: str, text: str, **more: Any) -> dict[str, Any]:
    reply = await session.ok("message.send", {"channel": channel, "text": text, **more})
    return reply["message"]
