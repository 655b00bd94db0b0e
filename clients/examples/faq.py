"""A FAQ bot: ``!faq TOPIC`` answers from a Markdown file the community keeps.

    python -m clients.examples.faq --token TOKEN --file faq.md

The file is plain Markdown; each ``## `` heading starts a topic, and a heading
may name several topics separated by commas. Everything else (a ``#`` title,
text before the first topic) is free for the editors::

    # Reading group FAQ

    ## schedule, meetings
    We meet on Thursdays at 19:00 in room 4.

    ## reading list
    This term: Middlemarch, then The Dispossessed.

``!faq`` lists the topics, ``!faq schedule`` answers, and an unknown topic
gets the closest matches. Each answer goes into a thread started from the
question (titled ``FAQ: schedule``), so the channel keeps one line per
question and follow-ups stay together; asked in a thread or a DM, the answer
comes right there. The bot reads the file again whenever it changes,
so editing it needs no restart. Files over 1 MiB are refused.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from clients.bot import Bot, Context
from clients.examples import _cli

log = logging.getLogger("agora.bot.faq")

MAX_FILE_BYTES = 1 << 20
_TOPIC = re.compile(r"^##\s+(.+?)\s*#*\s*$")


def topic_key(text: str) -> str:
    return " ".join(text.lower().split())


def parse(markdown: str) -> dict[str, tuple[str, str]]:
    """``{key: (heading, answer)}`` for every topic name in the file."""
    sections: list[tuple[str, list[str]]] = []
    for line in markdown.splitlines():
        if match := _TOPIC.match(line):
            sections.append((match.group(1), []))
        elif line.startswith("# "):
            continue
        elif sections:
            sections[-1][1].append(line)
    topics: dict[str, tuple[str, str]] = {}
    for heading, lines in sections:
        answer = "\n".join(lines).strip()
        for name in heading.split(","):
            if key := topic_key(name):
                topics.setdefault(key, (heading, answer))
    return topics


@dataclass
class Faq:
    """The topics of one file, read again when its size or modification time changes."""

    path: Path
    topics: dict[str, tuple[str, str]] = field(default_factory=dict)
    _seen: tuple[int, int] | None = None

    def current(self) -> dict[str, tuple[str, str]]:
        stat = os.stat(self.path)
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            if stat.st_size > MAX_FILE_BYTES:
                raise ValueError(f"{self.path} is over {MAX_FILE_BYTES} bytes")
            self.topics = parse(self.path.read_text(encoding="utf-8"))
            self._seen = (stat.st_mtime_ns, stat.st_size)
            log.info("read %d topics from %s", len(self.topics), self.path)
        return self.topics

    def answer(self, query: str) -> str:
        try:
            topics = self.current()
        except (OSError, ValueError) as exc:
            log.error("cannot read the FAQ: %s", exc)
            return "Sorry, I cannot read the FAQ file right now."
        names = sorted({heading for heading, _ in topics.values()})
        if not names:
            return "The FAQ has no topics yet."
        listing = "FAQ topics: " + "; ".join(names) + ". Ask with !faq TOPIC."
        key = topic_key(query)
        if not key:
            return listing
        if key in topics:
            heading, answer = topics[key]
            return f"{heading}\n{answer}" if answer else heading
        close = difflib.get_close_matches(key, list(topics), n=3, cutoff=0.6)
        if close:
            return f"No FAQ on '{query}'. Did you mean: {', '.join(close)}?"
        return f"No FAQ on '{query}'. {listing}"


def build(faq: Faq) -> Bot:
    bot = Bot()

    @bot.command("faq")
    async def answer(ctx: Context, args: str) -> None:
        """Answer from the community's FAQ: !faq TOPIC, or !faq to list the topics."""
        title = f"FAQ: {args}" if args else "FAQ topics"
        await ctx.reply_in_thread(faq.answer(args), title=title[:200])

    return bot


def main() -> None:
    cli = _cli.parser("Answer !faq TOPIC from a Markdown file.")
    cli.add_argument("--file", type=Path, default=Path("faq.md"), help="the FAQ (Markdown)")
    args = cli.parse_args()
    faq = Faq(args.file)
    try:
        faq.current()
    except (OSError, ValueError) as exc:
        cli.error(f"cannot read the FAQ file: {exc}")
    _cli.run(build(faq), cli, args)


if __name__ == "__main__":
    main()
