"""Timers and the pulse: ``timer.start``/``extend``/``cancel``, ``pulse.send``, and
what runs out on its own (a timer's ``timer.ended``, a pulse that stops counting)."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from protocol import ProtocolError
from protocol.workshop import PULSE_KINDS
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store.workshops import ATTEND, DROP_PULSES, PUT_PULSE, Write
from server.workshops.access import conflict, driving, live, taking_part, user_id
from server.workshops.live import Change, Fold

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session

router = CommandRouter()
log = logging.getLogger("agora.workshops")


def restart(
    change: Change, state: dict[str, Any], seconds: int, label: str | None, now: int
) -> dict[str, Any]:
    """Start a timer, ending the running one (``cancelled: true``) first."""
    if state["timer"] is not None:
        change.event("timer.ended", {"timer": state["timer"], "cancelled": True})
    timer: dict[str, Any] = {
        "id": new_id(),
        "seconds": seconds,
        "started_ts": now,
        "ends_at": now + seconds * 1000,
    }
    if label:
        timer["label"] = label
    change.event("timer.started", {"timer": timer})
    change.due_at = timer["ends_at"]
    return timer


@router.command("timer.start")
async def start(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        if fold.state["timer"] is not None:
            raise conflict("a timer is running: extend or cancel it")
        change = Change()
        change.reply = {"timer": restart(change, fold.state, d["seconds"], d["label"], now_ms())}
        return change

    return await live(session).change(channel.id, decide)


@router.command("timer.extend")
async def extend(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        timer = fold.state["timer"]
        if timer is None:
            raise conflict("no timer is running")
        timer = dict(timer, seconds=timer["seconds"] + d["seconds"])
        timer["ends_at"] += d["seconds"] * 1000
        change = Change(reply={"timer": timer})
        change.event("timer.started", {"timer": timer})
        return change

    return await live(session).change(channel.id, decide)


@router.command("timer.cancel")
async def cancel(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        if fold.state["timer"] is None:
            raise conflict("no timer is running")
        change = Change()
        change.event("timer.ended", {"timer": fold.state["timer"], "cancelled": True})
        return change

    return await live(session).change(channel.id, decide)


@router.command("pulse.send")
async def pulse(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await taking_part(session, d["channel"])
    me = user_id(session)

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        now = now_ms()
        pulses = {
            user: (kind, ts) for user, kind, ts in await session.agora.store.pulses(fold.row.id)
        }
        pulses[me] = (d["kind"], now)
        window = session.agora.settings.pulse_window_ms
        change = Change(due_at=now + window)
        change.writes += [
            Write(PUT_PULSE, (fold.row.id, me, d["kind"], now)),
            Write(ATTEND, (fold.row.id, me)),
        ]
        counts = _counts(pulses.values(), now - window)
        if counts != fold.state["pulse"]:
            change.event("pulse.updated", {"counts": counts})
        return change

    return await live(session).change(channel.id, decide)


def _counts(pulses: Any, since: int) -> dict[str, int]:
    """Each kind's count among the pulses sent after ``since``."""
    counts = dict.fromkeys(PULSE_KINDS, 0)
    for kind, ts in pulses:
        if ts > since:
            counts[kind] += 1
    return counts


async def due(agora: Agora, channel_id: str) -> None:
    """Look at a workshop whose timer or pulses may have run out."""

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        now = now_ms()
        change = Change()
        timer = fold.state["timer"]
        if timer is not None and timer["ends_at"] <= now:
            change.event("timer.ended", {"timer": timer, "cancelled": False})
            timer = None
        pulses = await agora.store.pulses(fold.row.id)
        window = agora.settings.pulse_window_ms
        counts = _counts(((kind, ts) for _, kind, ts in pulses), now - window)
        if counts != fold.state["pulse"]:
            change.event("pulse.updated", {"counts": counts})
        still = [ts + window for _, _, ts in pulses if ts > now - window]
        if timer is not None:
            still.append(timer["ends_at"])
        next_due = min(still) if still else None
        change.writes.append(Write(DROP_PULSES, (fold.row.id, now - window)))
        change.due_at, change.reset_due = next_due, True
        return change

    with contextlib.suppress(ProtocolError):  # it ended meanwhile
        await agora.workshops.change(channel_id, decide)
