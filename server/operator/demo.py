"""``agora demo``: a server with a live sample workshop, for a facilitator trying Agora alone.

It starts an embedded server (a fresh SQLite database in a temporary directory,
thrown away at the end, unless ``--db`` or ``--database`` name one), registers
the facilitator ``host`` and a few simulated participants, makes the community
"Workshop demo" with a workshop channel ``#workshop``, and runs in it, over the
gateway like anyone else:

- the participants (``clients/examples/participants.py``): SDK bots on ordinary
  accounts that say hello, vote, raise their hands, speak when called, ask and
  upvote questions, send a pulse and work in breakout groups;
- the check-in bot (``clients/examples/checkin.py``), which asks everyone online
  a question when a workshop starts.

Then, as ``host``, it starts a sample workshop on its first item and opens a
poll, and prints how to log in (browser or ``agora chat``). Everything after
that is the facilitator's to drive: ``/next``, ``/call``, ``/poll``, breakouts,
``/end``. SIGINT or SIGTERM stops the participants, then the server (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from server.settings import Settings

log = logging.getLogger("agora.demo")

#: The sample workshop: a title and an agenda (``minutes`` starts a timer).
TITLE = "Planning the community garden"
AGENDA = [
    {"title": "Check-in", "minutes": 3},
    {"title": "Ideas", "minutes": 10},
    {"title": "Small groups"},
    {"title": "Wrap-up", "minutes": 5},
]
POLL = ("Which idea should we start with?", ["Raised beds", "A tool library", "A pond"])
CHECKIN_QUESTION = "what do you hope to get out of today?"
#: Seconds the check-in collects answers, at a person's pace.
CHECKIN_SECONDS = 90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``agora demo``'s options: those of ``agora serve``, and the demo's own."""
    demo = parser.add_argument_group("the demo")
    demo.add_argument("--password", help="the facilitator's password (default: made up, printed)")
    demo.add_argument(
        "--people", type=int, default=6, help="simulated participants, 1 to 6 (default 6)"
    )
    demo.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="how slowly the participants act: 1.0 like people, 0.1 ten times faster",
    )
    demo.add_argument("--seed", type=int, help="make the participants' choices repeatable")
    demo.add_argument(
        "--no-start",
        dest="start",
        action="store_false",
        help="do not start the sample workshop: leave it to the facilitator",
    )
    Settings.add_arguments(parser.add_argument_group("the server (as for agora serve)"))


def run(args: argparse.Namespace) -> int:
    """Run the demo until SIGINT or SIGTERM; raises ``ValueError`` for bad options."""
    if not 1 <= args.people <= 6:
        raise ValueError("--people is 1 to 6")
    if args.pace <= 0:
        raise ValueError("--pace must be above 0")
    settings = Settings.from_env().with_arguments(args)
    if args.log_level is None and "AGORA_LOG_LEVEL" not in os.environ:
        settings = replace(settings, log_level="warning")  # the demo's own lines, not logs
    if settings.workers != 1:
        raise ValueError("agora demo runs one process: no --workers")
    with _database(settings, given=args.db is not None or "AGORA_DB" in os.environ) as settings:
        settings.check()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return asyncio.run(_demo(settings, args))


@contextlib.contextmanager
def _database(settings: Settings, *, given: bool) -> Iterator[Settings]:
    """The settings, with a fresh SQLite file in a temporary directory unless a database
    was named."""
    if given or settings.database_url:
        yield settings
        return
    with tempfile.TemporaryDirectory(prefix="agora-demo-") as directory:
        yield replace(settings, db=str(Path(directory) / "demo.db"))


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from server.app import create_app
    from server.operator.cli import _Server, uvicorn_config

    class DemoServer(_Server):
        """Stopped by the demo (after its participants), not by uvicorn's signal handlers."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = DemoServer(uvicorn_config(settings, create_app(settings)))
    serving = asyncio.create_task(server.serve())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bots: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        while not server.started:
            if serving.done():
                await serving
                return 1  # it could not start (uvicorn said why)
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        base = f"http://{host}:{port}"
        room = await _seed(base, args, bots, tasks)
        _say_how(base, room, args)
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait([serving, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
    finally:
        for bot in bots:
            await bot.stop(grace=1)
        await asyncio.gather(*tasks, return_exceptions=True)
        server.should_exit = True
        await serving
    return 0


async def _account(base: str, username: str, password: str, name: str) -> dict[str, Any]:
    """A new account (the username gets a suffix if it is taken): ``{user, token}``."""
    from clients import CommandError, register

    wanted = username
    for _ in range(5):
        try:
            return await register(base, wanted, password, name)
        except CommandError as exc:
            if exc.code != "conflict":
                raise
            wanted = f"{username}{secrets.randbelow(10_000)}"
    raise ValueError(f"cannot register a username like {username!r}")


async def _seed(
    base: str, args: argparse.Namespace, bots: list[Any], tasks: list[asyncio.Task[None]]
) -> dict[str, Any]:
    """The community, its workshop channel, the people and the bots; the sample workshop
    started. What the facilitator needs to know."""
    from clients import Client
    from clients.examples import checkin, participants

    ws = "ws" + base.removeprefix("http")
    password = args.password or secrets.token_urlsafe(9)
    host = await _account(base, "host", password, "Host (you)")
    people = [
        await _account(base, username, secrets.token_urlsafe(16), name)
        for username, name in participants.PEOPLE[: args.people]
    ]
    async with Client(ws, host["token"]) as facilitator:
        community = await _community(facilitator)
        room = await facilitator.create_channel(
            community["id"], "workshop", kind="workshop", topic="The demo's live workshop"
        )
        code = (await facilitator.create_invite(community["id"]))["code"]
        checkin_account = await _bot_account(base, host["token"])
        for account in [*people, checkin_account]:
            async with Client(ws, account["token"]) as member:
                await member.accept_invite(code)
        rng = random.Random(args.seed)
        seconds = max(5, round(CHECKIN_SECONDS * args.pace))
        bots += [participants.build(random.Random(rng.random()), args.pace) for _ in people]
        bots.append(checkin.build(CHECKIN_QUESTION, seconds))
        for bot, account in zip(bots, [*people, checkin_account], strict=True):
            tasks.append(await _started(bot, ws, account["token"], room["id"]))
        if args.start:
            await facilitator.subscribe(room["id"])
            await facilitator.workshop_start(room["id"], TITLE, AGENDA)
            await facilitator.agenda_next(room["id"])
            await facilitator.poll_create(room["id"], POLL[0], POLL[1])
    return {
        "username": host["user"]["username"],
        "password": password,
        "community": community["name"],
        "channel": room["name"],
        "people": [p["user"]["name"] for p in people],
    }


async def _community(facilitator: Any) -> dict[str, Any]:
    from clients import CommandError

    for suffix in ["", *(f" {secrets.token_hex(2)}" for _ in range(4))]:
        try:
            return await facilitator.create_community(f"Workshop demo{suffix}")
        except CommandError as exc:
            if exc.code != "conflict":
                raise
    raise ValueError("cannot name the demo's community")


async def _bot_account(base: str, owner_token: str) -> dict[str, Any]:
    """The check-in bot's account (``POST /api/v1/bots``, as the host)."""
    import json
    import urllib.request

    def make(username: str) -> dict[str, Any]:
        request = urllib.request.Request(
            base + "/api/v1/bots",
            data=json.dumps({"username": username}).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {owner_token}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    return await asyncio.to_thread(make, f"checkin{secrets.token_hex(2)}")


async def _started(bot: Any, ws: str, token: str, channel: str) -> asyncio.Task[None]:
    """Start a bot serving ``channel``; its task, once the bot is ready."""
    task = asyncio.create_task(bot.start(ws, token, channels=[channel]))
    ready = asyncio.create_task(bot.ready.wait())
    await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        await task  # raises why it ended
    if not bot.ready.is_set():
        raise RuntimeError("a participant did not get ready")
    return task


def _say_how(base: str, room: dict[str, Any], args: argparse.Namespace) -> None:
    people = ", ".join(room["people"])
    lines = [
        f"Agora demo is live at {base}/",
        f"  Log in as {room['username']!r} with the password {room['password']!r}: you"
        f" facilitate #{room['channel']} in {room['community']!r}.",
        f"  In a terminal: agora chat --server {base} --username {room['username']}"
        f" --channel {room['channel']}",
        f"  In the room: {people}, and a check-in bot.",
        "  The sample workshop is running with a poll open: try /next, /call, /timer 60,"
        ' /poll "Lunch?" yes no, /end.'
        if args.start
        else '  Start a workshop there: /start "My session" Intro:5 Ideas Wrap-up',
        "Ctrl-C stops the demo.",
    ]
    print("\n".join(lines), flush=True)
    sys.stdout.flush()
