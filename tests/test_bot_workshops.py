"""Bots in workshops: the workshop events reach ``@bot.on`` handlers with ``ctx.workshop``,
and the check-in example bot asks, collects and posts into the recap thread.

As in ``test_bots``: people are on the first node and bots on the last, so in the
scaled deployment every command and answer crosses between nodes. Each test has
a server of its own, so the first community holds only its people.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from clients import Bot, Client, Context
from tests.conftest import AgoraProcess, eventually, new_user, timeout
from tests.test_bots import BotProcess, in_process, owner_with_bot, running
from tests.test_client_workshops import first_message


@contextlib.asynccontextmanager
async def people(server: AgoraProcess, *names: str) -> AsyncIterator[list[Client]]:
    """New accounts (members of the first community), connected on the first node, so
    online."""
    accounts = [await new_user(server.nodes[0], name) for name in names]
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(Client(server.nodes[0].ws, a["token"]))
            for a in accounts
        ]


async def message_from(
    client: Client, author: str, channel: str, wait: float = 10
) -> dict[str, Any]:
    """The next message by ``author`` in ``channel`` that ``client`` hears."""
    async with asyncio.timeout(timeout(wait)):
        while True:
            event = await client.next_event(timeout(wait))
            d = getattr(event, "d", {})
            message = d.get("message") if getattr(event, "t", "") == "message.created" else None
            if message and message["author"]["id"] == author and message["channel"] == channel:
                return message


async def test_a_bot_hears_workshop_events_and_sees_the_kept_workshop(make_server) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made):
        bot = Bot()
        heard: list[tuple[str, str, str | None]] = []

        def record(kind: str) -> None:
            @bot.on(kind)
            async def note(ctx: Context) -> None:
                title = ctx.workshop["title"] if ctx.workshop is not None else None
                heard.append((kind, ctx.channel, title))

        for kind in ("workshop.started", "agenda.moved", "question.asked", "workshop.ended"):
            record(kind)

        @bot.on("poll.created")
        async def vote(ctx: Context) -> None:
            poll = ctx.event.d["poll"]
            await bot.running_client().poll_vote(
                ctx.channel, poll["id"], [len(poll["options"]) - 1]
            )
            # a question of its own is not news to it
            await bot.running_client().question_ask(ctx.channel, "May a bot ask?")

        async with in_process(bot, server.nodes[-1].ws, made["token"]):
            agora = ann.client.community(0)["id"]
            room = (await ann.client.create_channel(agora, "workshop-room", kind="workshop"))["id"]
            await eventually(lambda: room in bot.handled, "the bot following the workshop channel")
            await ann.client.subscribe(room)
            await ann.client.workshop_start(room, "With a bot", ["Start"])
            await ann.client.agenda_next(room)
            await ann.client.question_ask(room, "Is the bot listening?")
            poll = await ann.client.poll_create(room, "Best option?", ["first", "last"])
            await eventually(
                lambda: (
                    (ann.client.workshops[room].poll(poll["id"]) or {}).get("tallies") == [0, 1]
                ),
                "the bot's vote",
            )
            await eventually(
                lambda: len(ann.client.workshops[room].workshop["questions"]) == 2, "its question"
            )
            assert bot.workshop(room) is not None
            await ann.client.workshop_end(room)
            await eventually(lambda: ("workshop.ended", room, None) in heard, "workshop.ended")
        assert heard == [
            ("workshop.started", room, "With a bot"),
            ("agenda.moved", room, "With a bot"),
            ("question.asked", room, "With a bot"),  # Ann's, not the bot's own
            ("workshop.ended", room, None),
        ]


async def test_the_checkin_bot_asks_collects_and_posts_into_the_recap_thread(
    make_server,
) -> None:
    server = make_server(rate_limit=0)
    async with owner_with_bot(server) as (ann, made), people(server, "bob", "cara") as (bob, cara):
        bot_id = made["user"]["id"]
        agora = ann.client.community(0)["id"]
        room = (await ann.client.create_channel(agora, "morning", kind="workshop"))["id"]
        for client in (ann.client, bob, cara):
            await client.subscribe(room)
        window = max(3, round(timeout(3)))  # answers come at once; the window is for slow CI
        checkin = BotProcess(
            "checkin", server, made["token"], "--seconds", str(window), "--question", "why here?"
        )
        async with running(checkin):
            started = await ann.client.workshop_start(room, "Morning session", ["Check-in"])
            prompt = await message_from(bob, bot_id, room)
            usernames = {c.identity["user"]["username"] for c in (bob, cara)}
            assert {w.removeprefix("@") for w in prompt["text"].split() if w[0] == "@"} == usernames
            assert "check-in: why here?" in prompt["text"]
            assert ann.client.identity["user"]["username"] not in prompt["text"]  # the facilitator
            await bob.send_message(room, "To plan the garden.", reply_to=prompt["id"])
            await ann.client.send_message(room, "Welcome, everyone!")  # not an answer
            summary = await message_from(bob, bot_id, room, wait=window + 10)
            bob_name, cara_name = (c.identity["user"]["name"] for c in (bob, cara))
            assert summary["text"].splitlines() == [
                "Check-in answers: why here?",
                f"- {bob_name}: To plan the garden.",
                f"- {cara_name}: (no answer)",
            ]
            await cara.send_message(room, "Too late for the check-in.")
            recap = await ann.client.workshop_end(room)
            assert recap["title"] == started["title"] and recap["thread"]

            async def bots_post() -> dict[str, Any]:
                async with asyncio.timeout(timeout(15)):
                    while True:
                        events = await bob.history(recap["thread"])
                        for event in events:
                            message = event.d.get("message", {})
                            if event.t == "message.created" and message["author"]["id"] == bot_id:
                                return message
                        await asyncio.sleep(0.05)

            await first_message(bob, recap["thread"])  # the thread is there
            posted = await bots_post()
            assert posted["text"].splitlines() == [
                "Check-in at the start of Morning session: why here?",
                f"- {bob_name}: To plan the garden.",
                f"- {cara_name}: (no answer)",
            ]
