"""The bot framework and the example bots, against real servers.

The example bots run as real subprocesses (``python -m clients.examples.…``)
with real bot tokens; the tests see what a person in the channel sees. People
are on the first node and bots on the last: in the scaled deployment, every
command and every answer crosses between nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clients import Bot, Client, Context, Event, register
from clients.examples import faq, remind
from tests.conftest import (
    ROOT,
    AgoraProcess,
    PlugTo,
    eventually,
    http_json,
    new_user,
    timeout,
)


async def create_bot(server: AgoraProcess, owner_token: str, username: str) -> dict[str, Any]:
    """``POST /api/v1/bots`` as the owner: ``{user, token}``."""
    status, made = await asyncio.to_thread(
        http_json, "POST", server.http + "/api/v1/bots", {"username": username}, token=owner_token
    )
    assert status == 201, made
    return made


class Room:
    """A person in ``general``: sends messages and reads what everyone says."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.general = client.channel_named("general")
        self.name = client.identity["user"]["name"]

    async def say(self, text: str) -> dict[str, Any]:
        """Post ``text`` in ``general``; the message as stored."""
        return await self.client.send_message(self.general, text)

    async def next_message(self) -> dict[str, Any]:
        while True:
            event = await self.client.next_event(timeout(30))
            if isinstance(event, Event) and event.t == "message.created":
                return event.d["message"]

    async def sees(self, pattern: str, wait: float = 10) -> dict[str, Any]:
        """The next message in ``general`` whose text matches ``pattern``."""
        async with asyncio.timeout(timeout(wait)):
            while not re.search(pattern, (message := await self.next_message())["text"]):
                pass
        return message

    async def messages_from(
        self, author_id: str, count: int, wait: float = 10
    ) -> list[dict[str, Any]]:
        """The next ``count`` messages by ``author_id``."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout(wait)):
            while len(out) < count:
                message = await self.next_message()
                if message["author"]["id"] == author_id:
                    out.append(message)
        return out

    async def texts_from(self, author_id: str, count: int, wait: float = 10) -> list[str]:
        """The texts of the next ``count`` messages by ``author_id``."""
        return [m["text"] for m in await self.messages_from(author_id, count, wait)]

    async def answer_in_thread(
        self, asked: dict[str, Any], author_id: str, wait: float = 10
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The thread started from ``asked`` (its ``thread.created`` in ``general``) and the
        first message ``author_id`` posted in it."""
        async with asyncio.timeout(timeout(wait)):
            while True:
                event = await self.client.next_event(timeout(wait))
                if (
                    isinstance(event, Event)
                    and event.t == "thread.created"
                    and event.d["thread"].get("message") == asked["id"]
                ):
                    thread = event.d["thread"]
                    break
            while True:
                events = await self.client.history(thread["id"])
                for e in events:
                    if e.t == "message.created" and e.d["message"]["author"]["id"] == author_id:
                        return thread, e.d["message"]
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def room(server: AgoraProcess, token: str) -> AsyncIterator[Room]:
    """A person in ``general`` on the first node (bots run on the last)."""
    async with Client(server.nodes[0].ws, token) as client:
        present = Room(client)
        await client.subscribe(present.general)
        yield present


@contextlib.asynccontextmanager
async def owner_with_bot(server: AgoraProcess) -> AsyncIterator[tuple[Room, dict[str, Any]]]:
    """The first account (the owner) in ``general``, and a bot account it made."""
    owner = await new_user(server, "owner")
    made = await create_bot(server, owner["token"], f"bot{os.getpid()}x{time.monotonic_ns()}")
    async with room(server, owner["token"]) as present:
        yield present, made


class BotProcess:
    """An example bot as a subprocess; ``ready()`` waits for its ready line."""

    def __init__(self, module: str, server: AgoraProcess, token: str, *args: str) -> None:
        self.argv = [sys.executable, "-m", f"clients.examples.{module}", *args]
        node = server.nodes[-1]  # people are on the first
        self.env = {**os.environ, "AGORA_SERVER": node.ws, "AGORA_BOT_TOKEN": token}
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> BotProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=ROOT, env=self.env, stderr=asyncio.subprocess.PIPE
        )
        self._ready = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        try:
            async with asyncio.timeout(timeout(15)):
                await self._ready.wait()
        except TimeoutError:
            raise AssertionError("the bot did not get ready:\n" + "\n".join(self.lines)) from None
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if "is ready in" in line:
                self._ready.set()

    async def stop(self) -> int:
        assert self.proc is not None and self._reader is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout(10)):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await self._reader
        return code


@contextlib.asynccontextmanager
async def running(process: BotProcess) -> AsyncIterator[BotProcess]:
    await process.start()
    try:
        yield process
    finally:
        code = await process.stop()
    assert code == 0, "\n".join(process.lines)
    assert not [line for line in process.lines if "Traceback" in line], "\n".join(process.lines)


@contextlib.asynccontextmanager
async def in_process(bot: Bot, url: str, token: str) -> AsyncIterator[Bot]:
    """``bot`` running in this process, connected to ``url``."""
    task = asyncio.create_task(bot.start(url, token))
    ready = asyncio.create_task(bot.ready.wait())
    await asyncio.wait([task, ready], timeout=timeout(10), return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        await task  # raises why it ended
    assert bot.ready.is_set()
    try:
        yield bot
    finally:
        await bot.stop()
        await asyncio.wait_for(task, timeout(10))


# the README tutorial


def readme_first_bot() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Write your first bot in 20 lines", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_tutorial_is_the_first_bot_file_and_fits_in_20_lines() -> None:
    code = (ROOT / "clients/examples/first_bot.py").read_text(encoding="utf-8")
    assert readme_first_bot() == code
    assert len(code.splitlines()) <= 20


async def test_the_first_bot_answers_hello_and_help_and_welcomes_a_newcomer(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        first_bot = BotProcess("first_bot", server, made["token"])
        async with running(first_bot):
            await ann.say("!hello")
            reply = await ann.sees(r"^@")
            assert reply["text"] == f"@{ann.name} Hello! Say !help to see what I can do."
            assert reply["author"]["id"] == made["user"]["id"]
            await ann.say("!help")
            listing = await ann.sees(r"^Commands:")
            assert "!hello — Say hello back." in listing["text"].splitlines()
            newcomer = await new_user(server, "newcomer")
            greeting = await ann.sees(r"^Welcome")
            assert greeting["text"] == f"Welcome, {newcomer['user']['name']}!"


# the example bots


async def test_the_welcome_bot_greets_new_members_but_not_new_bots(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        welcome = BotProcess(
            "welcome", server, made["token"], "--message", "Hi {name} ({username})!"
        )
        async with running(welcome):
            other_bot = await create_bot(
                server, ann.client.token, f"another{os.getpid()}x{time.monotonic_ns()}"
            )
            newcomer = (await new_user(server, "reader"))["user"]
            greetings = await ann.texts_from(made["user"]["id"], 1)
            assert greetings == [f"Hi {newcomer['name']} ({newcomer['username']})!"]
            assert other_bot["user"]["username"] not in greetings[0]


async def test_the_remind_bot_posts_the_reminder_after_the_delay(
    make_server, tmp_path: Path
) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot_id = made["user"]["id"]
        state = tmp_path / "reminders.json"
        process = BotProcess("remind", server, made["token"], "--state", str(state))
        async with running(process):
            asked = await ann.say("!remind 2s bring the reading notes")
            assert await ann.texts_from(bot_id, 1) == [
                f"@{ann.name} OK, I will remind you in 2s: bring the reading notes"
            ]
            (reminder,) = await ann.messages_from(bot_id, 1)
            assert reminder["text"] == f"@{ann.name} reminder: bring the reading notes"
            # the server stamped both (ms since the epoch): the reminder came 2 s later
            assert reminder["ts"] - asked["ts"] >= 2000
            await eventually(
                lambda: json.loads(state.read_text())["reminders"] == [], "no reminders left"
            )


async def test_the_remind_bot_refuses_bad_durations_and_keeps_its_limits(
    make_server, tmp_path: Path
) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        args = ["--state", str(tmp_path / "r.json"), "--max-per-user", "2", "--max-delay", "1d"]
        async with running(BotProcess("remind", server, made["token"], *args)):
            for command in ("!remind soon read chapter 3", "!remind 10m", "!remind 2d x"):
                await ann.say(command)
            said = await ann.texts_from(made["user"]["id"], 3)
            assert said[:2] == [f"@{ann.name} {remind.USAGE}"] * 2
            assert said[2] == f"@{ann.name} That is too far ahead: at most 1d."
            await ann.say("!remind 1h30m first")
            await ann.say("!remind 1d second")
            await ann.say("!remind 5m third")
            said = await ann.texts_from(made["user"]["id"], 3)
            assert said[0].endswith("in 1h30m: first") and said[1].endswith("in 1d: second")
            assert said[2].endswith(
                "You have 2 reminders waiting already; that is the most I keep."
            )
            await ann.say("!reminders")
            (listing,) = await ann.texts_from(made["user"]["id"], 1)
            assert listing.splitlines()[0] == f"@{ann.name} Your reminders:"
            assert [line.split(": ", 1)[1] for line in listing.splitlines()[1:]] == [
                "first",
                "second",
            ]


async def test_the_remind_bot_keeps_reminders_across_a_restart(make_server, tmp_path: Path) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot_id = made["user"]["id"]
        state = tmp_path / "reminders.json"
        async with running(BotProcess("remind", server, made["token"], "--state", str(state))):
            await ann.say("!remind 3s water the plants")
            (confirmed,) = await ann.texts_from(bot_id, 1)
            assert confirmed.endswith("in 3s: water the plants")
        (kept,) = json.loads(state.read_text())["reminders"]
        assert kept["text"] == "water the plants"
        # it falls due while the bot is down
        await eventually(lambda: time.time() > kept["due"], "the reminder falling due")
        async with running(BotProcess("remind", server, made["token"], "--state", str(state))):
            (reminder,) = await ann.messages_from(bot_id, 1)
            assert reminder["text"] == f"@{ann.name} reminder: water the plants"
            assert reminder["ts"] >= kept["due"] * 1000
            await eventually(
                lambda: json.loads(state.read_text())["reminders"] == [], "no reminders left"
            )
            await ann.say("!reminders")
            assert await ann.texts_from(bot_id, 1) == [f"@{ann.name} No reminders."]


async def test_the_faq_bot_answers_lists_suggests_and_rereads_its_file_in_threads(
    make_server, tmp_path: Path
) -> None:
    server = make_server(rate_limit=0)
    path = tmp_path / "faq.md"
    path.write_text(
        "# Reading group FAQ\n\nEdit me!\n\n## schedule, meetings\nThursdays at 19:00.\n\n"
        "## reading list\nMiddlemarch, then The Dispossessed.\n",
        encoding="utf-8",
    )
    async with owner_with_bot(server) as (ann, made):
        bot_id = made["user"]["id"]

        async def answer(command: str) -> str:
            """Ask in general; the bot's answer, in a thread started from the question."""
            asked = await ann.say(command)
            thread, message = await ann.answer_in_thread(asked, bot_id)
            assert thread["parent"] == ann.general and thread["created_by"] == bot_id
            topic = command[5:].strip()
            assert thread["title"] == (f"FAQ: {topic}" if topic else "FAQ topics")
            return message["text"]

        async with running(BotProcess("faq", server, made["token"], "--file", str(path))):
            assert [
                await answer(command)
                for command in ("!faq", "!faq Meetings", "!faq  reading   list", "!faq shedule")
            ] == [
                "FAQ topics: reading list; schedule, meetings. Ask with !faq TOPIC.",
                "schedule, meetings\nThursdays at 19:00.",
                "reading list\nMiddlemarch, then The Dispossessed.",
                "No FAQ on 'shedule'. Did you mean: schedule?",
            ]
            path.write_text("## venue\nThe library, room 4.\n", encoding="utf-8")
            assert await answer("!faq venue") == "venue\nThe library, room 4."
            assert (
                await answer("!faq quantum chromodynamics")
                == "No FAQ on 'quantum chromodynamics'. FAQ topics: venue. Ask with !faq TOPIC."
            )


def test_durations_and_faq_files_parse() -> None:
    assert remind.parse_duration("90s") == 90
    assert remind.parse_duration("1h30m") == 5400
    assert remind.parse_duration("2D") == 172_800
    assert remind.parse_duration("1h 30m") is None
    assert remind.parse_duration("soon") is None
    assert remind.parse_duration("") is None
    assert remind.format_duration(5400) == "1h30m"
    topics = faq.parse("intro\n## A, b \nx\n### not a topic\ny\n## c ##\n")
    assert topics == {
        "a": ("A, b", "x\n### not a topic\ny"),
        "b": ("A, b", "x\n### not a topic\ny"),
        "c": ("c", ""),
    }


# the framework


async def test_decorators_dispatch_commands_and_events_but_not_history_or_own_messages(
    make_server,
) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        await ann.say("!echo from before the bot started")
        await ann.sees("from before")
        bot = Bot(prefix="?")
        calls: list[tuple[str, str]] = []

        @bot.command()
        async def echo(ctx: Context, args: str) -> None:
            """Say it again."""
            calls.append(("echo", args))
            await ctx.send(f"?echo {args}")  # its own command: must not run again

        @bot.on("message.created")
        async def seen(ctx: Context) -> None:
            assert ctx.message is not None and ctx.author is not None
            calls.append(("message", ctx.message["text"]))

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            await ann.say("?ECHO  two   words ")
            assert await ann.texts_from(made["user"]["id"], 1) == ["?echo two   words"]
            await ann.say("?nope")
            await ann.say("? echo not a command")
            await ann.say("?help echo")
            assert await ann.texts_from(made["user"]["id"], 1) == ["?echo: Say it again."]
            await ann.say("?help")
            assert await ann.texts_from(made["user"]["id"], 1) == [
                "Commands:\n?echo — Say it again.\n?help — List the commands, or explain one: "
                "help [command]."
            ]
        assert calls == [
            ("message", "?ECHO  two   words "),
            ("echo", "two   words"),
            ("message", "?nope"),
            ("message", "? echo not a command"),
            ("message", "?help echo"),
            ("message", "?help"),
        ]


async def test_a_rate_limited_bot_still_gets_every_message_through(make_server) -> None:
    server = make_server(rate_limit=120, rate_burst=3)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()

        @bot.command()
        async def count(ctx: Context, args: str) -> None:
            """Count to ten, all at once."""
            await asyncio.gather(*(ctx.send(f"{i}") for i in range(1, 11)))

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            await ann.say("!count")
            said = await ann.texts_from(made["user"]["id"], 10, wait=30)
            assert sorted(said, key=int) == [str(i) for i in range(1, 11)]
            assert server.metric("agora_errors_total", 'code="rate_limited"') > 0
            assert bot.client is not None and bot.client.connections == 1  # never flooded


async def test_a_reconnected_bot_does_not_run_handled_commands_again(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()
        handled: list[str] = []

        @bot.command()
        async def note(ctx: Context, args: str) -> None:
            handled.append(args)
            await ctx.send(f"noted {args}")

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            await ann.say("!note one")
            assert await ann.texts_from(made["user"]["id"], 1) == ["noted one"]
            server.stop()
            server.start()
            # ann reconnects too; the bot gets "two" replayed on its resume, or live
            await ann.say("!note two")
            assert await ann.texts_from(made["user"]["id"], 1, wait=20) == ["noted two"]
            await eventually(
                lambda: bot.client is not None and bot.client.connections == 2,
                "the bot reconnected",
            )
            await ann.say("!note three")
            assert await ann.texts_from(made["user"]["id"], 1) == ["noted three"]
        assert handled == ["one", "two", "three"]


async def test_events_missed_beyond_the_replay_cap_are_skipped_not_answered(
    make_server, plug_to: PlugTo, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(rate_limit=0, replay_cap=5)
    async with owner_with_bot(server) as (ann, made):
        plug = await plug_to(server.nodes[-1])
        bot = Bot()
        handled: list[str] = []

        @bot.command()
        async def note(ctx: Context, args: str) -> None:
            handled.append(args)
            await ctx.send(f"noted {args}")

        async with in_process(bot, plug.ws, made["token"]):
            await ann.say("!note one")
            assert await ann.texts_from(made["user"]["id"], 1) == ["noted one"]
            await plug.unplug()
            for i in range(8):  # more than the server replays
                await ann.say(f"!note stale {i}")
            await plug.plug()
            await eventually(
                lambda: bot.client is not None and bot.client.connections == 2,
                "the bot reconnected",
            )
            await ann.say("!note live")
            assert await ann.texts_from(made["user"]["id"], 1) == ["noted live"]
        await plug.unplug()
        assert handled == ["one", "live"]
        assert any("could not be replayed; skipping them" in r.getMessage() for r in caplog.records)


async def test_a_failing_handler_is_logged_and_the_bot_goes_on(
    make_server, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()

        @bot.command()
        async def boom(ctx: Context, args: str) -> None:
            raise RuntimeError("the handler broke")

        @bot.command()
        async def ping(ctx: Context, args: str) -> None:
            await ctx.reply("pong")

        with caplog.at_level(logging.ERROR, logger="agora.bot"):
            async with in_process(bot, server.nodes[-1].ws, made["token"]):
                await ann.say("!boom")
                await ann.say("!ping")
                assert await ann.texts_from(made["user"]["id"], 1) == [f"@{ann.name} pong"]
        failures = [r for r in caplog.records if r.getMessage() == "handler !boom failed"]
        assert len(failures) == 1 and "the handler broke" in str(failures[0].exc_info[1])


async def test_commands_from_other_bots_are_ignored(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        other = await create_bot(server, ann.client.token, f"other{os.getpid()}")
        bot = Bot()
        callers: list[str] = []

        @bot.command()
        async def ping(ctx: Context, args: str) -> None:
            assert ctx.author is not None
            callers.append(ctx.author["id"])
            await ctx.reply("pong")

        async with (
            in_process(bot, server.nodes[-1].ws, made["token"]),
            room(server, other["token"]) as other_bot,
        ):
            await other_bot.say("!ping")
            await ann.sees("^!ping")  # the other bot's command went by
            await ann.say("!ping")
            assert await ann.texts_from(made["user"]["id"], 1) == [f"@{ann.name} pong"]
        assert callers == [ann.client.identity["user"]["id"]]


# communities


async def test_a_running_bot_follows_text_channels_created_or_joined_after_it_started(
    make_server,
) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()
        created: list[tuple[str, str | None, str]] = []

        @bot.on("channel.created")
        async def on_created(ctx: Context) -> None:
            created.append((ctx.event.d["channel"]["name"], ctx.community, ctx.channel))

        @bot.command()
        async def where(ctx: Context, args: str) -> None:
            await ctx.send(f"{args} in {ctx.channel} of {ctx.community}")

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            agora = ann.client.community(0)["id"]
            room = await ann.client.create_channel(agora, "after-start")
            await ann.client.subscribe(room["id"])
            # sent at once: the bot reads the new channel from its first event
            await ann.client.send_message(room["id"], "!where early")
            bot_id = made["user"]["id"]
            assert await ann.texts_from(bot_id, 1) == [f"early in {room['id']} of {agora}"]
            forum = await ann.client.create_channel(agora, "ideas", kind="forum")
            # a community the bot joins later: its text channels too
            club = await ann.client.create_community("Club")
            invite = await ann.client.create_invite(club["id"])
            assert bot.client is not None
            await bot.client.accept_invite(invite["code"])
            club_general = ann.client.channel_named("general", club["id"])
            await ann.client.subscribe(club_general)
            await eventually(lambda: club_general in bot.handled, "the bot following the new club")
            await ann.client.send_message(club_general, "!where later")
            assert await ann.texts_from(bot_id, 1) == [f"later in {club_general} of {club['id']}"]
        assert room["id"] in bot.handled and forum["id"] not in bot.handled
        assert created == [
            ("after-start", agora, ann.general),  # the community's system channel
            ("ideas", agora, ann.general),
        ]


async def test_a_bot_hears_community_events_and_handles_each_join_once(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()
        joins: list[tuple[str, str]] = []
        roles: list[tuple[str, str, str | None]] = []

        @bot.on("member.joined")
        async def joined(ctx: Context) -> None:
            joins.append((ctx.event.d["member"]["username"], ctx.channel))

        @bot.on("member.updated")
        async def updated(ctx: Context) -> None:
            member = ctx.event.d["member"]
            roles.append((member["id"], member["role"], ctx.community))

        @bot.command()
        async def ping(ctx: Context, args: str) -> None:
            await ctx.reply("pong")

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            agora = ann.client.community(0)["id"]
            newcomer = (await new_user(server, "newcomer"))["user"]
            await ann.client.set_role(agora, newcomer["id"], "facilitator")
            await ann.say("!ping")  # after both: by its answer, both were handled
            assert await ann.texts_from(made["user"]["id"], 1) == [f"@{ann.name} pong"]
        assert joins == [(newcomer["username"], ann.general)]
        assert roles == [(newcomer["id"], "facilitator", agora)]


# discussions


async def test_a_bot_hears_thread_activity_mentions_dm_created_and_message_changes(
    make_server,
) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()
        heard: list[tuple[str, str]] = []

        @bot.command()
        async def discuss(ctx: Context, args: str) -> None:
            await ctx.reply_in_thread("Let us talk here.", title="Discussion")

        def record(kind: str) -> None:
            @bot.on(kind)
            async def note(ctx: Context) -> None:
                heard.append((kind, ctx.channel))

        for kind in (
            "thread.activity",
            "mention",
            "dm.created",
            "message.updated",
            "message.deleted",
            "reaction.updated",
            "thread.created",
        ):
            record(kind)

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            bot_id = made["user"]["id"]
            asked = await ann.say("!discuss")
            thread, started = await ann.answer_in_thread(asked, bot_id)
            assert started["text"] == "Let us talk here."
            assert thread["title"] == "Discussion" and thread["message"] == asked["id"]
            await ann.client.send_message(thread["id"], "a reply in the bot's thread")
            await eventually(lambda: ("thread.activity", thread["id"]) in heard, "thread.activity")
            await ann.say(f"hello @{made['user']['username']}")
            await eventually(lambda: ("mention", ann.general) in heard, "the mention")
            dm = await ann.client.dm_open(bot_id)
            await eventually(lambda: ("dm.created", dm["id"]) in heard, "dm.created")
            said = await ann.say("to be changed")
            await ann.client.edit(ann.general, said["id"], "changed")
            await ann.client.react(ann.general, said["id"], "🎉")
            await ann.client.delete(ann.general, said["id"])
            for kind in ("message.updated", "reaction.updated", "message.deleted"):
                await eventually(lambda kind=kind: (kind, ann.general) in heard, kind)
        # the bot's own thread is not news to it
        assert ("thread.created", ann.general) not in heard


async def test_ctx_reply_sets_reply_to_and_ctx_react_reacts(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()

        @bot.command()
        async def ping(ctx: Context, args: str) -> None:
            await ctx.reply("pong")

        @bot.command()
        async def like(ctx: Context, args: str) -> None:
            await ctx.react("👍")

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            asked = await ann.say("!ping")
            (answer,) = await ann.messages_from(made["user"]["id"], 1)
            assert answer["text"] == f"@{ann.name} pong"
            assert answer["reply_to"] == asked["id"]
            liked = await ann.say("!like")
            while True:
                event = await ann.client.next_event(timeout(10))
                if isinstance(event, Event) and event.t == "reaction.updated":
                    break
            assert event.d == {
                "message": liked["id"],
                "emoji": "👍",
                "count": 1,
                "user": made["user"]["id"],
                "added": True,
            }
            await eventually(
                lambda: (
                    ann.client.messages[liked["id"]]["reactions"]
                    == [{"emoji": "👍", "count": 1, "users": [made["user"]["id"]]}]
                ),
                "the reaction in Ann's client",
            )


async def test_a_bot_command_works_in_a_dm_and_in_a_thread(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()

        @bot.command()
        async def ping(ctx: Context, args: str) -> None:
            await ctx.reply(f"pong from {ctx.community or 'a DM'}")

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            bot_id = made["user"]["id"]
            dm = await ann.client.dm_open(bot_id)
            await ann.client.subscribe(dm["id"])
            # the bot subscribes on dm.created; until then, the DM's log keeps the command
            asked = await ann.client.send_message(dm["id"], "!ping")
            (answer,) = await ann.messages_from(bot_id, 1)
            assert answer["channel"] == dm["id"] and answer["reply_to"] == asked["id"]
            assert answer["text"] == f"@{ann.name} pong from a DM"
            # a thread someone starts in a channel the bot serves: followed from its start
            thread = await ann.client.thread_create(ann.general, "Pings", text="!ping")
            await ann.client.subscribe(thread["id"], since=0)
            (answer,) = await ann.messages_from(bot_id, 1)
            assert answer["channel"] == thread["id"]
            assert answer["text"] == f"@{ann.name} pong from {ann.client.community(0)['id']}"


async def test_ctx_reply_addresses_the_author_by_username_as_a_mention(make_server) -> None:
    server = make_server(rate_limit=0)
    owner = await new_user(server, "owner")
    made = await create_bot(server, owner["token"], f"bot{os.getpid()}x{time.monotonic_ns()}")
    username = f"ann{os.getpid()}x{time.monotonic_ns() % 10**6}"
    ann_account = await register(server.nodes[0].http, username, "correct horse", "Ann Lee")
    bot = Bot()

    @bot.command()
    async def ping(ctx: Context, args: str) -> None:
        await ctx.reply("pong")

    async with (
        in_process(bot, server.nodes[-1].ws, made["token"]),
        room(server, ann_account["token"]) as ann,
    ):
        await ann.say("!ping")
        (answer,) = await ann.texts_from(made["user"]["id"], 1)
        assert answer == f"@{username} pong"  # not "@Ann Lee": "@Ann" could be someone else
        while True:
            event = await ann.client.next_event(timeout(10))
            if isinstance(event, Event) and event.t == "mention":
                break
        assert event.d["message"]["text"] == answer
