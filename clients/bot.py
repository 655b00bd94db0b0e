"""The bot framework: a ``Bot`` answers ``!commands`` and events over one ``Client``.

::

    bot = Bot(prefix="!")

    @bot.command("hello")
    async def hello(ctx: Context, args: str) -> None:
        \"\"\"Say hello.\"\"\"
        await ctx.reply(f"Hello, {ctx.author['name']}!")

    @bot.on("member.joined")
    async def welcome(ctx: Context) -> None:
        await ctx.send(f"Welcome, {ctx.event.d['member']['name']}!")

    bot.run("ws://127.0.0.1:8000", token)   # or: await bot.start(url, token)

What a bot promises:

- It subscribes to every text and workshop channel it can see (or the ones it
  is given) and starts at each channel's current offset: history from before
  it started is never handled. Running with every channel, it also subscribes
  to each text or workshop channel created later (from its first event on) and
  to those of each community it joins later.
- Community events (``channel.created``, ``channel.updated``,
  ``member.joined``, ``member.updated``, ``member.left``,
  ``presence.updated``) and the user event ``community.joined`` reach
  ``@bot.on`` handlers too, with ``ctx.community`` set and ``ctx.channel`` the
  community's system channel (its first text channel, where joins are
  announced). A join is handled once: the community's copy of
  ``member.joined`` only when the bot does not follow its system channel,
  where the durable one arrives.
- Discussions (docs/protocol.md §5.9): the bot also follows the threads of
  the channels it serves (``thread.created``, from the thread's first event
  on), the threads it follows (identify's ``threads``) and its DMs (identify's
  ``dms``, and each ``dm.created``, from the first event on): commands work in
  threads and DMs as in any channel. ``@bot.on`` takes ``thread.created``,
  ``thread.updated``, ``thread.activity``, ``mention``, ``dm.created``,
  ``reaction.updated``, ``message.updated``, ``message.deleted`` and
  ``message.pinned`` like any other event; commands run only for new messages
  (``message.created``), never for an edit or a mention. ``ctx.reply`` answers
  with ``reply_to`` set, ``ctx.reply_in_thread`` answers in a thread started
  from the message, ``ctx.react`` reacts to it.
- Workshops (docs/protocol.md §5.10): the events of a workshop channel
  (``workshop.started``, ``agenda.moved``, ``hands.updated``, ``poll.created``,
  ``poll.updated``, ``poll.closed``, ``question.asked``, ``question.updated``,
  ``timer.started``, ``timer.ended``, ``breakout.opened``, ``breakout.reported``,
  ``breakout.closed``, ``pulse.updated``, ``workshop.ended``) reach ``@bot.on``
  like any other. ``ctx.workshop`` is the channel's live workshop as the client
  keeps it (``protocol.workshop.apply`` over its events; None when none is
  live), ``ctx.followed`` the rest of what the client keeps there (the bot's
  own ballots, the last recap), and the client's workshop commands
  (``bot.running_client().poll_vote(…)``) drive it.
- Each durable event is handled at most once per run. The ``Client`` resumes
  after a drop, and the bot also keeps the highest offset it handled per
  channel and skips anything at or below it. When the server cannot replay
  what was missed (a ``Gap``), the bot skips those events rather than answer
  commands long after they were asked.
- It never reacts to its own messages (nor to its own edits, reactions,
  threads, and the workshops, polls, questions and reports it starts); by
  default it ignores commands from other bots (accounts it has seen with
  ``bot: true``), so two bots cannot talk each other into a loop.
- Handlers run as tasks, at most ``max_tasks`` at a time (reading events
  waits for a free slot) and each for at most ``handler_timeout`` seconds. A
  handler that raises is logged and the bot goes on.
- Sends that hit ``rate_limited`` wait ``retry_after_ms`` and go again.
- Unknown commands are ignored: several bots often share one prefix, and a
  hint from each for the others' commands would be noise. ``!help`` lists the
  bot's commands with the first line of their docstrings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clients.client import Client, CommandError, ConnectionClosed, Event, Gap
from clients.workshops import Followed
from protocol import COMMUNITY_EVENTS, CloseCode, Encoding
from protocol.commands import MAX_MESSAGE_CHARS

log = logging.getLogger("agora.bot")

Handler = Callable[["Context"], Awaitable[None]]
CommandHandler = Callable[["Context", str], Awaitable[None]]
Background = Callable[["Bot"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: CommandHandler
    help: str


class Context:
    """What a handler is given: the event, where it happened, and ways to answer.

    ``community`` is the id of the community the event is about (None when the
    bot does not know it, and in a DM); ``channel`` the channel it happened in:
    for ``mention`` and ``thread.activity`` the message's channel (or thread),
    for ``dm.created`` the DM, and for a community or user event the community's
    system channel (its first text channel), so that ``send`` answers where
    joins are announced.
    """

    __slots__ = ("author", "bot", "channel", "community", "event", "message")

    def __init__(self, bot: Bot, event: Event) -> None:
        self.bot = bot
        self.event = event
        self.channel: str = event.ch
        self.community: str | None = None
        #: the message the event is about (for ``reaction.updated``,
        #: ``message.pinned`` and ``message.deleted``, as the client last saw it),
        #: else ``None``
        self.message: dict[str, Any] | None = _message_of(bot, event)
        #: ``{id, name, bot}`` of the author of a message the event brings, else ``None``
        self.author: dict[str, Any] | None = (
            self.message["author"] if self.message and event.t in AUTHORED else None
        )
        about = _community_of_event(event)
        if about is not None:
            self.community = about
            self.channel = bot.system_channel(about) or event.ch
            return
        if event.t in ("mention", "thread.activity") and self.message is not None:
            self.channel = self.message["channel"]
        elif event.t == "dm.created":
            self.channel = event.d["channel"]["id"]
        self.community = bot.community_of(self.channel)

    async def send(self, text: str) -> dict[str, Any]:
        """Post ``text`` in this event's channel; returns the message."""
        return await self.bot.send(self.channel, text)

    async def reply(self, text: str) -> dict[str, Any]:
        """Answer the event's message: ``text`` in its channel (or thread), addressed to
        its author, with ``reply_to`` naming the message."""
        addressed = f"{self.bot.mention(self.author)} {text}" if self.author else text
        return await self.bot.send(self.channel, addressed, reply_to=self._answerable())

    async def reply_in_thread(self, text: str, *, title: str | None = None) -> dict[str, Any]:
        """Answer in a thread started from the event's message (the one it has already,
        if any; in a thread or a DM, right there); returns the message posted.

        ``title`` defaults to the start of the message's text.
        """
        client = self.bot.running_client()
        message = self.message
        if message is None or message.get("deleted"):
            return await self.send(text)
        if self.bot.is_thread(self.channel) or self.channel in client.dms:
            return await self.bot.send(self.channel, text, reply_to=message["id"])
        thread_id = message.get("thread")
        if thread_id is None:
            heading = title or _title_of(message["text"])
            thread = await client.thread_create(self.channel, heading, message=message["id"])
            thread_id = thread["id"]
            message["thread"] = thread_id
            # a thread it has just made is news from its start; one that was there
            # already (made from this message before) from now on
            made_now = thread["created_by"] == self.bot.user.get("id") and not thread["replies"]
            await self.bot.follow_thread(thread_id, from_start=made_now)
        else:
            await self.bot.follow_thread(thread_id, from_start=False)
        return await self.bot.send(thread_id, text)

    async def react(self, emoji: str) -> None:
        """React to the event's message with ``emoji``."""
        message_id = self._answerable()
        if message_id is None:
            raise ValueError(f"a {self.event.t} event has no message to react to")
        await self.bot.running_client().react(self.channel, message_id, emoji)

    @property
    def followed(self) -> Followed | None:
        """What the client keeps of this channel's workshops (None if it is not a
        subscribed workshop channel)."""
        client = self.bot.client
        return client.workshops.get(self.channel) if client is not None else None

    @property
    def workshop(self) -> dict[str, Any] | None:
        """The live workshop of this channel as the client keeps it now (it may be ahead
        of the event being handled), or None."""
        followed = self.followed
        return followed.workshop if followed is not None else None

    def _answerable(self) -> str | None:
        """The id of the event's message, if it is one of this channel that can be answered."""
        message = self.message
        if message is None or message.get("deleted") or message.get("channel") != self.channel:
            return None
        return message["id"]


#: Kinds of channel the bot serves: where people post (threads and DMs come otherwise).
SERVED_KINDS = ("text", "workshop")
#: Events whose ``d.message`` is a message its author just sent or changed.
AUTHORED = frozenset({"message.created", "message.updated", "mention", "thread.activity"})
#: Events that name a message by its id.
ABOUT_A_MESSAGE = {
    "reaction.updated": "message",
    "message.pinned": "message",
    "message.deleted": "id",
}


def _message_of(bot: Bot, event: Event) -> dict[str, Any] | None:
    if event.t in AUTHORED:
        return event.d.get("message")
    key = ABOUT_A_MESSAGE.get(event.t)
    if key is None or bot.client is None:
        return None
    return bot.client.messages.get(event.d.get(key, ""))


def _title_of(text: str) -> str:
    """A thread title from a message's text: its first line, at most 200 characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first[:199] + "…" if len(first) > 200 else first) or "Thread"


def _actor(event: Event) -> str | None:
    """Who caused a channel event (None when the event does not say)."""
    d = event.d
    if event.t in AUTHORED and isinstance(d.get("message"), dict):
        return d["message"]["author"]["id"]
    if event.t == "reaction.updated":
        return d.get("user")
    if event.t == "thread.created":
        return d.get("by")
    if event.t == "breakout.reported":
        return d.get("by")
    made = _MADE_BY.get(event.t)
    if made is not None and isinstance(d.get(made), dict):
        return d[made].get("by")
    return None


#: Workshop events that bring something someone started: the key of that object.
_MADE_BY = {"workshop.started": "workshop", "poll.created": "poll", "question.asked": "question"}


def _community_of_event(event: Event) -> str | None:
    """The community a community or user event is about; None for channel events."""
    if event.o is not None:
        return None
    if event.t in COMMUNITY_EVENTS:
        return event.ch
    if event.t == "community.joined":
        return event.d["community"]["id"]
    return None


def mention(user: dict[str, Any]) -> str:
    """``@`` and a user's display name (``Bot.mention`` prefers the username)."""
    return f"@{user['name']}"


class Bot:
    """Decorators to register handlers, and a loop that feeds them events."""

    def __init__(
        self,
        prefix: str = "!",
        *,
        help_command: str | None = "help",
        ignore_bots: bool = True,
        max_tasks: int = 8,
        handler_timeout: float = 60.0,
        encoding: Encoding | str = Encoding.MSGPACK,
    ) -> None:
        if not prefix or prefix != prefix.strip():
            raise ValueError("the prefix must be non-empty and have no surrounding whitespace")
        if max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        self.prefix = prefix
        self.ignore_bots = ignore_bots
        self.handler_timeout = handler_timeout
        self.encoding = Encoding(encoding)
        self.client: Client | None = None
        #: the bot's own user object, once connected
        self.user: dict[str, Any] = {}
        #: highest durable offset handled, per subscribed channel
        self.handled: dict[str, int] = {}
        #: set once every channel is subscribed
        self.ready = asyncio.Event()
        self.commands: dict[str, Command] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self._background: list[Background] = []
        self._bots: set[str] = set()
        #: user id -> username of the members the bot knows, for ``mention``
        self.usernames: dict[str, str] = {}
        self._slots = asyncio.Semaphore(max_tasks)
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs: list[asyncio.Task[None]] = []
        self._stopping = False
        self._every_channel = True
        if help_command:
            self.command(help_command)(self._help)

    # registration

    def on(self, event_type: str) -> Callable[[Handler], Handler]:
        """Run the decorated ``async def f(ctx)`` for every event of ``event_type``."""

        def register(handler: Handler) -> Handler:
            self._handlers.setdefault(event_type, []).append(handler)
            return handler

        return register

    def command(self, name: str | None = None) -> Callable[[CommandHandler], CommandHandler]:
        """Run the decorated ``async def f(ctx, args)`` for ``<prefix>name args``.

        The name defaults to the function's; names are matched without regard to
        case. The docstring is the command's ``help``.
        """

        def register(handler: CommandHandler) -> CommandHandler:
            key = (name or handler.__name__).lower()
            if not key or any(c.isspace() for c in key):
                raise ValueError(f"bad command name {key!r}")
            help_text = (handler.__doc__ or "").strip()
            self.commands[key] = Command(key, handler, help_text)
            return handler

        return register

    def background(self, job: Background) -> Background:
        """Run the decorated ``async def f(bot)`` once the bot is ready, until it stops."""
        self._background.append(job)
        return job

    # running

    def run(self, url: str, token: str, *, channels: Iterable[str] | None = None) -> None:
        """Run until SIGINT or SIGTERM: the entry point of a bot program."""
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stopping: list[asyncio.Task[None]] = []  # a reference keeps the task alive

            def on_signal() -> None:
                stopping.append(loop.create_task(self.stop()))

            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):  # not on Windows
                    loop.add_signal_handler(sig, on_signal)
            await self.start(url, token, channels=channels)

        asyncio.run(main())

    async def start(self, url: str, token: str, *, channels: Iterable[str] | None = None) -> None:
        """Connect, subscribe and handle events until ``stop()``.

        ``channels`` are channel ids or names; by default every text and workshop
        channel of every community the bot belongs to. Raises ``ConnectionClosed`` when the
        server ends the connection for good (a bad token, say).
        """
        client = self.client = Client(url, token, encoding=self.encoding, wait_on_rate_limit=True)
        self._stopping = False
        self._every_channel = channels is None
        await client.connect()
        try:
            self.user = client.identity["user"]
            for channel in self._channels(client.identity, channels):
                reply = await client.subscribe(channel)
                self.handled[channel] = reply["offset"]
            # the threads it follows and its DMs: from now on, like its channels
            for followed in [*client.threads, *client.dms]:
                await self._subscribe(client, followed)
            await self._learn_bots(client)
            log.info("%s is ready in %d channels", self.user["username"], len(self.handled))
            self.ready.set()
            self._jobs = [
                asyncio.create_task(self._guard(job.__name__, None, job, self))
                for job in self._background
            ]
            async for item in client.events():
                if isinstance(item, Gap):
                    log.warning(
                        "events %d..%d of channel %s could not be replayed; skipping them",
                        item.after + 1,
                        item.until,
                        item.channel,
                    )
                    self.handled[item.channel] = item.until
                else:
                    await self._follow(client, item)
                    await self._dispatch(item)
        finally:
            await self._cancel_all()
            await client.close()
        if client.closed is not None and client.closed.code != CloseCode.NORMAL:
            raise client.closed

    async def stop(self, grace: float = 5.0) -> None:
        """End ``start()``.

        No new event is handled; handlers already running get ``grace`` seconds
        to finish and are then cancelled, as are background jobs at once; then
        the connection closes.
        """
        self._stopping = True
        for job in self._jobs:
            job.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        await self._cancel_all()
        if self.client is not None:
            await self.client.close()

    async def send(
        self, channel: str, text: str, *, nonce: str | None = None, reply_to: str | None = None
    ) -> dict[str, Any]:
        """Post ``text`` (cut to the message limit) in ``channel``; returns the message.

        A ``nonce`` makes the send idempotent even across restarts of the bot;
        ``reply_to`` names the message of the channel it answers.
        """
        client = self.running_client()
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 1] + "…"
        return await client.send_message(channel, text, nonce=nonce, reply_to=reply_to)

    def running_client(self) -> Client:
        """The bot's client; ``ConnectionClosed`` when the bot is not running."""
        if self.client is None:
            raise ConnectionClosed(CloseCode.NORMAL, "the bot is not running")
        return self.client

    def community_of(self, channel: str) -> str | None:
        """The community of a channel or thread the bot knows; None for a DM."""
        if self.client is None:
            return None
        thread = self.client.discussions.known_threads.get(channel)
        if thread is not None:
            return thread.get("community")
        return self.client.community_of(channel)

    def workshop(self, channel: str) -> dict[str, Any] | None:
        """The live workshop of a workshop channel the bot serves, or None."""
        return self.client.workshops.workshop(channel) if self.client is not None else None

    def is_thread(self, channel: str) -> bool:
        return self.client is not None and channel in self.client.discussions.known_threads

    async def follow_thread(self, thread: str, *, from_start: bool = True) -> None:
        """Handle a thread's events (unless the bot does already): from its first one on
        (a new thread), or from now on."""
        if self.client is not None:
            await self._subscribe(self.client, thread, since=0 if from_start else None)

    def system_channel(self, community: str) -> str | None:
        """The community's first text channel, where the server announces joins."""
        if self.client is None:
            return None
        try:
            channels = self.client.community(community)["channels"]
        except KeyError:
            return None
        return next((c["id"] for c in channels if c.get("kind", "text") == "text"), None)

    # internals

    async def _follow(self, client: Client, event: Event) -> None:
        """Follow the bot's text channels as they come and go (with every channel), the
        threads started in them, and its DMs."""
        if event.t == "thread.created" and event.o is not None:
            # new since the bot started: everything in it is news, from offset 1
            await self._subscribe(client, event.d["thread"]["id"], since=0)
            return
        if event.t == "dm.created":
            await self._subscribe(client, event.d["channel"]["id"], since=0)
            return
        if event.o is not None or not self._every_channel:
            return
        if event.t == "channel.created" and event.d["channel"].get("kind", "text") in SERVED_KINDS:
            # new since the bot started: everything in it is news, from offset 1
            await self._subscribe(client, event.d["channel"]["id"], since=0)
        elif event.t == "community.joined":
            for channel in event.d["community"]["channels"]:
                if channel.get("kind", "text") in SERVED_KINDS:
                    await self._subscribe(client, channel["id"])
        elif event.t == "member.left" and event.d.get("user") == self.user.get("id"):
            for channel in [c for c in self.handled if client.community_of(c) is None]:
                del self.handled[channel]

    async def _subscribe(self, client: Client, channel: str, since: int | None = None) -> None:
        if channel in self.handled:
            return
        try:
            reply = await client.subscribe(channel, since=since)
        except CommandError as exc:
            log.warning("cannot follow channel %s: %s", channel, exc)
            return
        except ConnectionClosed:
            if self._stopping or client.closed is not None:
                return  # stopped meanwhile (a thread made just before the stop, say)
            raise
        self.handled[channel] = since if since is not None else reply["offset"]
        log.info("following channel %s", channel)

    async def _cancel_all(self) -> None:
        tasks = [*self._jobs, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _dispatch(self, event: Event) -> None:
        if self._stopping:
            return
        if event.o is not None:
            if event.o <= self.handled.get(event.ch, 0):
                return  # handled before a reconnect
            self.handled[event.ch] = event.o
        ctx = Context(self, event)
        if event.t == "member.joined":
            member = event.d.get("member", {})
            if member.get("bot"):
                self._bots.add(member["id"])
            if "username" in member:
                self.usernames[member["id"]] = member["username"]
        if event.t == "member.joined" and event.o is None and ctx.channel in self.handled:
            return  # the durable join line in the system channel is handled instead
        if ctx.author is not None and ctx.author.get("bot"):
            self._bots.add(ctx.author["id"])
        if _actor(event) == self.user["id"]:
            return
        for handler in self._handlers.get(event.t, ()):
            await self._spawn(handler.__name__, handler, ctx)
        if event.t != "message.created" or ctx.message is None or ctx.author is None:
            return  # commands come in new messages only: not edits, not mentions
        if self.ignore_bots and ctx.author["id"] in self._bots:
            return
        parsed = self._parse(ctx.message["text"])
        if parsed is None:
            return
        name, args = parsed
        command = self.commands.get(name)
        if command is None:
            log.debug("ignoring unknown command %r", name)
            return
        await self._spawn(f"{self.prefix}{name}", command.handler, ctx, args)

    def _parse(self, text: str) -> tuple[str, str] | None:
        if not text.startswith(self.prefix):
            return None
        rest = text[len(self.prefix) :]
        if not rest or rest[0].isspace():
            return None
        name, *args = rest.split(maxsplit=1)
        return name.lower(), args[0].strip() if args else ""

    async def _spawn(self, name: str, handler: Callable[..., Awaitable[None]], *args: Any) -> None:
        await self._slots.acquire()  # reading events waits while every slot is busy
        if self._stopping:
            self._slots.release()
            return
        task = asyncio.create_task(self._guard(name, self.handler_timeout, handler, *args))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _guard(
        self,
        name: str,
        limit: float | None,
        handler: Callable[..., Awaitable[None]],
        *args: Any,
    ) -> None:
        """Run one handler; log its failure instead of letting it end the bot."""
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                await handler(*args)
        except TimeoutError:
            if not scope.expired():
                log.exception("handler %s failed", name)
            else:
                log.error("handler %s took longer than %s s; cancelled", name, limit)
        except ConnectionClosed as exc:  # the bot is stopping: no traceback for that
            log.warning("handler %s ended with the connection: %s", name, exc)
        except Exception:
            log.exception("handler %s failed", name)

    def _channels(self, identity: dict[str, Any], wanted: Iterable[str] | None) -> list[str]:
        visible = [
            channel
            for community in identity["communities"]
            for channel in community["channels"]
            if channel.get("kind", "text") in SERVED_KINDS
        ]
        if wanted is None:
            return [channel["id"] for channel in visible]
        chosen = []
        for key in wanted:
            match = [c["id"] for c in visible if key in (c["id"], c["name"])]
            if not match:
                raise ValueError(f"no channel {key!r} among {[c['name'] for c in visible]}")
            chosen += [c for c in match if c not in chosen]
        return chosen

    async def _learn_bots(self, client: Client) -> None:
        """Note which members are bots, where the server can list members."""
        for community in client.identity["communities"]:
            try:
                reply = await client.request("community.members", {"community": community["id"]})
            except CommandError as exc:  # an older server without the command
                log.debug("cannot list members: %s", exc)
                return
            members = reply.get("members", ())
            self._bots.update(m["id"] for m in members if m.get("bot"))
            self.usernames.update((m["id"], m["username"]) for m in members if "username" in m)

    def mention(self, user: dict[str, Any]) -> str:
        """``@username`` of a user (an author ``{id, name}``), which the server takes as a
        mention; ``@name`` for a user the bot does not know."""
        username = self.usernames.get(user.get("id", ""))
        return f"@{username}" if username else mention(user)

    async def _help(self, ctx: Context, args: str) -> None:
        """List the commands, or explain one: help [command]."""
        command = self.commands.get(args.removeprefix(self.prefix).lower()) if args else None
        if command is not None:
            await ctx.send(f"{self.prefix}{command.name}: {command.help or 'no help'}")
            return
        lines = [
            f"{self.prefix}{c.name} — {c.help.splitlines()[0] if c.help else ''}".rstrip(" —")
            for c in sorted(self.commands.values(), key=lambda c: c.name)
        ]
        await ctx.send("Commands:\n" + "\n".join(lines))
