"""The discussion slash commands of ``agora chat``: threads, edits, reactions, search,
pins, resources, DMs.

Imported by ``clients.terminal.app``; each ``@slash`` adds its command to the one
table in ``clients.terminal.commands`` (and so to ``/help``).
"""

from __future__ import annotations

from typing import Any

from clients.terminal.commands import Chat, community_of_chat, slash
from clients.terminal.state import ChannelState

#: Results ``/search`` shows.
SEARCH_RESULTS = 10
#: Characters of a thread title taken from a message's text.
TITLE_CHARS = 60


def _here(chat: Chat) -> ChannelState | None:
    channel = chat.state.channel
    if channel is None:
        chat.say("join a channel first (/channels lists them)")
    return channel


def _title_from(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "…"


@slash("thread", "[TITLE]", "start a thread on the last message")
async def thread(chat: Chat, arg: str) -> None:
    channel = _here(chat)
    if channel is None:
        return
    if channel.kind in ("thread", "dm"):
        chat.say(f"no threads in a {'thread' if channel.kind == 'thread' else 'DM'}")
        return
    last = chat.state.last_message(channel)
    if last is None and not arg:
        chat.say("usage: /thread TITLE (there is no message here to start from)")
        return
    title = (arg or _title_from(last.text if last else ""))[:200]
    if last is not None:
        made = await chat.client.thread_create(channel.id, title, message=last.id)
    else:
        text = title if channel.kind == "forum" else None  # a forum post needs its text
        made = await chat.client.thread_create(channel.id, title, text=text)
    opened = chat.state.add_thread(made)
    await chat.enter(opened)
    chat.say(f"thread '{made['title']}' in #{channel.name}: what you type now goes here")


@slash("threads", "", "list the threads of this channel")
async def threads(chat: Chat, arg: str) -> None:
    channel = _here(chat)
    if channel is None:
        return
    parent = chat.state.channels.get(channel.parent or "") if channel.kind == "thread" else channel
    if parent is None or parent.kind == "dm":
        chat.say("a DM has no threads")
        return
    page = await chat.client.thread_list(parent.id)
    listed: list[dict[str, Any]] = [summary["thread"] for summary in page["threads"]]
    chat.state.listed_threads = listed
    if not listed:
        chat.say(f"no threads in #{parent.name} yet (/thread TITLE starts one)")
        return
    chat.say(f"threads in #{parent.name} (/open N goes to one):")
    for n, summary in enumerate(page["threads"], 1):
        replies = summary["replies"]
        resolved = ", resolved" if summary["resolved"] else ""
        plural = "reply" if replies == 1 else "replies"
        chat.say(f"  {n}. {summary['thread']['title']} ({replies} {plural}{resolved})")


@slash("open", "N|ID", "go to a thread /threads listed")
async def open_(chat: Chat, arg: str) -> None:
    listed = chat.state.listed_threads
    chosen: dict[str, Any] | None = None
    if arg.isdigit() and 1 <= int(arg) <= len(listed):
        chosen = listed[int(arg) - 1]
    else:
        chosen = next((t for t in listed if t["id"] == arg), None)
    if chosen is None:
        known = chat.state.channels.get(arg)
        if known is not None and known.kind == "thread":
            await chat.enter(known)
            return
        chat.say(f"no thread {arg!r}: /threads lists them")
        return
    opened = chat.state.add_thread(chosen)
    await chat.enter(opened)


@slash("edit", "TEXT", "edit your last message here")
async def edit(chat: Chat, arg: str) -> None:
    channel = _here(chat)
    if channel is None:
        return
    if not arg:
        chat.say("usage: /edit TEXT")
        return
    mine = chat.state.last_message(channel, mine=True)
    if mine is None or mine.id is None:
        chat.say("you have no message here to edit")
        return
    await chat.client.edit(channel.id, mine.id, arg)


@slash("react", "EMOJI", "react to the last message here")
async def react(chat: Chat, arg: str) -> None:
    channel = _here(chat)
    if channel is None:
        return
    if not arg or " " in arg:
        chat.say("usage: /react EMOJI, e.g. /react 👍")
        return
    last = chat.state.last_message(channel)
    if last is None or last.id is None:
        chat.say("there is no message here to react to")
        return
    await chat.client.react(channel.id, last.id, arg)


@slash("search", "WORDS", "find messages of this community")
async def search(chat: Chat, arg: str) -> None:
    if not arg:
        chat.say("usage: /search WORDS")
        return
    found = community_of_chat(chat)
    if found is None:
        return
    community, name = found
    page = await chat.client.search(community, arg, limit=SEARCH_RESULTS)
    messages = page["messages"]
    if not messages:
        chat.say(f"nothing in {name} has every word of '{arg}'")
        return
    more = " (the newest)" if "next" in page else ""
    chat.say(f"{len(messages)} found in {name} for '{arg}'{more}:")
    for message in messages:
        where = chat.state.channels.get(message["channel"])
        label = where.label if where is not None else "a thread"
        chat.say(f"  {label} {message['author']['name']}: {message['text']}")


@slash("pins", "", "list the pinned messages here")
async def pins(chat: Chat, arg: str) -> None:
    channel = _here(chat)
    if channel is None:
        return
    pinned = await chat.client.pins(channel.id)
    if not pinned:
        chat.say(f"nothing is pinned in {channel.label}")
        return
    chat.say(f"pinned in {channel.label}:")
    for message in pinned:
        chat.say(f"  {message['author']['name']}: {message['text']}")


@slash("resources", "[WORDS]", "the community's shelf of links and notes")
async def resources(chat: Chat, arg: str) -> None:
    found = community_of_chat(chat)
    if found is None:
        return
    community, name = found
    page = await chat.client.resource_list(community, query=arg or None, limit=SEARCH_RESULTS)
    shelf, with_words = page["resources"], f" with '{arg}'" if arg else ""
    if not shelf:
        chat.say(f"no resources in {name}{with_words}")
        return
    chat.say(f"resources of {name}{with_words}, newest first:")
    for resource in shelf:
        url = resource.get("url")
        link = f" {url}" if url and url != resource["title"] else ""  # shared links: titled so
        shared = f" (shared {resource['shares']}x)" if resource["shares"] > 1 else ""
        chat.say(f"  {resource['title']}{link}{shared}")


@slash("dm", "USER", "talk privately with a member")
async def dm(chat: Chat, arg: str) -> None:
    wanted = arg.removeprefix("@").casefold()
    if not wanted:
        chat.say("usage: /dm USER (a username or display name; /who lists them)")
        return
    members: dict[str, dict[str, Any]] = {}
    for community in chat.state.communities:
        for member in await chat.client.members(community["id"]):
            members[member["id"]] = member
    chat.state.learn_names(list(members.values()))
    matches = [
        m
        for m in members.values()
        if wanted in (m["username"].casefold(), m["name"].casefold())
        and m["id"] != chat.state.user["id"]
    ]
    if not matches:
        chat.say(f"no member {arg!r} (/who lists them)")
        return
    if len(matches) > 1:
        chat.say(f"{arg!r} names several members: say the username")
        return
    channel = await chat.client.dm_open(matches[0]["id"])
    opened = chat.state.add_dm(channel)
    await chat.enter(opened)
