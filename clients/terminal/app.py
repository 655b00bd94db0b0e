"""The Textual application of ``agora chat``.

It subscribes to every channel the user can see (for live messages and unread
counts), loads a channel's latest page of history when it is first entered and
older pages on PageUp at the top, echoes what the user sends at once and
reconciles it by nonce. Reconnecting and resuming is the ``Client``'s job; this
app only shows it on the status line. Nothing the server answers ends the app:
errors become lines in the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.driver import Driver
from textual.widgets import Input, OptionList

from clients.client import AgoraClientError, Client, CommandError, ConnectionClosed, Gap
from clients.terminal import (  # noqa: F401 - the commands modules register their slash commands
    discussion_commands,
    workshop_commands,
    workshop_view,
)
from clients.terminal.commands import dispatch
from clients.terminal.state import ChannelState, ChatState, Line
from clients.terminal.widgets import (
    ChannelList,
    Composer,
    MessagePane,
    StatusLine,
    WorkshopPanel,
)
from protocol.workshop import WORKSHOP_EVENTS

log = logging.getLogger("agora.chat")

#: Events without an offset that change what the chat shows beside messages.
COMMUNITY_AND_USER_EVENTS = frozenset(
    {
        "channel.created",
        "channel.updated",
        "community.joined",
        "member.left",
        "presence.updated",
        "mention",
        "read.updated",
        "dm.created",
        "thread.activity",
        "thread.followed",
    }
)
#: Seconds between a new message in the current channel and marking it read.
MARK_READ_DELAY = 0.5
#: Seconds a "typing" line stays without another ``typing.started`` (the server
#: forwards one at most every 3 s while someone types).
TYPING_SHOWN = 5.0
#: Seconds between two ``typing.start`` this app sends in one channel.
TYPING_EVERY = 3.0
#: Messages per history page (the server allows up to 100).
PAGE = 50
#: Pages read to fill one gap after a reconnect; beyond that, PageUp reads on.
MAX_GAP_PAGES = 10
#: Times a command answered ``rate_limited`` is sent again (a message with its nonce).
RATE_LIMIT_RETRIES = 3
#: Kinds of channel the chat follows as soon as they are made (threads and DMs come otherwise).
FOLLOWED_KINDS = ("text", "workshop")

T = TypeVar("T")


class ChatApp(App[None]):
    CSS = """
    #main { height: 1fr; }
    ChannelList { width: 26; height: 1fr; border: round $primary-background; }
    MessagePane { height: 1fr; border: round $primary-background; padding: 0 1; }
    WorkshopPanel {
        width: 36; height: 1fr; border: round $primary-background; padding: 0 1; display: none;
    }
    #input { height: 3; }
    StatusLine { height: 1; background: $panel; padding: 0 1; }
    """
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("pageup", "page_up", "older", priority=True, show=False),
        Binding("pagedown", "page_down", "newer", priority=True, show=False),
        Binding("alt+up", "cycle(-1)", "previous channel", priority=True, show=False),
        Binding("alt+down", "cycle(1)", "next channel", priority=True, show=False),
    ]

    def __init__(self, client: Client, channel: str | None = None) -> None:
        super().__init__()
        self.client = client
        self.state = ChatState(client.identity, client.workshops)
        self.first_channel = channel
        self.subscribed: dict[str, asyncio.Future[None]] = {}
        self.paging: set[str] = set()
        #: channels whose read marker is about to move
        self.marking: set[str] = set()
        #: channel -> when this app last said the user is typing there
        self.typed: dict[str, float] = {}
        self.typing_shown = ""
        self.online = True
        self.ended: ConnectionClosed | None = None
        #: the panel's lines as last drawn (a timer redraws it each second)
        self.workshop_shown: list[str] | None = None
        self.learning_names = False

    def get_driver_class(self) -> type[Driver]:
        """Textual's, but on Linux and macOS ``ChatDriver``: a ``SIGCONT`` after a
        ``SIGSTOP`` must not start a second input thread."""
        driver = super().get_driver_class()
        if sys.platform == "win32":
            return driver
        from textual.drivers.linux_driver import LinuxDriver  # no termios on Windows

        from clients.terminal.driver import ChatDriver

        return ChatDriver if driver is LinuxDriver else driver

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ChannelList(id="channels")
            yield MessagePane(id="messages")
            yield WorkshopPanel(id="workshop")
        yield Composer(placeholder="message, or /help", id="input")
        yield StatusLine(id="status")

    async def on_mount(self) -> None:
        self.query_one(Input).focus()
        self.set_interval(0.2, self._poll_connection)
        self.set_interval(1.0, self._show_workshop)
        self._background(self._read_events())
        self._background(self._start())
        self._show_status()

    # what slash commands use (clients.terminal.commands.Chat)

    def say(self, text: str) -> None:
        if self.state.system(text) is not None:
            self._redraw()

    async def enter(self, channel: ChannelState) -> None:
        self.state.enter(channel)
        self._redraw(channels=True)
        if not channel.loaded:
            channel.loaded = True
            await self._subscribe(channel)
            await self._load_page(channel, before=None)
        self._show_workshop()
        self._mark_read_soon(channel, delay=0)

    def follow(self, channel: ChannelState) -> None:
        """Show a new thread or DM in the list and hear its messages from its start."""
        self._background(self._subscribe(channel, since=0))
        self._redraw(channels=True)

    def quit(self) -> None:
        self.exit()

    # startup and events

    async def _start(self) -> None:
        first = self.state.default_channel()
        if self.first_channel:
            try:
                first = self.state.resolve(self.first_channel)
            except LookupError as exc:
                self.say(str(exc.args[0]))
        if first is None:
            self.say("you are in no channel yet")
        else:
            await self.enter(first)
        for channel in list(self.state.channels.values()):
            await self._subscribe(channel)
        if self.state.dms() or any(c.kind == "workshop" for c in self.state.channels.values()):
            await self._learn_names()

    async def _learn_names(self) -> None:
        """Members' names, for the DMs' names and the workshop panel."""
        self.learning_names = True
        try:
            for community in list(self.state.communities):
                try:
                    self.state.learn_names(await self.client.members(community["id"]))
                except (CommandError, AgoraClientError) as exc:
                    log.info("cannot list the members of %s: %s", community["name"], exc)
        finally:
            self.learning_names = False
        self.workshop_shown = None
        self._redraw(channels=True)

    async def _subscribe(self, channel: ChannelState, since: int | None = None) -> None:
        """Subscribe once (from offset ``since`` on, if given); later callers wait for the
        first one."""
        done = self.subscribed.get(channel.id)
        if done is None:
            done = self.subscribed[channel.id] = asyncio.get_running_loop().create_future()
            try:
                await self._patiently(
                    lambda: self.client.subscribe(channel.id, since=since), channel
                )
            except (CommandError, TimeoutError, AgoraClientError) as exc:
                self.state.system(f"cannot follow #{channel.name}: {exc}", channel)
                self._changed(channel)
            else:
                if channel.kind == "workshop":
                    self._join_breakout(channel.id)
            finally:
                done.set_result(None)
        await done

    async def _read_events(self) -> None:
        while True:
            try:
                item = await self.client.next_event(timeout=3600)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                self.ended = exc
                self.say(f"disconnected for good ({exc}); restart agora chat to reconnect")
                self._show_status()
                return
            if isinstance(item, Gap):
                self._background(self._repair(item))
                continue
            if item.o is None and item.t in COMMUNITY_AND_USER_EVENTS:
                self._community_event(item.t, item.ch, item.d)
                continue
            channel = self.state.channels.get(item.ch)
            if item.t == "typing.started" and channel is not None:
                name = item.d.get("name") or "someone"
                channel.typing[item.d.get("user", name)] = (name, self.now() + TYPING_SHOWN)
                self._show_status()
                continue
            if item.t == "message.created" and channel is not None:  # they typed it: done
                channel.typing.pop(item.d["message"]["author"]["id"], None)
            if channel is not None and self.state.add_event(item.t, item.ch, item.d, item.o):
                self._changed(channel)
                if item.t == "message.created" and channel.id == self.state.current:
                    self._mark_read_soon(channel)
            if item.t == "breakout.opened":
                self._join_breakout(item.ch)
            if item.t in WORKSHOP_EVENTS and item.ch == self.state.current:
                self._learn_names_of(item.ch)
                self._show_workshop()

    def _community_event(self, t: str, ch: str, d: dict[str, Any]) -> None:
        """Keep the channel list and presence current (``ch``: a community, or our user)."""
        state = self.state
        if t in ("channel.created", "channel.updated") and state.knows_community(ch):
            channel = state.put_channel(ch, d["channel"])
            if t == "channel.created" and d["channel"].get("kind", "text") in FOLLOWED_KINDS:
                self._background(self._subscribe(channel))
            self._redraw(channels=True)
        elif t == "community.joined":
            for channel in state.add_community(d["community"]):
                self._background(self._subscribe(channel))
            self._redraw(channels=True)
        elif t == "member.left" and d.get("user") == state.user["id"]:
            name = state.remove_community(ch)
            if name is None:
                return
            if state.current is None and (first := state.default_channel()) is not None:
                state.enter(first)
                self._background(self.enter(first))
            self.say(f"you are no longer a member of {name}")
            self._redraw(channels=True)
        elif t == "presence.updated":
            state.set_presence(d["user"], d["status"])
        elif t == "mention":
            if state.mention(d["message"]) is not None:
                self._redraw(channels=True)
        elif t == "read.updated":
            if state.read(d["channel"], d["o"]) is not None:
                self._redraw(channels=True)
        elif t == "dm.created" and d["channel"]["id"] not in state.channels:
            self.follow(state.add_dm(d["channel"]))
            self._background(self._learn_names())
        elif t == "thread.followed" and d["following"] and d["thread"]["id"] not in state.channels:
            # followed from elsewhere (another session): show it from now on
            thread = state.add_thread(d["thread"])
            self._background(self._subscribe(thread))
            self._redraw(channels=True)
        elif t == "thread.activity" and d["thread"]["id"] not in state.channels:
            thread = state.add_thread(d["thread"])
            thread.unread += 1
            self._background(self._subscribe(thread))
            self._redraw(channels=True)

    def _mark_read_soon(self, channel: ChannelState, delay: float = MARK_READ_DELAY) -> None:
        """Move the server's read marker to what the reader sees here, after ``delay``
        seconds (a burst of messages moves it once)."""
        if channel.id in self.marking:
            return
        self.marking.add(channel.id)

        async def mark() -> None:
            wait = delay
            try:
                while channel.id == self.state.current and channel.newest() > channel.read_o:
                    await asyncio.sleep(wait)
                    wait = MARK_READ_DELAY
                    o = channel.newest()
                    try:
                        await self._patiently(
                            lambda o=o: self.client.mark_read(channel.id, o), channel
                        )
                    except (CommandError, TimeoutError, AgoraClientError) as exc:
                        log.info("cannot mark #%s read: %s", channel.name, exc)
                        return
                    channel.read_o = max(channel.read_o, o)
            finally:
                self.marking.discard(channel.id)

        self._background(mark())

    async def _repair(self, gap: Gap) -> None:
        """Events the server could not replay after a reconnect: read them from history."""
        channel = self.state.channels.get(gap.channel)
        if channel is None or not channel.loaded:
            return  # entering the channel loads its latest page anyway
        log.info(
            "reading #%s %d..%d from history after a reconnect", channel.name, gap.after, gap.until
        )
        before = gap.until + 1
        for _ in range(MAX_GAP_PAGES):
            events = await self._history(channel, before)
            if not events:
                return
            before = events[0]["o"]
            if before <= gap.after + 1:
                return
        self.state.system("older messages from the time away were too many to load", channel)
        self._changed(channel)

    async def _load_page(self, channel: ChannelState, before: int | None) -> None:
        if channel.id in self.paging:
            return
        self.paging.add(channel.id)
        try:
            events = await self._history(channel, before)
            if len(events) < PAGE:
                channel.complete = True
        finally:
            self.paging.discard(channel.id)

    async def _history(self, channel: ChannelState, before: int | None) -> list[dict[str, Any]]:
        try:
            d: dict[str, Any] = {"channel": channel.id, "limit": PAGE}
            if before is not None:
                d["before"] = before
            reply = await self._patiently(lambda: self.client.request("history", d), channel)
            events = reply["events"]
        except (CommandError, TimeoutError, AgoraClientError) as exc:
            self.state.system(f"cannot read the history of #{channel.name}: {exc}", channel)
            self._changed(channel)
            return []
        if self.state.add_history(channel, events):
            self._changed(channel)
        return events

    # sending

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value  # the Composer has emptied the box already
        if not text.strip():
            return
        if text.startswith("/") and not text.startswith("//"):
            self._background(dispatch(self, text))
            return
        channel = self.state.channel
        if channel is None:
            self.say("join a channel first (/channels lists them)")
            return
        line = self.state.add_pending(channel, text.removeprefix("/"), secrets.token_hex(8))
        self._changed(channel)
        self._background(self._send(channel, line))

    async def _send(self, channel: ChannelState, line: Line) -> None:
        assert line.nonce is not None
        nonce = line.nonce
        try:
            message = await self._patiently(
                lambda: self.client.send_message(channel.id, line.text, nonce=nonce), channel
            )
        except CommandError as exc:
            self.state.fail(line, f"{exc.code}: {exc.message}")
        except (TimeoutError, AgoraClientError) as exc:
            self.state.fail(line, str(exc) or "no answer from the server")
        else:
            self.state.confirm(channel, message)
        self._changed(channel)

    async def _patiently(self, command: Callable[[], Awaitable[T]], channel: ChannelState) -> T:
        """Run a command, saying so and sending it again when it is ``rate_limited``."""
        for attempt in range(RATE_LIMIT_RETRIES):
            try:
                return await command()
            except CommandError as exc:
                if exc.code != "rate_limited":
                    raise
                wait = (exc.retry_after_ms or 1000) / 1000
                if channel.id == self.state.current:  # said where the reader is, not everywhere
                    self.say(f"rate limited: trying again in {wait:.1f} s")
                await asyncio.sleep(wait * (1 + attempt))
        return await command()

    # keys and the channel list

    def action_page_up(self) -> None:
        self.query_one(MessagePane).page_up()

    def action_page_down(self) -> None:
        self.query_one(MessagePane).page_down()

    def action_cycle(self, step: int) -> None:
        channels = list(self.state.channels.values())
        if not channels:
            return
        current = self.state.channel
        index = channels.index(current) + step if current in channels else 0
        self._background(self.enter(channels[index % len(channels)]))

    def on_message_pane_need_older(self, _: MessagePane.NeedOlder) -> None:
        channel = self.state.channel
        if channel is not None and channel.loaded and not channel.complete:
            self._background(self._load_page(channel, before=channel.oldest()))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        channel = self.state.channels.get(event.option_id or "")
        if channel is not None:
            self._background(self.enter(channel))
        self.query_one(Input).focus()

    # drawing

    def _changed(self, channel: ChannelState) -> None:
        if channel.id == self.state.current:
            self._redraw()
        else:
            self.query_one(ChannelList).show(self.state)

    def _redraw(self, *, channels: bool = False) -> None:
        channel = self.state.channel
        pane = self.query_one(MessagePane)
        if channel is not None:
            pane.border_title = self._where(channel)
            pane.show(channel)
        if channels:
            self.query_one(ChannelList).show(self.state)
            self._show_status()
        self._show_workshop()

    def _show_workshop(self) -> None:
        """The panel of the current channel's live workshop, drawn again when it changed
        (or its timer ticked); hidden when no workshop is live there."""
        channel = self.state.channel
        followed = self.client.workshops.get(channel.id) if channel is not None else None
        lines = None
        if channel is not None and channel.kind == "workshop" and followed and followed.live:
            me = self.state.user["id"]
            now = self.client.workshops.server_now_ms()
            lines = workshop_view.panel(followed, self.state.names, me, now)
        if lines != self.workshop_shown:
            self.workshop_shown = lines
            self.query_one(WorkshopPanel).show(lines)

    def _join_breakout(self, channel_id: str) -> None:
        """List and follow the user's group of the breakout open in a workshop channel."""
        parent = self.state.channels.get(channel_id)
        workshop = self.client.workshops.workshop(channel_id)
        breakout = workshop.get("breakout") if workshop is not None else None
        if parent is None or breakout is None:
            return
        me = self.state.user["id"]
        for group in breakout["groups"]:
            if me in group.get("members", []) and group["channel"] not in self.state.channels:
                room = self.state.add_breakout(parent, group)
                self.state.system(f"you are in {group['name']}: /join {room.name}", parent)
                self._changed(parent)
                self._background(self._subscribe(room))
                self._redraw(channels=True)

    def _learn_names_of(self, channel_id: str) -> None:
        """Learn the members' names again when the workshop names someone unknown."""
        workshop = self.client.workshops.workshop(channel_id)
        if workshop is None or self.learning_names:
            return
        hands = workshop["hands"]
        users = [h["user"] for h in hands["queue"]] + [hands.get("speaking")]
        if any(u is not None and u not in self.state.names for u in users):
            self.learning_names = True
            self._background(self._learn_names())

    def _where(self, channel: ChannelState) -> str:
        """What the pane's title says of a channel: its name and where it is."""
        if channel.kind == "dm":
            return f"@{channel.name} · direct message"
        if channel.kind == "thread":
            parent = self.state.channels.get(channel.parent or "")
            inside = f" in #{parent.name}" if parent else ""
            return f"thread {channel.name}{inside} · {channel.community}"
        return f"#{channel.name} · {channel.community}"

    def _poll_connection(self) -> None:
        channel = self.state.channel
        typing = channel.typing_line(self.now()) if channel else ""
        if self.client.connected != self.online or typing != self.typing_shown:
            self.online = self.client.connected
            self._show_status()

    def _show_status(self) -> None:
        channel = self.state.channel
        where = self._where(channel) if channel else ""
        status = "disconnected" if self.ended else "connected" if self.online else "reconnecting"
        self.typing_shown = channel.typing_line(self.now()) if channel else ""
        self.query_one(StatusLine).show(
            status, self.state.user["username"], where, self.typing_shown
        )

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Typing a message (not a command) tells the channel, at most every 3 s."""
        channel = self.state.channel
        if channel is None or not event.value.strip() or event.value.startswith("/"):
            return
        if self.now() - self.typed.get(channel.id, -TYPING_EVERY) >= TYPING_EVERY:
            self.typed[channel.id] = self.now()
            self._background(self.client.typing(channel.id))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the UI; a failure becomes a line, never the end of the app."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.exception("chat task failed")
                with contextlib.suppress(Exception):
                    self.say(f"error: {exc}")

        self.run_worker(guarded(), exit_on_error=False)
