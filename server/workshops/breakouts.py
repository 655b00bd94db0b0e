"""Breakout groups: ``breakout.open``/``broadcast``/``report``/``close`` and their events.

Each group talks in a channel of kind ``breakout`` under the workshop channel,
readable only by its members and those who run workshops (see
``domain.channels.readable_channel``); ``identify`` never lists it.
"""

from __future__ import annotations

import random
import secrets
from typing import TYPE_CHECKING, Any

from protocol.workshop import MAX_REPORTS, assignment_of
from server.domain.channels import readable_channel
from server.domain.messages import post
from server.domain.permissions import RANK
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store.sql import INSERT_CHANNEL
from server.store.workshops import ADD_GROUP_MEMBER, ARCHIVE_ROOM, ATTEND, Write
from server.workshops import timers
from server.workshops.access import (
    bad_request,
    conflict,
    driving,
    live,
    refused,
    room_for_one_more,
    taking_part,
    user_id,
)
from server.workshops.live import Change, Fold

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session
    from server.store import Channel

router = CommandRouter()


@router.command("breakout.open")
async def open_groups(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])
    store = session.agora.store
    assert channel.community_id is not None
    assignment: list[list[str]] | None = None
    if d["assignment"] is not None:
        try:
            assignment = assignment_of(d["assignment"], d["groups"])
        except ValueError as exc:
            raise refused(exc) from None
        for user in {u for group in assignment for u in group}:
            if await store.membership(channel.community_id, user) is None:
                raise bad_request(f"user '{user[:64]}' is not a member of this community")

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None and channel.community_id is not None
        if fold.state["breakout"] is not None:
            raise conflict("breakout groups are open: close them first")
        members = assignment or await _random_groups(session.agora, fold, d["groups"])
        breakout_id = new_id()
        change = Change()
        groups = []
        for number, group_members in enumerate(members, 1):
            room = new_id()
            groups.append(
                {"id": room, "name": f"Group {number}", "channel": room, "members": group_members}
            )
            values = (room, channel.community_id, f"breakout-{room}", "breakout", channel.id)
            change.writes.append(Write(INSERT_CHANNEL, (*values, None, secrets.token_hex(8))))
            change.writes += [Write(ADD_GROUP_MEMBER, (room, u)) for u in group_members]
        breakout: dict[str, Any] = {"id": breakout_id, "groups": groups}
        if d["minutes"] is not None:
            timer = timers.restart(change, fold.state, d["minutes"] * 60, "Breakouts", now_ms())
            breakout["ends_at"] = timer["ends_at"]
        change.events.insert(0, ("breakout.opened", {"breakout": breakout}))
        change.reply = {"breakout": breakout}
        return change

    return await live(session).change(channel.id, decide)


async def _random_groups(agora: Agora, fold: Fold, count: int) -> list[list[str]]:
    """The attendees below facilitator, shuffled and dealt into ``count`` groups."""
    people = [p.user_id for p in await agora.store.people(fold.row.id)]
    roles = {user.id: role for user, role in await agora.store.members(fold.row.community_id)}
    below = [u for u in people if u in roles and RANK[roles[u]] < RANK["facilitator"]]
    random.shuffle(below)
    return [below[i::count] for i in range(count)]


@router.command("breakout.broadcast")
async def broadcast(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])
    _, state, _ = await live(session).snapshot(channel.id)
    if state is None or state["breakout"] is None:
        raise conflict("no breakout groups are open")
    for group in state["breakout"]["groups"]:
        room = await session.agora.store.channel(group["channel"])
        if room is not None:
            await post(session, room, d["text"])
    return {}


async def _group_room(session: Session, channel_id: str) -> Channel:
    room = await readable_channel(session, channel_id)
    if room.kind != "breakout" or room.parent is None:
        raise bad_request("breakout.report names a breakout group's channel")
    await taking_part(session, room.parent)
    return room


@router.command("breakout.report")
async def report(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    room = await _group_room(session, d["channel"])
    assert room.parent is not None
    me = user_id(session)

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        breakout = fold.state["breakout"]
        if breakout is None or all(g["channel"] != room.id for g in breakout["groups"]):
            raise conflict("this group's breakout is closed")
        room_for_one_more(fold.state["reports"], MAX_REPORTS, "reports")
        change = Change()
        change.event("breakout.reported", {"group": room.id, "text": d["text"].strip(), "by": me})
        change.writes.append(Write(ATTEND, (fold.row.id, me)))
        return change

    return await live(session).change(room.parent, decide)


@router.command("breakout.close")
async def close(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        breakout = fold.state["breakout"]
        if breakout is None:
            raise conflict("no breakout groups are open")
        change = Change()
        closing(change, fold.state)
        change.reply = change.events[-1][1]
        return change

    return await live(session).change(channel.id, decide)


def closing(change: Change, state: dict[str, Any]) -> None:
    """Close the open breakout in ``change``: ``breakout.closed`` with its reports; the
    groups' rooms stay readable, closed to new messages."""
    breakout = state["breakout"]
    groups = {g["id"] for g in breakout["groups"]}
    reports = [r for r in state["reports"] if r["group"] in groups]
    change.event("breakout.closed", {"breakout": breakout, "reports": reports})
    change.writes += [Write(ARCHIVE_ROOM, (g["channel"],)) for g in breakout["groups"]]
