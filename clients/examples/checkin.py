"""A check-in bot for workshops: it asks everyone one question when a workshop starts.

    python -m clients.examples.checkin --token TOKEN --channel workshop-room \\
        --seconds 120 --question "what do you hope to get out of today?"

A facilitator runs it beside a workshop channel (``--channel``; by default it
serves every workshop channel it can read). When a workshop starts there, the
bot asks the people who are online (not bots, not the facilitator who started
it) in one message that mentions each of them, so each hears it wherever they
are::

    @bob @cara check-in: what do you hope to get out of today? (answer here within 2m)

For ``--seconds`` it collects what each of them posts in the channel (their
replies to the question, or messages that start with the bot's ``@name``; from
someone with neither, whatever they posted), then posts the answers there. When the
workshop ends (``workshop.ended`` names the recap's thread), it posts them once
more into the recap thread, so the check-in stays with the recap; a workshop
that ends before the time is up closes the check-in and its answers go to the
recap only. Guests cannot post messages, so they cannot answer.

What it knows lives in memory: a check-in the bot was not running for is not
posted to the recap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from clients.bot import Bot, Context
from clients.client import CommandError
from clients.examples import _cli
from clients.examples.remind import format_duration, parse_duration

log = logging.getLogger("agora.bot.checkin")

DEFAULT_QUESTION = "what do you hope to get out of today?"
DEFAULT_SECONDS = 120
#: Most people one check-in mentions (the question must fit in one message).
MAX_PEOPLE = 100
#: Seconds to keep trying to post into a recap thread the server has not written yet.
RECAP_WAIT = 15.0
#: Characters of one person's answer kept.
MAX_ANSWER = 500


@dataclass(slots=True)
class CheckIn:
    """One workshop's check-in: who was asked, and what each said."""

    workshop: str
    channel: str
    title: str
    question: str
    #: user id -> display name of the people asked, in the order asked
    asked: dict[str, str]
    #: the facilitator who started the workshop: not asked, and not an answer
    facilitator: str
    #: user id -> what they said: ``(answering, text)``, ``answering`` when it replies to
    #: the question or mentions the bot
    answers: dict[str, list[tuple[bool, str]]] = field(default_factory=dict)
    #: set when the time is up or the workshop ended
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    #: the id of the message that asks
    prompt: str = ""

    def takes(self, author: dict[str, Any]) -> bool:
        """Whether a message by ``author`` is an answer."""
        if self.closed.is_set() or author.get("bot") or author["id"] == self.facilitator:
            return False
        return not self.asked or author["id"] in self.asked

    def take(self, author: dict[str, Any], text: str, *, answering: bool) -> None:
        self.asked.setdefault(author["id"], author["name"])
        self.answers.setdefault(author["id"], []).append((answering, text.strip()[:MAX_ANSWER]))

    def said(self, user: str) -> str:
        """A person's answer: what they said in reply (to the question or the bot), else
        everything they said meanwhile."""
        said = self.answers.get(user, [])
        replies = [text for answering, text in said if answering]
        return " / ".join(replies or [text for _, text in said]) or "(no answer)"

    def summary(self, heading: str) -> str:
        lines = [heading]
        for user, name in self.asked.items():
            lines.append(f"- {name}: {self.said(user)}")
        if not self.asked:
            lines.append("(nobody answered)")
        return "\n".join(lines)


def build(question: str = DEFAULT_QUESTION, seconds: int = DEFAULT_SECONDS) -> Bot:
    # a check-in's handler waits out the whole window
    bot = Bot(handler_timeout=seconds + 2 * RECAP_WAIT + 30)
    #: channel id -> the check-in of its live workshop (the last one, once ended)
    checkins: dict[str, CheckIn] = {}

    @bot.on("workshop.started")
    async def ask(ctx: Context) -> None:
        workshop = ctx.event.d["workshop"]
        people = await participants(bot, ctx.community, skip=workshop["by"])
        checkin = CheckIn(
            workshop["id"],
            ctx.channel,
            workshop["title"],
            question,
            {p["id"]: p["name"] for p in people},
            workshop["by"],
        )
        checkins[ctx.channel] = checkin
        who = " ".join(bot.mention(p) for p in people) or "Everyone:"
        prompt = f"{who} check-in: {question} (answer here within {format_duration(seconds)})"
        asked = await bot.send(ctx.channel, prompt, nonce=f"checkin-ask-{workshop['id']}")
        checkin.prompt = asked["id"]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await checkin.closed.wait()
        checkin.closed.set()
        if not checkin.ended:  # an ended workshop's answers go to its recap
            text = checkin.summary(f"Check-in answers: {question}")
            await bot.send(ctx.channel, text, nonce=f"checkin-answers-{workshop['id']}")

    @bot.on("message.created")
    async def collect(ctx: Context) -> None:
        checkin = checkins.get(ctx.channel)
        if checkin is None or ctx.author is None or not checkin.takes(ctx.author):
            return
        assert ctx.message is not None
        text, me = ctx.message["text"], f"@{bot.user['username']}"
        to_me = text.startswith(me) and text[len(me) : len(me) + 1] in ("", " ")
        replying = bool(checkin.prompt) and ctx.message.get("reply_to") == checkin.prompt
        checkin.take(ctx.author, text.removeprefix(me).strip() or text, answering=to_me or replying)

    @bot.on("workshop.ended")
    async def recap(ctx: Context) -> None:
        checkin = checkins.get(ctx.channel)
        if checkin is None or checkin.workshop != ctx.event.d["workshop"]["id"]:
            return  # no check-in of this workshop while the bot was running
        checkin.ended = True
        checkin.closed.set()
        thread = ctx.event.d["recap"]["thread"]
        text = checkin.summary(f"Check-in at the start of {checkin.title}: {question}")
        await post_when_there(bot, thread, text, nonce=f"checkin-recap-{checkin.workshop}")

    return bot


async def participants(bot: Bot, community: str | None, *, skip: str) -> list[dict[str, Any]]:
    """The people (not bots) of the community who are online, but ``skip``; everyone
    when the server cannot say who is online."""
    if community is None:
        return []
    client = bot.running_client()
    members = await client.members(community)
    try:
        online = await client.presence(community)
    except CommandError as exc:
        log.info("cannot tell who is online: %s", exc)
        online = {m["id"]: "online" for m in members}
    bot.usernames.update((m["id"], m["username"]) for m in members)
    return [
        m
        for m in members
        if not m.get("bot") and m["id"] not in (skip, bot.user.get("id")) and m["id"] in online
    ][:MAX_PEOPLE]


async def post_when_there(bot: Bot, thread: str, text: str, *, nonce: str) -> None:
    """Post into a recap thread, which the server writes just after ``workshop.ended``:
    ``not_found`` until then, for at most ``RECAP_WAIT`` seconds."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + RECAP_WAIT, 0.1
    while True:
        try:
            await bot.send(thread, text, nonce=nonce)
            return
        except CommandError as exc:
            if exc.code != "not_found" or loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def main() -> None:
    cli = _cli.parser("Ask everyone a check-in question when a workshop starts.")
    cli.add_argument("--question", default=DEFAULT_QUESTION, help="what to ask")
    cli.add_argument(
        "--seconds",
        default=f"{DEFAULT_SECONDS}s",
        help="how long answers are collected, e.g. 90s or 2m (default 2m)",
    )
    args = cli.parse_args()
    seconds = parse_duration(args.seconds) or (int(args.seconds) if args.seconds.isdigit() else 0)
    if seconds < 1:
        cli.error("--seconds must be a duration like 90, 90s or 2m")
    _cli.run(build(args.question, seconds), cli, args)


if __name__ == "__main__":
    main()
