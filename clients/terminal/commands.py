"""The slash commands of ``agora chat``: one table, filled by ``@slash``.

A later feature adds its command by defining a handler here (or in a module
imported by ``clients.terminal.app``) and decorating it::

    @slash("poll", "QUESTION", "start a poll in this channel")
    async def poll(chat: Chat, arg: str) -> None:
        await chat.client.request("poll.create", {...})

A handler gets the chat and the text after the command's name, and reports
through ``chat.say``. A ``CommandError`` it lets through is shown as an error line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from clients.client import Client, CommandError, http_url
from clients.terminal.config import TokenStore
from clients.terminal.state import ChannelState, ChatState

#: How ``/who`` marks a member's presence.
PRESENCE = {"online": "●", "idle": "◐", "offline": "○"}


class Chat(Protocol):
    """What a slash command may use of the running chat."""

    client: Client
    state: ChatState

    def say(self, text: str) -> None:
        """Show a system line in the current channel."""

    async def enter(self, channel: ChannelState) -> None:
        """Make ``channel`` the current one, loading its latest history."""

    def quit(self) -> None:
        """Leave the chat with exit status 0."""


Handler = Callable[[Chat, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SlashCommand:
    name: str
    usage: str  # the arguments, e.g. "NAME"; "" for none
    help: str
    run: Handler
    #: "" for the commands ``/help`` lists; else ``/help GROUP`` lists them
    group: str = ""


COMMANDS: dict[str, SlashCommand] = {}


def slash(name: str, usage: str, help: str, group: str = "") -> Callable[[Handler], Handler]:
    """Register the decorated handler as ``/name`` (in ``group``: listed by ``/help group``)."""

    def register(run: Handler) -> Handler:
        COMMANDS[name] = SlashCommand(name, usage, help, run, group)
        return run

    return register


async def dispatch(chat: Chat, line: str) -> None:
    """Run a line that starts with ``/``."""
    name, _, arg = line[1:].partition(" ")
    command = COMMANDS.get(name.lower())
    if command is None:
        chat.say(f"unknown command /{name}: /help lists the commands")
        return
    try:
        await command.run(chat, arg.strip())
    except CommandError as exc:
        chat.say(f"/{command.name} failed: {exc.code}: {exc.message}")


@slash("help", "[GROUP]", "list the commands and keys, or a GROUP's")
async def help_(chat: Chat, arg: str) -> None:
    group = arg.strip().lower()
    groups = sorted({c.group for c in COMMANDS.values() if c.group})
    if group and group not in groups:
        chat.say(f"no commands {group!r}: /help {' or /help '.join(groups)}")
        return
    for command in COMMANDS.values():
        if command.group != group:
            continue
        usage = f"/{command.name} {command.usage}".strip()
        chat.say(f"{usage:<24} {command.help}")
    if group:
        return
    for other in groups:
        chat.say(f"{'/help ' + other:<24} the {other} commands")
    chat.say("PageUp/PageDown          scroll; at the top, PageUp loads older")
    chat.say("Alt+Up/Alt+Down          previous/next channel (Tab: the list)")
    chat.say("Ctrl+Q                   quit")
    chat.say("//text                   send a message that starts with /")


@slash("join", "NAME", "go to a channel: #name or community/name")
async def join(chat: Chat, arg: str) -> None:
    if not arg:
        chat.say("usage: /join NAME (/channels lists them)")
        return
    try:
        channel = chat.state.resolve(arg)
    except LookupError as exc:
        chat.say(str(exc.args[0]))
        return
    await chat.enter(channel)


@slash("channels", "", "list your channels, threads and DMs")
async def channels(chat: Chat, arg: str) -> None:
    for community in chat.state.communities:
        chat.say(f"{community['name']} ({community['role']}):")
        for channel in (chat.state.channels[c["id"]] for c in community["channels"]):
            chat.say(f"  #{channel.name}{_counts(chat, channel)}")
            for thread in chat.state.threads_of(channel.id):
                chat.say(f"    ↳ {thread.name}{_counts(chat, thread)}")
    dms = chat.state.dms()
    if dms:
        chat.say("Direct messages:")
        for dm in dms:
            chat.say(f"  @{dm.name}{_counts(chat, dm)}")


def _counts(chat: Chat, channel: ChannelState) -> str:
    """What ``/channels`` says after a channel's name: unread, mentions, here."""
    counts = [f"{channel.unread} unread"] if channel.unread else []
    counts += [f"{channel.mentions} for you"] if channel.mentions else []
    here = "  (here)" if channel.id == chat.state.current else ""
    return (f"  {', '.join(counts)}" if counts else "") + here


def community_of_chat(chat: Chat) -> tuple[str, str] | None:
    """The current community's id and name (in a DM, the first community's), or None
    (said so) when there is none."""
    state = chat.state
    channel = state.channel
    community = channel.community_id if channel and channel.community_id else None
    community = community or state.first_community()
    if community is None:
        chat.say("you are in no community")
        return None
    name = next(c["name"] for c in state.communities if c["id"] == community)
    return community, name


@slash("who", "", "list the members here, and who is online")
async def who(chat: Chat, arg: str) -> None:
    found = community_of_chat(chat)
    if found is None:
        return
    community, name = found
    try:
        members = await chat.client.members(community)
    except CommandError as exc:
        if exc.code == "bad_request":
            chat.say("this server cannot list members (no community.members command)")
            return
        raise
    # who is here now; presence.updated keeps it current between two /who
    here = await chat.client.presence(community)
    for member in members:
        chat.state.set_presence(member["id"], here.get(member["id"], "offline"))
    online = sum(1 for m in members if m["id"] in chat.state.presence)
    chat.say(f"{len(members)} members of {name}, {online} here (● online, ◐ idle, ○ away):")
    for member in members:
        status = chat.state.presence.get(member["id"], "offline")
        bot = " [bot]" if member.get("bot") else ""
        role = "" if member.get("role") in (None, "member") else f" ({member['role']})"
        idle = " idle" if status == "idle" else ""
        chat.say(f"  {PRESENCE[status]} {member['name']} @{member['username']}{bot}{role}{idle}")


@slash("invite", "[USES]", "make an invite (for USES people at most)")
async def invite(chat: Chat, arg: str) -> None:
    found = community_of_chat(chat)
    if found is None:
        return
    community, name = found
    if arg and not (arg.isdigit() and int(arg) > 0):
        chat.say("usage: /invite [USES], USES a number of people (default: no limit)")
        return
    made = await chat.client.create_invite(community, max_uses=int(arg) if arg else None)
    uses = f", for {made['max_uses']} people" if made["max_uses"] else ""
    chat.say(f"invite to {name}{uses}: code {made['code']}")
    chat.say(f"  {http_url(chat.client.url)}/invite/{made['code']}")


@slash("create-channel", "NAME", "make a text channel here and go there")
async def create_channel(chat: Chat, arg: str) -> None:
    if not arg:
        chat.say("usage: /create-channel NAME")
        return
    found = community_of_chat(chat)
    if found is None:
        return
    community, _ = found
    channel = await chat.client.create_channel(community, arg)
    await chat.enter(chat.state.put_channel(community, channel))
    chat.say(f"created #{channel['name']}")


@slash("logout", "", "log out: revoke this token on the server, forget it, quit")
async def logout(chat: Chat, arg: str) -> None:
    server = http_url(chat.client.url)
    await chat.client.logout()
    TokenStore().forget(server)
    chat.quit()


@slash("quit", "", "leave the chat")
async def quit_(chat: Chat, arg: str) -> None:
    chat.quit()
