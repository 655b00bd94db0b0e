"""Mentions: ``@username`` and ``@here`` in a new message, the ``mention`` user event.

A mention is stored (so its count comes back in ``identify`` until the channel is
read) and then sent to every session of the mentioned user, wherever they are.
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
    mentioned = await _mentioned(session, channel, names_in(message["text"]))
    mentioned.discard(message["author"]["id"])
    if not mentioned:
        return
    agora = session.agora
    users = sorted(mentioned)
    await agora.store.add_mentions(StoredMessage(channel.id, offset, message), users)
    for user_id in users:
        await agora.publish_ephemeral(
            communities.user_topic(user_id), "mention", user_id, {"message": message}
        )


async def _mentioned(session: Session, channel: Channel, names: list[str]) -> set[str]:
    """The users these names mention in this channel: those who can read it."""
    store = session.agora.store
    assert session.user is not None
    if channel.community_id is None:  # a DM: only the other one of the two
        others = {u for u in channel.members if u != session.user.id}
        found = {u.id for name in names if (u := await _user(session, name)) is not None}
        return others & found
    mentioned: set[str] = set()
    for name in names:
        if name == "here":
            role = await store.role(channel.community_id, session.user.id)
            if role is not None and has(role, Permission.MENTION_HERE):
                mentioned |= await _online(session, channel.community_id)
            continue
        user = await _user(session, name)
        if user is not None and await store.role(channel.community_id, user.id) is not None:
            mentioned.add(user.id)
    return mentioned


async def _user(session: Session, name: str) -> Any:
    found = await session.agora.store.credentials(name)
    return None if found is None else found[0]


async def _online(session: Session, community_id: str) -> set[str]:
    members = [user.id for user, _ in await session.agora.store.members(community_id)]
    statuses = await session.agora.live.statuses(members)
    return {user for user, status in statuses.items() if status != "offline"}
