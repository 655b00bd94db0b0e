"""The workshop slash commands of ``agora chat`` (docs/protocol.md §5.10).

Everyone: ``/workshop``, ``/hand``, ``/vote``, ``/ask``, ``/upvote``,
``/unvote``, ``/pulse``, and ``/report`` in a breakout group's room (which the
chat lists, and follows, when ``breakout.opened`` puts the user in a group).
Facilitators: ``/start``, ``/next``, ``/goto``, ``/call``, ``/lower``,
``/poll``, ``/timer``, ``/answer``, ``/end``. Each acts
on the workshop of the current channel; what it changes shows in the side panel
when the server's event comes back. Polls and questions are named by the
numbers the panel shows (``clients.terminal.workshop_view``), options from 1.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Awaitable, Callable
from typing import Any

from clients.terminal import workshop_view
from clients.terminal.commands import Chat, community_of_chat, slash
from clients.terminal.state import ChannelState
from clients.workshops import Followed
from protocol.workshop import PULSE_KINDS

_ITEM = re.compile(r"^(?P<title>.+?):(?P<minutes>\d{1,4})$")
_DURATION = re.compile(r"^(?:(?P<h>\d{1,2})h)?(?:(?P<m>\d{1,4})m)?(?:(?P<s>\d{1,5})s?)?$")


def seconds_of(text: str) -> int | None:
    """Seconds in ``90``, ``90s``, ``5m``, ``1m30s`` or ``1h``; None if it is not one."""
    found = _DURATION.match(text)
    if not text or found is None:
        return None
    h, m, s = (int(found[k] or 0) for k in "hms")
    return h * 3600 + m * 60 + s or None


def _room(chat: Chat, *, live: bool = True) -> tuple[ChannelState, Followed] | None:
    """The current workshop channel and what the client keeps of it (with ``live``, only
    while a workshop is live there), or None, said why."""
    channel = chat.state.channel
    if channel is None or channel.kind != "workshop":
        chat.say("this is not a workshop channel (/channels lists them)")
        return None
    followed = chat.client.workshops.get(channel.id)
    if followed is None:
        chat.say("not following this workshop yet: try again in a moment")
        return None
    if live and followed.workshop is None:
        chat.say("no workshop is live here")
        return None
    return channel, followed


#: A workshop command: it gets the current workshop channel and what the client keeps of it.
RoomHandler = Callable[[Chat, str, ChannelState, Followed], Awaitable[None]]


def _command(
    name: str, usage: str, help: str, *, live: bool = True
) -> Callable[[RoomHandler], RoomHandler]:
    """Register the decorated handler as ``/name`` in the workshop group; it runs only in a
    workshop channel (with ``live``, only while a workshop is live there: see ``_room``)."""

    def register(run: RoomHandler) -> RoomHandler:
        async def in_room(chat: Chat, arg: str) -> None:
            room = _room(chat, live=live)
            if room is not None:
                await run(chat, arg, *room)

        slash(name, usage, help, group="workshop")(in_room)
        return run

    return register


def _number(arg: str, count: int) -> int | None:
    """A 1-based number among ``count`` as a 0-based index, or None."""
    if arg.isdigit() and 1 <= int(arg) <= count:
        return int(arg) - 1
    return None


def _index(chat: Chat, arg: str, count: int, usage: str) -> int | None:
    """``_number``, or None once ``usage`` is said."""
    index = _number(arg, count)
    if index is None:
        chat.say(f"usage: {usage}")
    return index


def _words(chat: Chat, arg: str, usage: str) -> list[str] | None:
    try:
        return shlex.split(arg)
    except ValueError:
        chat.say(f"usage: {usage} (a quote is not closed)")
        return None


async def _member(chat: Chat, arg: str) -> dict[str, Any] | None:
    """The member of the current community named by username or display name."""
    wanted = arg.removeprefix("@").casefold()
    found = community_of_chat(chat)
    if found is None:
        return None
    members = await chat.client.members(found[0])
    chat.state.learn_names(members)
    matches = [m for m in members if wanted in (m["username"].casefold(), m["name"].casefold())]
    if len(matches) != 1:
        chat.say(f"no member {arg!r} here" if not matches else f"{arg!r} names several members")
        return None
    return matches[0]


# everyone


@_command("workshop", "", "show the workshop of this channel", live=False)
async def workshop(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    me = chat.state.user["id"]
    now = chat.client.workshops.server_now_ms()
    for line in workshop_view.everything(followed, chat.state.names, me, now):
        chat.say(line)


@_command("hand", "[up|down]", "raise your hand, or lower it")
async def hand(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    if arg not in ("", "up", "down"):
        chat.say("usage: /hand (raise or lower), /hand up, /hand down")
        return
    me = chat.state.user["id"]
    raised = followed.place_in_queue(me) is not None
    if arg == "down" or (arg == "" and raised):
        await chat.client.hand_lower(channel.id)
        chat.say("you lowered your hand")
    else:
        await chat.client.hand_raise(channel.id)
        chat.say("you raised your hand")


@_command("vote", "POLL CHOICE…", "vote in a poll: /vote 1 2 (poll 1, option 2)")
async def vote(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    assert followed.workshop is not None
    polls = followed.workshop["polls"]
    poll_arg, *choice_args = arg.split() or [""]
    poll_index = _number(poll_arg, len(polls))
    if poll_index is None or not choice_args:
        chat.say("usage: /vote POLL CHOICE… (numbers from the panel, e.g. /vote 1 2)")
        return
    poll = polls[poll_index]
    choices = [_number(c, len(poll["options"])) for c in choice_args]
    if None in choices:
        chat.say(f"poll {poll_index + 1} has options 1 to {len(poll['options'])}")
        return
    voted = await chat.client.poll_vote(
        channel.id, poll["id"], [c for c in choices if c is not None]
    )
    chosen = ", ".join(voted["options"][c] for c in followed.ballot(poll["id"]) or [])
    chat.say(f"you voted in poll {poll_index + 1}: {chosen}")


@_command("ask", "TEXT", "ask the facilitator a question")
async def ask(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    if not arg:
        chat.say("usage: /ask TEXT")
        return
    await chat.client.question_ask(channel.id, arg)
    chat.say("you asked a question (others may /upvote it)")


async def _upvote(
    chat: Chat, arg: str, channel: ChannelState, followed: Followed, up: bool
) -> None:
    assert followed.workshop is not None
    numbered = workshop_view.questions_by_number(followed.workshop)
    usage = f"/{'upvote' if up else 'unvote'} N (a question's number in the panel)"
    index = _index(chat, arg, len(numbered), usage)
    if index is None:
        return
    question = numbered[index]
    if up:
        await chat.client.question_upvote(channel.id, question["id"])
        chat.say(f"you upvoted question {index + 1}")
    else:
        await chat.client.question_unvote(channel.id, question["id"])
        chat.say(f"you took back your upvote of question {index + 1}")


@_command("upvote", "N", "upvote a question")
async def upvote(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    await _upvote(chat, arg, channel, followed, True)


@_command("unvote", "N", "take back your upvote")
async def unvote(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    await _upvote(chat, arg, channel, followed, False)


@_command("pulse", "KIND", "tell the facilitator: agree, confused, slower or faster")
async def pulse(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    if arg not in PULSE_KINDS:
        chat.say(f"usage: /pulse {'|'.join(PULSE_KINDS)}")
        return
    await chat.client.pulse_send(channel.id, arg)


# facilitators


@_command("start", '"TITLE" [ITEM[:MIN]…]', "start a workshop here, with its agenda", live=False)
async def start(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    usage = '/start "Title" "Intro:5" Discussion "Wrap-up:10" (an item\'s :N its minutes)'
    words = _words(chat, arg, usage)
    if words is None:
        return
    if not words:
        chat.say(f"usage: {usage}")
        return
    title, *items = words
    agenda: list[dict[str, Any]] = []
    for item in items:
        timed = _ITEM.match(item)
        if timed:
            agenda.append({"title": timed["title"], "minutes": int(timed["minutes"])})
        else:
            agenda.append({"title": item})
    await chat.client.workshop_start(channel.id, title, agenda)


@_command("next", "", "move to the next agenda item")
async def next_(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    await chat.client.agenda_next(channel.id)


@_command("goto", "N", "move to agenda item N")
async def goto(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    assert followed.workshop is not None
    index = _index(chat, arg, len(followed.workshop["agenda"]), "/goto N (an agenda item's number)")
    if index is not None:
        await chat.client.agenda_goto(channel.id, index)


@_command("call", "[USER]", "give the floor to the next hand, or to USER")
async def call(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    user = None
    if arg:
        member = await _member(chat, arg)
        if member is None:
            return
        user = member["id"]
    await chat.client.hand_call(channel.id, user)


@_command("lower", "USER|all", "lower someone's hand, or every hand")
async def lower(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    if not arg:
        chat.say("usage: /lower USER, or /lower all (your own: /hand down)")
        return
    if arg == "all":
        await chat.client.hand_lower(channel.id, all=True)
        return
    member = await _member(chat, arg)
    if member is not None:
        await chat.client.hand_lower(channel.id, user=member["id"])


@_command("poll", '"QUESTION" A B…|close N', "start a poll (or close poll N)")
async def poll(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    usage = '/poll "Which day?" Monday Tuesday, or /poll close N'
    words = _words(chat, arg, usage)
    if words is None:
        return
    assert followed.workshop is not None
    polls = followed.workshop["polls"]
    if len(words) == 2 and words[0] == "close":
        index = _index(chat, words[1], len(polls), "/poll close N (a poll's number in the panel)")
        if index is not None:
            await chat.client.poll_close(channel.id, polls[index]["id"])
        return
    if len(words) < 3:
        chat.say(f"usage: {usage}")
        return
    await chat.client.poll_create(channel.id, words[0], words[1:])


@_command("timer", "DURATION [LABEL]|+DURATION|cancel", "start, extend or cancel the timer")
async def timer(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    usage = "/timer 60 [LABEL] (or 5m, 1m30s), /timer +60, /timer cancel"
    when, _, label = arg.partition(" ")
    if when == "cancel":
        await chat.client.timer_cancel(channel.id)
        return
    extend = when.startswith("+")
    when = when.removeprefix("+")
    seconds = seconds_of(when)
    if not seconds:
        chat.say(f"usage: {usage}")
        return
    if extend:
        await chat.client.timer_extend(channel.id, seconds)
        chat.say(f"the timer has {seconds} s more")
    else:
        await chat.client.timer_start(channel.id, seconds, label=label.strip() or None)


@_command("answer", "N [TEXT]", "mark question N answered")
async def answer(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    assert followed.workshop is not None
    number, _, text = arg.partition(" ")
    numbered = workshop_view.questions_by_number(followed.workshop)
    index = _index(
        chat, number, len(numbered), "/answer N [TEXT] (a question's number in the panel)"
    )
    if index is not None:
        await chat.client.question_answer(channel.id, numbered[index]["id"], text.strip() or None)


@slash("report", "TEXT", "report your breakout group's work (in its room)", group="workshop")
async def report(chat: Chat, arg: str) -> None:
    channel = chat.state.channel
    if channel is None or channel.kind != "breakout":
        chat.say("report from your breakout group's room (/channels lists it)")
        return
    if not arg:
        chat.say("usage: /report TEXT")
        return
    await chat.client.breakout_report(channel.id, arg)
    chat.say("reported to the main room")


@_command("end", "", "end the workshop and write its recap")
async def end(chat: Chat, arg: str, channel: ChannelState, followed: Followed) -> None:
    await chat.client.workshop_end(channel.id)
