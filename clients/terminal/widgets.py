"""The widgets of ``agora chat``: channel list, message pane, workshop panel, message box,
status line."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from clients.terminal.state import ChannelState, ChatState, Line


class ChannelList(OptionList):
    """Communities and their channels (each followed thread under its channel), then
    direct messages, with unread counts (``@N``: mentions); selecting one enters it."""

    def show(self, state: ChatState) -> None:
        options: list[Option] = []
        for community in state.communities:
            options.append(Option(Text(community["name"], style="bold"), disabled=True))
            for entry in community["channels"]:
                channel = state.channels[entry["id"]]
                options.append(Option(_label(f" #{channel.name}", channel), id=channel.id))
                for thread in state.threads_of(channel.id):
                    options.append(Option(_label(f"   ↳ {thread.name}", thread), id=thread.id))
        dms = state.dms()
        if dms:
            options.append(Option(Text("Direct messages", style="bold"), disabled=True))
            for dm in dms:
                options.append(Option(_label(f" @{dm.name}", dm), id=dm.id))
        self.clear_options()
        self.add_options(options)
        if state.current is not None:
            with contextlib.suppress(OptionDoesNotExist):
                self.highlighted = self.get_option_index(state.current)


def _label(name: str, channel: ChannelState) -> Text:
    label = Text(name)
    if channel.unread:
        label.append(f" {channel.unread}", style="bold reverse")
    if channel.mentions:
        label.append(f" @{channel.mentions}", style="bold red")
    return label


def render_line(line: Line) -> Text:
    """A transcript line as a reader sees it: time, author, text, and what happened to it
    since (edited, deleted, reactions, pinned, a thread started from it)."""
    if line.kind == "system":
        return Text(f"— {line.text}", style="italic dim")
    when = datetime.fromtimestamp(line.ts / 1000).strftime("%H:%M") if line.ts else "--:--"
    text = Text(f"{when} ", style="dim")
    if line.reply_to:
        text.append(f"↪ {line.reply_to}\n      ", style="dim")
    text.append(line.author, style="bold")
    text.append(": ")
    if line.deleted:
        text.append("(message deleted)", style="italic dim")
        return text
    text.append(line.text, style="dim" if line.kind == "pending" else "")
    if line.edited:
        text.append(" (edited)", style="dim")
    if line.pinned:
        text.append(" [pinned]", style="yellow")
    if line.reactions:
        text.append("  " + " ".join(f"[{emoji} {count}]" for emoji, count in line.reactions))
    if line.thread:
        text.append(f"\n      ↳ thread: {line.thread}", style="cyan")
    if line.kind == "failed":
        text.append(f"\n      ✗ not sent: {line.error}", style="bold red")
    return text


class LineView(Static):
    def __init__(self, line: Line) -> None:
        super().__init__(render_line(line))
        self.rev = line.rev

    def sync(self, line: Line) -> None:
        if line.rev != self.rev:
            self.rev = line.rev
            self.update(render_line(line))


class MessagePane(VerticalScroll, can_focus=False):
    """One channel's transcript. Only what changed is mounted or redrawn.

    While the reader is at the bottom, new lines keep it there; once they
    scroll up, the view stays put until they come back down.
    """

    class NeedOlder(Message):
        """The reader is at the top and wants older messages."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._views: dict[int, LineView] = {}
        self._order: list[int] = []
        self._follow = True

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._follow = new_value >= self.max_scroll_y

    def show(self, channel: ChannelState) -> None:
        lines = channel.lines
        order = [line.uid for line in lines]
        old = self._order
        by_uid = {line.uid: line for line in lines}
        for uid, view in self._views.items():
            if uid in by_uid:
                view.sync(by_uid[uid])
        if order == old:
            return
        if old and order[: len(old)] == old:
            self._mount_lines(lines[len(old) :])
        elif old and order[-len(old) :] == old:
            self._prepend(lines[: len(order) - len(old)])
        else:
            self.remove_children()
            self._views.clear()
            self._mount_lines(lines)
            self._follow = True
        self._order = order
        if self._follow:
            self.call_after_refresh(self.scroll_end, animate=False)

    def _mount_lines(self, lines: list[Line], before: int | None = None) -> None:
        views = [LineView(line) for line in lines]
        self._views.update((line.uid, view) for line, view in zip(lines, views, strict=True))
        if views:
            self.mount_all(views, before=before)

    def _prepend(self, lines: list[Line]) -> None:
        """Older lines above: keep what the reader looks at where it is."""
        from_bottom = self.max_scroll_y - self.scroll_y
        self._mount_lines(lines, before=0)
        self.call_after_refresh(
            lambda: self.scroll_to(y=self.max_scroll_y - from_bottom, animate=False)
        )

    def page_up(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedOlder())
        else:
            self.scroll_page_up(animate=False)

    def page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedOlder())
        super()._on_mouse_scroll_up(event)


class Composer(Input):
    """The message box: Enter sends what was typed before it and starts an empty line.

    Input's own Enter is a binding, which Textual runs only once the key has
    bubbled up to the app, after the box has taken the keys queued behind it:
    lines typed ahead while the app was busy would run together. Taken here, in
    key order, each line stays a line.
    """

    async def _on_key(self, event: events.Key) -> None:
        if event.key != "enter":
            return  # Input's own handler, next in the MRO, takes it
        event.stop()
        event.prevent_default()
        text, self.value = self.value, ""
        self.post_message(self.Submitted(self, text))


class StatusLine(Static):
    STYLES: ClassVar[dict[str, str]] = {
        "connected": "● connected",
        "reconnecting": "○ reconnecting…",
        "disconnected": "✗ disconnected",
    }
    COLOURS: ClassVar[dict[str, str]] = {
        "connected": "bold green",
        "reconnecting": "bold yellow",
        "disconnected": "bold red",
    }

    def show(self, status: str, user: str, where: str, typing: str = "") -> None:
        text = Text(self.STYLES[status], style=self.COLOURS[status])
        text.append(f"  as {user}  {where}")
        if typing:
            text.append(f"  {typing}", style="italic")
        self.update(text)


class WorkshopPanel(Static):
    """A workshop channel's live workshop as text (``clients.terminal.workshop_view``):
    hidden in other channels."""

    def show(self, lines: list[str] | None) -> None:
        if lines is None:
            self.display = False
            return
        text = Text()
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            heading = not line.startswith(" ")
            text.append(line, style="bold" if heading else "")
        self.update(text)
        self.display = True
