"""Simulated workshop participants: bots of the SDK that take part like people do.

``agora demo`` runs a few of these beside a live workshop so that a facilitator
trying Agora alone sees a room that answers: each one is a ``Bot`` on an
ordinary member's account (not a bot account: it votes, raises its hand, asks
and upvotes questions and talks like anyone). What each does, after a short
pause scaled by ``pace`` (1.0: a person's pace; 0.05: a test's):

- says hello when a workshop starts, and answers a check-in question that
  mentions it;
- on a new agenda item, sometimes raises its hand, asks a question or shares
  a thought; called on (``hands.speaking``), it speaks, then lowers its hand;
- votes in each poll, upvotes some questions of others, sends a pulse now and
  then, posts in its breakout group and (the first member) reports for it.

Every step goes through ``bot.running_client()``'s workshop commands; what a
participant knows of the workshop is ``ctx.workshop``, the client's kept fold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from clients.bot import Bot, Context
from clients.client import AgoraClientError

log = logging.getLogger("agora.demo.participants")

#: username, display name
PEOPLE = [
    ("maya", "Maya"),
    ("theo", "Theo"),
    ("priya", "Priya"),
    ("sam", "Sam"),
    ("lena", "Lena"),
    ("omar", "Omar"),
]
HELLOS = ["Hi all!", "Good morning 👋", "Hello from the back row", "Hey, glad to be here", "Hi!"]
THOUGHTS = [
    "I like where this is going.",
    "Could we try it with a small group first?",
    "We did something similar last year and it worked well.",
    "I'm not sure about the timing, but the idea is good.",
    "+1 to what was said before.",
    "What if we asked the people it affects first?",
    "That reminds me of the reading from last week.",
    "Let's write this down so we don't lose it.",
]
QUESTIONS = [
    "How will we know if it worked?",
    "Who decides in the end?",
    "Is there a budget for this?",
    "Can we share the notes afterwards?",
    "What's the first small step?",
    "How does this fit with what we already do?",
]
CHECKINS = [
    "Some new ideas to take home.",
    "To meet the others properly.",
    "A clear plan for next month.",
    "Honestly, just curious!",
    "To understand the budget question.",
    "Energy for the rest of the week.",
]
REPORTS = [
    "We agreed to start small and meet again in two weeks.",
    "Two ideas: a shared calendar and a buddy system.",
    "We want to hear from newcomers before deciding.",
]


def build(rng: random.Random, pace: float = 1.0) -> Bot:
    """One simulated participant (start it with its account's token)."""
    bot = Bot(help_command=None, handler_timeout=120)
    spoken: dict[str, int] = {}  # channel -> turns this participant took there

    async def pause(low: float, high: float) -> None:
        await asyncio.sleep(rng.uniform(low, high) * pace)

    def me() -> str:
        return bot.user["id"]

    async def act(what: str, work: Any) -> None:
        """Run one command; a refusal (the workshop moved on, say) is no matter."""
        try:
            await work
        except AgoraClientError as exc:
            log.debug("%s: %s", what, exc)

    @bot.on("workshop.started")
    async def hello(ctx: Context) -> None:
        await pause(1, 8)
        await act("hello", bot.send(ctx.channel, rng.choice(HELLOS)))

    @bot.on("mention")
    async def answer(ctx: Context) -> None:
        if ctx.message is None or "check-in" not in ctx.message["text"]:
            return
        await pause(2, 10)
        await act("check-in", ctx.reply(rng.choice(CHECKINS)))

    @bot.on("agenda.moved")
    async def take_part(ctx: Context) -> None:
        client = bot.running_client()
        await pause(2, 15)
        roll = rng.random()
        if roll < 0.3:
            await act("hand", client.hand_raise(ctx.channel))
        elif roll < 0.5:
            await act("ask", client.question_ask(ctx.channel, rng.choice(QUESTIONS)))
        elif roll < 0.8:
            await act("thought", bot.send(ctx.channel, rng.choice(THOUGHTS)))

    @bot.on("hands.updated")
    async def speak(ctx: Context) -> None:
        hands = ctx.event.d["hands"]
        turns = hands.get("turns", {}).get(me(), 0)
        if hands.get("speaking") != me() or turns <= spoken.get(ctx.channel, 0):
            return
        spoken[ctx.channel] = turns
        await pause(1, 4)
        await act("speak", bot.send(ctx.channel, rng.choice(THOUGHTS)))
        await pause(3, 8)
        workshop = ctx.workshop
        if workshop is not None and workshop["hands"].get("speaking") == me():
            await act("done", bot.running_client().hand_lower(ctx.channel))

    @bot.on("poll.created")
    async def vote(ctx: Context) -> None:
        poll = ctx.event.d["poll"]
        await pause(2, 12)
        options = range(len(poll["options"]))
        weights = [len(poll["options"]) - i + rng.random() for i in options]  # the first a bit
        count = rng.choice([1, 2]) if poll.get("multi") else 1
        choices = sorted(set(rng.choices(list(options), weights, k=count)))
        await act("vote", bot.running_client().poll_vote(ctx.channel, poll["id"], choices))

    @bot.on("question.asked")
    async def upvote(ctx: Context) -> None:
        question = ctx.event.d["question"]
        if question.get("by") == me() or rng.random() < 0.4:
            return
        await pause(1, 10)
        await act("upvote", bot.running_client().question_upvote(ctx.channel, question["id"]))

    @bot.on("breakout.opened")
    async def in_a_group(ctx: Context) -> None:
        groups = ctx.event.d["breakout"]["groups"]
        group = next((g for g in groups if me() in g.get("members", [])), None)
        if group is None:
            return
        await pause(2, 10)
        await act("group", bot.send(group["channel"], rng.choice(THOUGHTS)))
        if group["members"][0] == me():
            await pause(5, 20)
            report = rng.choice(REPORTS)
            await act("report", bot.running_client().breakout_report(group["channel"], report))

    @bot.background
    async def now_and_then(bot: Bot) -> None:
        while True:
            await pause(15, 45)
            client = bot.running_client()
            for channel, followed in list(client.workshops.items()):
                if not followed.live or rng.random() < 0.5:
                    continue
                kind = rng.choice(["agree", "agree", "confused", "slower", "faster"])
                with contextlib.suppress(AgoraClientError):
                    await client.pulse_send(channel, kind)

    return bot
