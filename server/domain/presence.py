"""Presence: who is here. ``presence.set``, ``community.presence``, ``presence.updated``.

A user is ``online`` while any of their sessions is (on any node), ``idle``
when all of them asked to be, and ``offline`` when the last one closes, or,
when its node died, once the presence timeout passes (``server/live``).
``presence.updated`` goes to each of the user's communities only when the
status changed. Presence is forgettable: a failure to record it is logged and
never fails the session.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any

from server.domain import communities
from server.domain.permissions import Permission, require
from server.errors import Unavailable
from server.gateway.router import CommandRouter

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session

log = logging.getLogger("agora.presence")

router = CommandRouter()


async def changed(agora: Agora, user_id: str, status: str) -> None:
    """Tell the user's communities their new status."""
    for view in await agora.store.communities_of(user_id):
        await communities.publish(
            agora, view.id, "presence.updated", {"user": user_id, "status": status}
        )


#: One session's updates run one at a time, in order: an "online" still under way
#: when the session closes must not land after its removal.
_turns: weakref.WeakKeyDictionary[Session, asyncio.Lock] = weakref.WeakKeyDictionary()


async def _update(session: Session, status: str | None) -> None:
    assert session.user is not None
    agora = session.agora
    async with _turns.setdefault(session, asyncio.Lock()):
        if status is not None and session not in agora.sessions:
            return  # it closed meanwhile
        try:
            new = await agora.live.update(session.user.id, session.id, status)
            if new is not None:
                await changed(agora, session.user.id, new)
        except Unavailable as exc:
            log.warning("presence of %s not recorded: %s", session.user.id, exc)


def start(session: Session) -> None:
    """Mark a session online, in the background (after ``identify`` replied)."""
    task = asyncio.ensure_future(_update(session, "online"))
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("presence update failed", exc_info=task.exception())


async def session_ended(session: Session) -> None:
    await _update(session, None)


@router.command("presence.set")
async def set_status(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    await _update(session, d["status"])
    return {}


@router.command("community.presence")
async def community_presence(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    agora = session.agora
    await require(agora.store, d["community"], session.user.id, Permission.READ)
    members = [user.id for user, _ in await agora.store.members(d["community"])]
    statuses = await agora.live.statuses(members)
    return {"online": [{"user": u, "status": statuses[u]} for u in members if u in statuses]}
