"""A reminder bot: ``!remind 10m bring the reading notes``.

    python -m clients.examples.remind --token TOKEN --state reminders.json

The bot confirms, and when the time comes posts the reminder in the same
channel, addressed to whoever asked. Durations combine units ``s``, ``m``,
``h`` and ``d`` (``90s``, ``1h30m``, ``2d``). Reminders are kept in the
``--state`` JSON file, so they survive a restart of the bot; one that fell due
while the bot was down is posted as soon as it is back. Each reminder is
posted with a nonce of its own, so it is posted once even if the bot stops
between posting it and writing the file.

Limits: ``--max-per-user`` reminders waiting per person (default 10),
``--max-delay`` (default 30 days), ``--max-total`` reminders held (default
1,000), and 500 characters of text per reminder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clients.bot import Bot, Context
from clients.client import CommandError
from clients.examples import _cli

log = logging.getLogger("agora.bot.remind")

UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d{1,7}[dhms])+")
_PART = re.compile(r"(\d+)([dhms])")
MAX_TEXT = 500
#: seconds before posting again a reminder the server failed to take
RETRY_AFTER = 5.0
USAGE = "Usage: !remind 10m bring the reading notes (units s, m, h, d; e.g. 1h30m)"


def parse_duration(text: str) -> int | None:
    """Seconds in ``1h30m``-style text, or ``None`` if it is not a duration."""
    text = text.lower()
    if not _DURATION.fullmatch(text):
        return None
    return sum(int(n) * UNITS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: int) -> str:
    parts = []
    for unit, size in UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


@dataclass(slots=True)
class Reminder:
    id: str
    channel: str
    author: dict[str, str]
    text: str
    due: float  # Unix time


class Reminders:
    """The reminders waiting, kept in a JSON file that is replaced on every change."""

    def __init__(self, path: Path, *, max_per_user: int, max_delay: int, max_total: int) -> None:
        self.path = path
        self.max_per_user = max_per_user
        self.max_delay = max_delay
        self.max_total = max_total
        self.waiting: dict[str, Reminder] = {}
        self.changed = asyncio.Event()
        if path.exists():  # a broken file stops the bot rather than being overwritten
            data = json.loads(path.read_text(encoding="utf-8"))
            for item in data["reminders"]:
                self.waiting[item["id"]] = Reminder(**item)

    def add(self, channel: str, author: dict[str, Any], text: str, delay: int) -> str | None:
        """Keep a new reminder; returns why not, if it cannot be kept."""
        if delay < 1:
            return "Give a delay of at least 1s."
        if delay > self.max_delay:
            return f"That is too far ahead: at most {format_duration(self.max_delay)}."
        if len(text) > MAX_TEXT:
            return f"That is too long to remember: at most {MAX_TEXT} characters."
        mine = sum(r.author["id"] == author["id"] for r in self.waiting.values())
        if mine >= self.max_per_user:
            return f"You have {mine} reminders waiting already; that is the most I keep."
        if len(self.waiting) >= self.max_total:
            return "I am holding as many reminders as I can; try again later."
        who = {"id": author["id"], "name": author["name"]}
        reminder = Reminder(secrets.token_hex(8), channel, who, text, time.time() + delay)
        self.waiting[reminder.id] = reminder
        self.save()
        return None

    def remove(self, reminder: Reminder) -> None:
        self.waiting.pop(reminder.id, None)
        self.save()

    def save(self) -> None:
        data = {"reminders": [asdict(r) for r in self.waiting.values()]}
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(partial, self.path)  # atomic: a crash leaves the old file or the new one
        self.changed.set()


def build(reminders: Reminders) -> Bot:
    bot = Bot()

    @bot.command("remind")
    async def remind(ctx: Context, args: str) -> None:
        """Remind you later: !remind 10m bring the reading notes (s, m, h, d; 1h30m)."""
        assert ctx.author is not None
        when, *what = args.split(maxsplit=1) or [""]
        delay = parse_duration(when)
        if delay is None or not what:
            await ctx.reply(USAGE)
            return
        text = what[0].strip()
        refusal = reminders.add(ctx.channel, ctx.author, text, delay)
        await ctx.reply(refusal or f"OK, I will remind you in {format_duration(delay)}: {text}")

    @bot.command("reminders")
    async def list_reminders(ctx: Context, args: str) -> None:
        """List the reminders you have waiting."""
        assert ctx.author is not None
        now = time.time()
        mine = sorted(
            (r for r in reminders.waiting.values() if r.author["id"] == ctx.author["id"]),
            key=lambda r: r.due,
        )
        lines = [f"in {format_duration(max(0, round(r.due - now)))}: {r.text}" for r in mine]
        await ctx.reply("\n".join(["Your reminders:", *lines]) if lines else "No reminders.")

    @bot.background
    async def deliver(bot: Bot) -> None:
        while True:
            reminders.changed.clear()
            now = time.time()
            for reminder in sorted(reminders.waiting.values(), key=lambda r: r.due):
                if reminder.due > now:
                    break
                await post(bot, reminders, reminder)
            upcoming = [r.due for r in reminders.waiting.values()]
            wait = min(upcoming) - time.time() if upcoming else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await reminders.changed.wait()

    return bot


async def post(bot: Bot, reminders: Reminders, reminder: Reminder) -> None:
    text = f"{bot.mention(reminder.author)} reminder: {reminder.text}"
    try:
        await bot.send(reminder.channel, text, nonce=f"remind-{reminder.id}")
    except CommandError as exc:
        if exc.code == "internal":  # the server failed: keep it and try again soon
            log.warning("reminder %s not posted, trying again: %s", reminder.id, exc)
            await asyncio.sleep(RETRY_AFTER)
            return
        log.warning("dropping reminder %s: %s", reminder.id, exc)  # e.g. channel gone
    reminders.remove(reminder)


def main() -> None:
    cli = _cli.parser("Post reminders: !remind 10m bring the reading notes.")
    cli.add_argument("--state", type=Path, default=Path("reminders.json"), help="JSON state file")
    cli.add_argument("--max-per-user", type=int, default=10, help="reminders waiting per person")
    cli.add_argument("--max-delay", default="30d", help="longest delay, e.g. 30d")
    cli.add_argument("--max-total", type=int, default=1000, help="reminders held in all")
    args = cli.parse_args()
    max_delay = parse_duration(args.max_delay)
    if max_delay is None:
        cli.error("--max-delay must be a duration like 30d or 12h")
    reminders = Reminders(
        args.state,
        max_per_user=args.max_per_user,
        max_delay=max_delay,
        max_total=args.max_total,
    )
    _cli.run(build(reminders), cli, args)


if __name__ == "__main__":
    main()
