"""Polls: ``poll.create``/``vote``/``close`` and their events.

Who chose what is kept in ``ballots``, never in an event: a poll's events
carry only its tallies and its number of voters. When an anonymous poll
closes, the choices are deleted and only who voted stays.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from protocol.workshop import MAX_POLLS, choices_of, options_of
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store.workshops import FORGET_CHOICES, PUT_BALLOT, Write, counted
from server.workshops.access import (
    conflict,
    driving,
    live,
    not_found,
    refused,
    room_for_one_more,
    taking_part,
    user_id,
)
from server.workshops.live import Change, Fold

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


def poll_in(state: dict[str, Any], poll_id: str) -> dict[str, Any]:
    for poll in state["polls"]:
        if poll["id"] == poll_id:
            return poll
    raise not_found("poll", poll_id)


@router.command("poll.create")
async def create(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])
    try:
        options = options_of(d["options"])
    except ValueError as exc:
        raise refused(exc) from None

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        room_for_one_more(fold.state["polls"], MAX_POLLS, "polls")
        poll = {
            "id": new_id(),
            "question": d["question"].strip(),
            "options": options,
            "multi": d["multi"],
            "anonymous": d["anonymous"],
            "tallies": [0] * len(options),
            "voters": 0,
            "closed": False,
            "by": user_id(session),
            "ts": now_ms(),
        }
        change = Change(reply={"poll": poll})
        change.event("poll.created", {"poll": poll})
        return change

    return await live(session).change(channel.id, decide)


@router.command("poll.vote")
async def vote(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await taking_part(session, d["channel"])
    me = user_id(session)

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        poll = copy.deepcopy(poll_in(fold.state, d["poll"]))
        if poll["closed"]:
            raise conflict("this poll is closed")
        try:
            choices = choices_of(d["choices"], len(poll["options"]), poll["multi"])
        except ValueError as exc:
            raise refused(exc) from None
        voted, before = await session.agora.store.ballot(poll["id"], me)
        change = Change(reply={"poll": poll, "choices": choices})
        if voted and before == choices:
            return change
        for choice in before or ():
            poll["tallies"][choice] -= 1
        for choice in choices:
            poll["tallies"][choice] += 1
        change.writes.append(Write(PUT_BALLOT, (poll["id"], me, fold.row.id, json.dumps(choices))))
        if not voted:
            poll["voters"] += 1
            change.writes.append(counted(fold.row.id, me, "votes"))
        change.event("poll.updated", {"poll": poll})
        return change

    return await live(session).change(channel.id, decide)


@router.command("poll.close")
async def close(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        poll = copy.deepcopy(poll_in(fold.state, d["poll"]))
        change = Change(reply={"poll": poll})
        if not poll["closed"]:
            closing(change, poll)
        return change

    return await live(session).change(channel.id, decide)


def closing(change: Change, poll: dict[str, Any]) -> None:
    """Close ``poll`` (a copy) in ``change``; an anonymous one forgets who chose what."""
    poll["closed"] = True
    change.event("poll.closed", {"poll": poll})
    if poll["anonymous"]:
        change.writes.append(Write(FORGET_CHOICES, (poll["id"],)))
