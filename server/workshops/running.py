"""A workshop's life: ``workshop.start``, ``workshop.state``, the agenda, and what a
subscriber of its channel learns (the state as of its offset, and their own ballots
and upvotes). Attending and messages posted while it is live are counted here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.workshop import agenda_of, new_workshop
from server.domain import channels
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store import Conflict
from server.store.workshops import ATTEND, FIRST_O, INSERT, Write
from server.workshops import timers
from server.workshops.access import (
    bad_request,
    conflict,
    driving,
    live,
    refused,
    user_id,
    workshop_channel,
)
from server.workshops.live import Change, Fold

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session
    from server.store import Channel

router = CommandRouter()


@router.command("workshop.start")
async def start(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])
    if channel.archived:
        raise conflict("this channel is archived")
    try:
        agenda = agenda_of(d["agenda"])
    except ValueError as exc:
        raise refused(exc) from None
    assert channel.community_id is not None
    workshop = new_workshop(
        new_id(), channel.id, d["title"].strip(), agenda, user_id(session), now_ms()
    )
    row_values = (
        workshop["id"],
        channel.id,
        channel.community_id,
        workshop["title"],
        workshop["started_ts"],
        FIRST_O,
    )
    workshops = live(session)
    agora = session.agora
    async with workshops.lock(channel.id):
        try:
            (stored,) = await agora.store.commit_workshop(
                None,
                0,
                channel.id,
                [("workshop.started", {"workshop": workshop})],
                [Write(INSERT, row_values), Write(ATTEND, (workshop["id"], user_id(session)))],
            )
        except Conflict:
            raise conflict("a workshop is live in this channel already") from None
        row = await agora.store.live_workshop(channel.id)
        if row is not None and row.id == workshop["id"]:  # (not ended on another node already)
            workshops.folds[channel.id] = fold = Fold(row, o=row.start_o - 1)
            fold.apply(stored.event)
        await workshops.publish(channel.id, [stored])
    return {"workshop": workshop}


@router.command("workshop.state")
async def state(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await workshop_channel(session, d["channel"])
    row, workshop, offset = await live(session).snapshot(channel.id)
    if offset is None:
        offset = (await session.agora.store.log_head(channel.id)).offset
    return {"workshop": workshop, "offset": offset, "mine": await _mine(session, row)}


async def subscribed(session: Session, channel: Channel, offset: int) -> dict[str, Any]:
    """What a ``subscribe`` reply of a workshop channel adds; the subscriber attends."""
    row, workshop, _ = await live(session).snapshot(channel.id, offset)
    if row is not None:
        await session.agora.store.attend(row.id, user_id(session))
    return {"workshop": workshop, "mine": await _mine(session, row)}


channels.SUBSCRIBED["workshop"] = subscribed


async def _mine(session: Session, row: Any) -> dict[str, Any]:
    if row is None:
        return {"ballots": {}, "upvoted": []}
    store, me = session.agora.store, user_id(session)
    return {
        "ballots": await store.ballots_of(row.id, me),
        "upvoted": await store.upvoted_by(row.id, me),
    }


async def count_message(agora: Agora, channel: Channel, author: str) -> None:
    """A message in a workshop channel, or a breakout group's, while its workshop is live."""
    workshop_channel_id = channel.id if channel.kind == "workshop" else channel.parent
    if workshop_channel_id is None:
        return
    row = await agora.store.live_workshop(workshop_channel_id)
    if row is not None:
        await agora.store.count(row.id, author, "messages")


@router.command("agenda.next")
async def next_item(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        index = fold.state["current"] + 1
        if index >= len(fold.state["agenda"]):
            raise conflict("the agenda has no item after the current one")
        return _move(fold, index)

    return await live(session).change(channel.id, decide)


@router.command("agenda.goto")
async def goto_item(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        if not 0 <= d["index"] < len(fold.state["agenda"]):
            raise bad_request(f"the agenda has items 0 to {len(fold.state['agenda']) - 1}")
        return _move(fold, d["index"])

    return await live(session).change(channel.id, decide)


def _move(fold: Fold, index: int) -> Change:
    """Make item ``index`` current; a timeboxed item starts its timer."""
    assert fold.state is not None
    now = now_ms()
    change = Change()
    change.event("agenda.moved", {"current": index, "started_ts": now})
    item = fold.state["agenda"][index]
    if "minutes" in item:
        timers.restart(change, fold.state, item["minutes"] * 60, item["title"], now)
    return change
