"""The hand-raise queue: ``hand.raise``/``lower``/``call``/``order`` and ``hands.updated``.

The server sorts the queue (``protocol.workshop.queue_in_order``) and every
``hands.updated`` carries it whole, so there is one order on every screen.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from protocol.workshop import queue_in_order
from server.domain.channels import require_in
from server.domain.permissions import Permission
from server.gateway.router import CommandRouter
from server.ids import now_ms
from server.store.workshops import counted
from server.workshops.access import conflict, driving, live, not_found, taking_part, user_id
from server.workshops.live import Change, Fold

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


def _updated(hands: dict[str, Any], change: Change | None = None) -> Change:
    change = change or Change()
    hands["queue"] = queue_in_order(hands["queue"], hands["order"])
    change.event("hands.updated", {"hands": hands})
    return change


@router.command("hand.raise")
async def raise_hand(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await taking_part(session, d["channel"])
    me = user_id(session)

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        hands = copy.deepcopy(fold.state["hands"])
        if any(h["user"] == me for h in hands["queue"]):
            return Change()
        hands["queue"].append(
            {"user": me, "raised_ts": now_ms(), "turns": hands["turns"].get(me, 0)}
        )
        change = _updated(hands)
        change.writes.append(counted(fold.row.id, me, "hands"))
        return change

    return await live(session).change(channel.id, decide)


@router.command("hand.lower")
async def lower(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await taking_part(session, d["channel"])
    me = user_id(session)
    target = d["user"] or me
    if d["all"] or target != me:
        await require_in(session, channel, Permission.RUN_WORKSHOPS)

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        hands = copy.deepcopy(fold.state["hands"])
        before = (len(hands["queue"]), hands["speaking"])
        if d["all"]:
            hands["queue"], hands["speaking"] = [], None
        else:
            hands["queue"] = [h for h in hands["queue"] if h["user"] != target]
            if hands["speaking"] == target:
                hands["speaking"] = None
        if (len(hands["queue"]), hands["speaking"]) == before:
            return Change()
        return _updated(hands)

    return await live(session).change(channel.id, decide)


@router.command("hand.call")
async def call(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        hands = copy.deepcopy(fold.state["hands"])
        if not hands["queue"]:
            raise conflict("no hand is raised")
        called = d["user"] or hands["queue"][0]["user"]
        if not any(h["user"] == called for h in hands["queue"]):
            raise not_found("raised hand of user", called)
        hands["queue"] = [h for h in hands["queue"] if h["user"] != called]
        hands["speaking"] = called
        hands["turns"][called] = hands["turns"].get(called, 0) + 1
        change = _updated(hands)
        change.writes.append(counted(fold.row.id, called, "turns"))
        return change

    return await live(session).change(channel.id, decide)


@router.command("hand.order")
async def order(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        if fold.state["hands"]["order"] == d["order"]:
            return Change()
        hands = copy.deepcopy(fold.state["hands"])
        hands["order"] = d["order"]
        return _updated(hands)

    return await live(session).change(channel.id, decide)
