"""Mentions: ``@username`` and ``@here`` in a new message, the ``mention`` user event.

A mention is stored (so its count comes back in ``identify`` until the channel is
read) and then sent to every session of the mentioned user, wherever they are:
to the user's topic for ``@username``, to the community's for ``@here``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from server.domain import communities
from server.domain.permissions import Permission, has
from server.store import StoredMessage

if TYPE_CHECKING:
    from server.gateway.session import Session
    from server.store import Channel

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_.-]{2,32})")
#: Most ``@username`` one message mentions (the first ones).
MAX_MENTIONS = 20


def names_in(text: str) -> list[str]:
    """The distinct names after ``@`` in a text, lowercased, in order."""
    names: list[str] = []
    for match in MENTION.finditer(text):
        name = match.group(1).rstrip(".").lower()
        if name not in names:
            names.append(name)
    return names[:MAX_MENTIONS]


async def deliver(session: Session, channel: Channel, message: dict[str, Any], offset: int) -> None:
    """Store the mentions of a new message and tell the mentioned. ``@here`` is one event
    to the community's topic (everyone online hears it), encoded once."""
    names = names_in(message["text"])
    author = message["author"]["id"]
    here = "here" in names and await _may_mention_here(session, channel)
    online = await _online(session, channel.community_id) if here else set()
    named = await _named(session, channel, [name for name in names if name != "here"])
    mentioned = (online | named) - {author}
    if not mentioned:
        return
    agora = session.agora
    await agora.store.add_mentions(StoredMessage(channel.id, offset, message), sorted(mentioned))
    d = {"message": message, "user": author}
    if here:
        assert channel.community_id is not None
        await agora.publish_ephemeral(
            communities.community_topic(channel.community_id), "mention", channel.community_id, d
        )
    for user_id in sorted(named - online - {author}):
        await agora.publish_ephemeral(communities.user_topic(user_id), "mention", user_id, d)


async def _may_mention_here(session: Session, channel: Channel) -> bool:
    if channel.community_id is None or channel.kind == "breakout":  # a group's room is private
        return False
    assert session.user is not None
    role = await session.agora.store.role(channel.community_id, session.user.id)
    return role is not None and has(role, Permission.MENTION_HERE)


async def _named(session: Session, channel: Channel, names: list[str]) -> set[str]:
    """The users ``@username`` mentions in this channel: those who can read it."""
    store = session.agora.store
    users = {u.id for name in names if (u := await _user(session, name)) is not None}
    if channel.community_id is None:  # a DM: only its members
        return users & set(channel.members)
    readers = set()
    for user in users:
        role = await store.role(channel.community_id, user)
        if role is None:
            continue
        if channel.kind == "breakout" and not (
            has(role, Permission.RUN_WORKSHOPS) or await store.in_group(channel.id, user)
        ):
            continue  # a group's room: its members and facilitators only
        readers.add(user)
    return readers


async def _user(session: Session, name: str) -> Any:
    found = await session.agora.store.credentials(name)
    return None if found is None else found[0]


async def _online(session: Session, community_id: str | None) -> set[str]:
    assert community_id is not None
    members = [user.id for user, _ in await session.agora.store.members(community_id)]
    statuses = await session.agora.live.statuses(members)
    return {user for user, status in statuses.items() if status != "offline"}
