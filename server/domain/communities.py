"""Communities: membership, ``community.create``, ``community.members``, and who hears what.

Every identified session listens to two kinds of topic (see the hub): its
user's (``user:<id>``: events for that user wherever they are) and each of its
communities' (``community:<id>``: channel and member changes, presence). These
events are ephemeral; a client that reconnects reads the state again from
``identify``.

``member.joined`` is both: a community event, and the durable join line in the
community's system channel, its first text channel (``general`` in a fresh
community). The admin CLI, which has no way into a running server's broker,
only appends the durable one (see ``server/operator/admin.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError
from protocol.commands import ROLES
from server.domain.permissions import Permission, has, require
from server.gateway.router import CommandRouter
from server.ids import now_ms
from server.store import CHANNEL_SETTINGS, Conflict

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session
    from server.store import Channel, CommunityView, Store, User

__all__ = ["ROLES"]

log = logging.getLogger("agora.communities")

router = CommandRouter()

#: Most members one ``community.members`` reply lists (the first ones to join).
MAX_MEMBERS = 1000


def community_topic(community_id: str) -> str:
    return "community:" + community_id


def user_topic(user_id: str) -> str:
    return "user:" + user_id


def thread_topic(thread_id: str) -> str:
    """A thread's followers' topic (see ``discussions.threads``)."""
    return "thread:" + thread_id


def member(user: User, role: str) -> dict[str, Any]:
    """The member object: the public user and the role."""
    return {**user.public(), "role": role}


def system_channel(view: CommunityView) -> Channel | None:
    """Where the community's announcements go: its first text channel."""
    return next((c for c in view.channels if c.kind == "text"), None)


async def view_of(store: Store, community_id: str, user_id: str) -> CommunityView | None:
    """The community as this member sees it (identify's shape), or None."""
    return next((v for v in await store.communities_of(user_id) if v.id == community_id), None)


async def join_event(store: Store, community_id: str, user: User) -> tuple[str, dict[str, Any]]:
    """The system channel and ``d`` of the ``member.joined`` for a user who just joined.

    Raises ``LookupError`` when the user is not a member or the community has
    no text channel, so there is nowhere to announce it.
    """
    view = await view_of(store, community_id, user.id)
    if view is None:
        raise LookupError(f"'{user.username}' is not a member of community '{community_id}'")
    channel = system_channel(view)
    if channel is None:
        raise LookupError(f"community '{community_id}' has no text channel")
    return channel.id, {"member": member(user, view.role), "ts": now_ms()}


async def announce_join(agora: Agora, community_id: str, user: User) -> CommunityView | None:
    """Tell everyone that ``user`` joined: the join line, the community event, and the
    user's own sessions (which start listening to the community). The joiner's view."""
    view = await view_of(agora.store, community_id, user.id)
    if view is None:
        return None
    d = {"member": member(user, view.role), "ts": now_ms()}
    channel = system_channel(view)
    if channel is not None:
        await agora.publish(channel.id, "member.joined", d)
    await agora.publish_ephemeral(community_topic(community_id), "member.joined", community_id, d)
    await agora.publish_ephemeral(
        user_topic(user.id), "community.joined", user.id, {"community": view.public()}
    )
    return view


async def announce_new_account(agora: Agora, user: User) -> None:
    """Announce the joins of a new account (``create_user`` made it a member)."""
    for view in await agora.store.communities_of(user.id):
        await announce_join(agora, view.id, user)


async def publish(agora: Agora, community_id: str, t: str, d: dict[str, Any]) -> None:
    """A community event, to every identified session of every member."""
    await agora.publish_ephemeral(community_topic(community_id), t, community_id, d)


# which topics a session listens to


async def attach(session: Session, views: list[CommunityView]) -> None:
    """Listen to the user's topic and their communities' topics (after ``identify``).

    The channels ``identify`` read with the memberships are kept as ``readable_channel``
    keeps what it checks (until the user leaves the community), so that a ``subscribe``
    right after ``identify`` asks the store only for the channel's head.
    """
    assert session.user is not None
    for view in views:  # breakouts and threads are not in a view: they are checked apart
        if has(view.role, Permission.READ):
            session.channels.update((channel.id, channel) for channel in view.channels)
    await session.listen(user_topic(session.user.id))
    for view in views:
        await session.listen(community_topic(view.id))


def leave(session: Session, community_id: str) -> None:
    """The session's user is no longer a member: it hears nothing more of the community."""
    session.unlisten(community_topic(community_id))
    for thread_id, community in list(session.followed.items()):
        if community == community_id:
            session.unlisten(thread_topic(thread_id))
            del session.followed[thread_id]
    for channel_id, channel in list(session.channels.items()):
        if channel.community_id == community_id:
            session.unsubscribe(channel_id)
            del session.channels[channel_id]


def on_topic_event(agora: Agora, topic: str, event: dict[str, Any]) -> None:
    """After a topic event reached its listeners here: keep sessions' topics right."""
    t, d = event.get("t"), event.get("d") or {}
    if t == "channel.updated":
        _refresh_channel(agora, d["channel"])
    elif t == "member.left" and topic.startswith("community:"):
        for session in list(agora.user_sessions.get(d.get("user", ""), ())):
            leave(session, event["ch"])
    elif t == "community.joined" and topic.startswith("user:"):
        community_id = d["community"]["id"]
        for session in list(agora.user_sessions.get(event["ch"], ())):
            task = asyncio.ensure_future(session.listen(community_topic(community_id)))
            task.add_done_callback(_log_failure)


def _refresh_channel(agora: Agora, public: dict[str, Any]) -> None:
    """Sessions that keep a copy of the channel take its new settings."""
    settings = {k: public.get(k) for k in CHANNEL_SETTINGS}
    for session in agora.sessions:
        kept = session.channels.get(public["id"])
        if kept is not None:
            session.channels[kept.id] = replace(kept, **settings)


def _log_failure(task: asyncio.Future[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.warning("listening to a new community failed: %s", task.exception())


# commands


@router.command("community.create")
async def create(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    user = session.user
    assert user is not None
    agora = session.agora
    roles = [v.role for v in await agora.store.communities_of(user.id)]
    if not any(role != "guest" for role in roles):
        raise ProtocolError(
            "only members of a community may create communities",
            code=ErrorCode.FORBIDDEN,
            permission="create_communities",
        )
    name = d["name"].strip()
    try:
        community = await agora.store.create_community(name, user.id)
    except Conflict as exc:
        raise ProtocolError(str(exc), code=ErrorCode.CONFLICT) from None
    await agora.store.create_channel(community.id, "general")
    await session.listen(community_topic(community.id))
    view = await announce_join(agora, community.id, user)
    assert view is not None
    return {"community": view.public()}


@router.command("community.members")
async def members(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    store = session.agora.store
    community = await store.community(d["community"])
    if community is None:
        raise ProtocolError(f"no community '{d['community']}'", code=ErrorCode.NOT_FOUND)
    await require(store, community.id, session.user.id, Permission.READ)
    found = await store.members(community.id)
    return {"members": [member(user, role) for user, role in found[:MAX_MEMBERS]]}
