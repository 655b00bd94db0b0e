"""Channels: who may read them, and subscribe, unsubscribe and history.

``subscribe`` joins the channel's feed before it reads the store, so that no
event falls between the replay and live delivery: live events buffer on the
joining subscriber, the replay goes out, then the reply, then the buffered
events past the replay, and from then on live ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from protocol import ErrorCode, ProtocolError, echo, transcode
from server.gateway.outbox import OutFrame
from server.gateway.router import CommandRouter, Reply

if TYPE_CHECKING:
    from server.gateway.session import Session
    from server.store import Channel

router = CommandRouter()

#: Frames read from the store at once while replaying.
REPLAY_PAGE = 200


async def readable_channel(session: Session, channel_id: str) -> Channel:
    """The channel, if the session's user is a member of its community.

    Raises ``not_found`` or ``forbidden``. The answer is kept for the session.
    """
    channel = session.channels.get(channel_id)
    if channel is not None:
        return channel
    assert session.user is not None
    store = session.agora.store
    channel = await store.channel(channel_id)
    if channel is None:
        raise ProtocolError(f"no channel '{echo(channel_id)}'", code=ErrorCode.NOT_FOUND)
    if await store.role(channel.community_id, session.user.id) is None:
        raise ProtocolError(
            "you are not a member of this channel's community", code=ErrorCode.FORBIDDEN
        )
    session.channels[channel_id] = channel
    return channel


@router.command("subscribe")
async def subscribe(session: Session, d: dict[str, Any]) -> Reply:
    channel = await readable_channel(session, d["channel"])
    agora = session.agora
    session.unsubscribe(channel.id)
    feed, joining = await agora.hub.join(channel.id, session.outbox, session.encoding)
    session.feeds[channel.id] = feed
    try:
        head = await agora.store.log_head(channel.id)
        since, epoch = d["since"], d["epoch"]
        recovered = (
            since is not None
            and (epoch is None or epoch == head.epoch)
            and since <= head.offset
            and head.offset - since <= agora.settings.replay_cap
        )
        if recovered:
            await _replay(session, channel.id, since, head.offset)
    except BaseException:
        session.unsubscribe(channel.id)
        raise
    return Reply(
        {"offset": head.offset, "epoch": head.epoch, "recovered": recovered},
        then=lambda: feed.go_live(joining, head.offset),
    )


async def _replay(session: Session, channel_id: str, after: int, until: int) -> None:
    """Queue the stored events ``after < o <= until``, a page at a time."""
    outbox, encoding = session.outbox, session.encoding
    store = session.agora.store
    while after < until and not outbox.closing:
        frames = await store.read_after(channel_id, after, min(REPLAY_PAGE, until - after))
        if not frames:
            break
        for frame in frames:
            outbox.push(OutFrame(transcode(frame, encoding)))
            if outbox.size > outbox.limit // 2:  # let the socket drain; never overflow
                await outbox.wait_below(outbox.limit // 4)
        after += len(frames)


@router.command("unsubscribe")
async def unsubscribe(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    session.unsubscribe(d["channel"])
    return {}


@router.command("history")
async def history(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await readable_channel(session, d["channel"])
    frames = await session.agora.store.read_before(channel.id, d["before"], d["limit"])
    return {"events": [msgpack.unpackb(frame, raw=False) for frame in frames]}
