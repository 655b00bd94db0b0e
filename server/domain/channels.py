"""Channels: creating and changing them, who may read and post, subscribe, history.

``subscribe`` joins the channel's feed before it reads the store, so that no
event falls between the replay and live delivery: live events buffer on the
joining subscriber, the replay goes out, then the reply, then the buffered
events past the replay, and from then on live ones.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack

from protocol import ErrorCode, ProtocolError, echo, transcode
from protocol.commands import MAX_CHANNEL_NAME
from server.domain import audit, communities
from server.domain.moderation import slow_mode
from server.domain.permissions import Forbidden, Permission, has, may, require
from server.gateway.outbox import OutFrame
from server.gateway.router import CommandRouter, Reply
from server.store import CHANNEL_SETTINGS, Conflict, MemberCheck

if TYPE_CHECKING:
    from server.gateway.session import Session
    from server.store import Channel

router = CommandRouter()

#: Frames read from the store at once while replaying.
REPLAY_PAGE = 200
#: Channel kind -> what a ``subscribe`` reply of such a channel adds, as of its offset
#: (a workshop channel's: its workshop; see ``workshops.running``)
SUBSCRIBED: dict[str, Callable[[Session, Channel, int], Awaitable[dict[str, Any]]]] = {}


def channel_name(raw: str) -> str:
    """The channel name a person typed, as Agora keeps it; raises ``ValueError``.

    The one rule for the app and the admin CLI, as in Discord: trimmed,
    lowercased, each run of spaces one ``-``; then only letters, digits,
    ``_`` and ``-``.
    """
    name = re.sub(r"\s+", "-", raw.strip().lower())
    if not name or len(name) > MAX_CHANNEL_NAME or not re.fullmatch(r"[\w-]+", name):
        raise ValueError(
            f"a channel name is 1 to {MAX_CHANNEL_NAME} letters, digits, '_' or '-'"
            " (spaces become '-')"
        )
    return name


async def readable_channel(session: Session, channel_id: str) -> Channel:
    """The channel, if the session's user is a member of its community (of a DM: one of
    its two users).

    Raises ``not_found`` or ``forbidden``. The answer is kept for the session
    until its user leaves the community (``communities.leave``).
    """
    channel = session.channels.get(channel_id)
    if channel is not None:
        return channel
    assert session.user is not None
    store = session.agora.store
    channel = await store.channel(channel_id)
    if channel is None:
        raise ProtocolError(f"no channel '{echo(channel_id)}'", code=ErrorCode.NOT_FOUND)
    if channel.community_id is None:
        if session.user.id not in channel.members:
            raise Forbidden("this is a direct message between two other people", Permission.READ)
    else:
        role = await require(store, channel.community_id, session.user.id, Permission.READ)
        if (
            channel.kind == "breakout"
            and not has(role, Permission.RUN_WORKSHOPS)
            and not await store.in_group(channel.id, session.user.id)
        ):
            raise Forbidden("this breakout group's room is for its members", Permission.READ)
    session.channels[channel_id] = channel
    return channel


async def require_in(session: Session, channel: Channel, permission: Permission) -> str | None:
    """Check the user's permission in the channel's community now: their role there.

    In a DM (no community), being one of its two users is all it takes: None.
    """
    if channel.community_id is None:
        return None
    assert session.user is not None
    return await require(session.agora.store, channel.community_id, session.user.id, permission)


async def postable_channel(session: Session, channel_id: str) -> Channel:
    """The channel, if the user may post there now.

    Raises ``forbidden`` (not a member, a guest, timed out), ``conflict``
    (archived, or a thread of an archived channel) or ``rate_limited`` (slow mode;
    facilitators and above are exempt).
    The session's copy of the channel follows ``channel.updated`` (see
    ``communities.on_topic_event``), so settings changed on any node apply.
    """
    assert session.user is not None
    channel = await readable_channel(session, channel_id)
    agora = session.agora
    role = await require_in(session, channel, Permission.POST)
    if channel.kind == "breakout":  # closed with its breakout, which says no channel.updated
        channel = await agora.store.channel(channel.id) or channel
    await require_open(session, channel)
    if channel.slowmode_s and role is not None and not has(role, Permission.MANAGE_CHANNELS):
        await slow_mode(agora, channel.id, channel.slowmode_s, session.user.id)
    return channel


async def postable_channel_checked_on_append(
    session: Session, channel_id: str
) -> tuple[Channel, MemberCheck | None]:
    """``postable_channel``, but where nothing else needs the user's role (a community
    channel without slow mode, not a breakout room) the permission is left to the
    append's own transaction: the ``MemberCheck`` to store the event with.

    A message's hot path saves a trip to the store that way. What a user can see
    of it: the channel's own refusals (archived; for a message, a forum or a
    missing ``reply_to``) come before ``forbidden`` (docs/protocol.md §5.6).
    """
    assert session.user is not None
    channel = await readable_channel(session, channel_id)
    if channel.community_id is None or channel.kind == "breakout" or channel.slowmode_s:
        return await postable_channel(session, channel_id), None
    await require_open(session, channel)
    return channel, MemberCheck(channel.community_id, session.user.id, may(Permission.POST))


async def require_open(session: Session, channel: Channel) -> None:
    """Raise ``conflict`` if the channel, or the channel of a thread, is archived."""
    if channel.archived:
        raise ProtocolError("this channel is archived", code=ErrorCode.CONFLICT)
    if channel.parent is not None and (await readable_channel(session, channel.parent)).archived:
        raise ProtocolError("this thread's channel is archived", code=ErrorCode.CONFLICT)


@router.command("channel.create")
async def create(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    agora = session.agora
    await require(agora.store, d["community"], session.user.id, Permission.MANAGE_CHANNELS)
    try:
        name = channel_name(d["name"])
        channel = await agora.store.create_channel(
            d["community"], name, kind=d["kind"], topic=d["topic"]
        )
    except ValueError as exc:
        raise ProtocolError(str(exc), code=ErrorCode.BAD_REQUEST) from None
    except Conflict as exc:
        raise ProtocolError(str(exc), code=ErrorCode.CONFLICT) from None
    public = channel.public()
    await audit.write(
        agora.store,
        channel.community_id,
        session.user.id,
        "channel.create",
        channel.id,
        {"name": name, "kind": channel.kind},
    )
    await communities.publish(agora, channel.community_id, "channel.created", {"channel": public})
    return {"channel": public}


@router.command("channel.update")
async def update(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    agora = session.agora
    channel = await readable_channel(session, d["channel"])
    if channel.community_id is None or channel.kind == "thread":
        raise ProtocolError(
            "channel.update changes a community's channels (a thread: thread.update)",
            code=ErrorCode.BAD_REQUEST,
        )
    await require(agora.store, channel.community_id, session.user.id, Permission.MANAGE_CHANNELS)
    changes = {k: d[k] for k in CHANNEL_SETTINGS if d[k] is not None}
    if not changes:
        raise ProtocolError("nothing to change", code=ErrorCode.BAD_REQUEST)
    try:
        if "name" in changes:
            changes["name"] = channel_name(changes["name"])
        updated = await agora.store.update_channel(channel.id, changes)
    except ValueError as exc:
        raise ProtocolError(str(exc), code=ErrorCode.BAD_REQUEST) from None
    except Conflict as exc:
        raise ProtocolError(str(exc), code=ErrorCode.CONFLICT) from None
    session.channels[updated.id] = updated
    public = updated.public()
    await audit.write(
        agora.store, updated.community_id, session.user.id, "channel.update", updated.id, changes
    )
    await communities.publish(agora, updated.community_id, "channel.updated", {"channel": public})
    return {"channel": public}


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
        answer = {"offset": head.offset, "epoch": head.epoch, "recovered": recovered}
        more = SUBSCRIBED.get(channel.kind)
        if more is not None:
            answer.update(await more(session, channel, head.offset))
    except BaseException:
        session.unsubscribe(channel.id)
        raise
    return Reply(
        answer,
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
            if outbox.pending() > outbox.limit // 2:  # let the socket drain; never overflow
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
