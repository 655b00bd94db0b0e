"""Messages: sending, editing, deleting, and the ``message.*`` events.

Every stored frame of a message carries it as it is now (the store re-renders
them on each change), so ``history`` and ``since`` replays need nothing extra
and a deleted text is gone for good. What a new message sets off beyond its own
channel (thread follows and activity, mentions, shared links) is in
``after_send``; a plain message in a plain channel pays for none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError, echo
from server.discussions import mentions, resources, threads
from server.domain.channels import (
    postable_channel_checked_on_append,
    readable_channel,
    require_in,
)
from server.domain.permissions import Forbidden, Permission
from server.gateway.router import CommandRouter, Outcome
from server.ids import new_id, now_ms
from server.store import Publishable
from server.workshops import running

if TYPE_CHECKING:
    from server.gateway.session import Session
    from server.store import Channel, MemberCheck, MessageChange, StoredMessage

router = CommandRouter()


@router.command("message.send")
async def send(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    [outcome] = await send_batch(session, [d])
    if isinstance(outcome, Exception):
        raise outcome
    assert isinstance(outcome, dict)
    return outcome


@router.batch("message.send")
async def send_batch(session: Session, ds: list[dict[str, Any]]) -> list[Outcome]:
    """Sends that arrived together: checked one by one, stored in one transaction and
    published in one turn, so that each subscriber gets them in one write."""
    outcomes: list[Outcome] = []
    posts: list[tuple[int, Channel, dict[str, Any]]] = []
    events: list[Publishable] = []
    for d in ds:
        try:
            channel, member_check = await sendable_channel(session, d)
        except Exception as exc:
            outcomes.append(exc)
            continue
        message = new_message(session, channel, d)
        posts.append((len(outcomes), channel, message))
        events.append(
            Publishable(
                channel.id,
                "message.created",
                {"message": message},
                idempotency(message),
                member_check,
            )
        )
        outcomes.append({})  # replaced below
    try:
        published = await session.agora.publish_many(events)
    except Exception as exc:
        published = [exc] * len(events)
    for (at, channel, _), stored in zip(posts, published, strict=True):
        if isinstance(stored, Exception):
            outcomes[at] = stored
            continue
        message = stored.event["d"]["message"]
        if stored.created:
            try:
                await after_send(session, channel, message, stored.offset)
            except Exception as exc:
                outcomes[at] = exc
                continue
        outcomes[at] = {"message": message}
    return outcomes


async def sendable_channel(
    session: Session, d: dict[str, Any]
) -> tuple[Channel, MemberCheck | None]:
    """The channel ``message.send``'s payload posts to, once its reply is there, and the
    check of the user's permission to make as it is stored (None: already made)."""
    channel, member_check = await postable_channel_checked_on_append(session, d["channel"])
    if channel.kind == "forum":
        raise ProtocolError(
            "a forum takes posts as threads: use thread.create, or post in a thread",
            code=ErrorCode.BAD_REQUEST,
        )
    if d["reply_to"] is not None:
        await message_in(session, channel, d["reply_to"])
    return channel, member_check


def new_message(session: Session, channel: Channel, d: dict[str, Any]) -> dict[str, Any]:
    """A message by the session's user, as ``message.created`` carries it (before storing)."""
    user = session.user
    assert user is not None
    message: dict[str, Any] = {
        "id": new_id(),
        "channel": channel.id,
        "author": {"id": user.id, "name": user.display_name, "bot": user.bot},
        "text": d["text"],
        "ts": now_ms(),
        "reactions": [],
    }
    if d.get("nonce") is not None:
        message["nonce"] = d["nonce"]
    if d.get("reply_to") is not None:
        message["reply_to"] = d["reply_to"]
    return message


def idempotency(message: dict[str, Any]) -> tuple[str, str] | None:
    """A retried send (same author, same nonce) stores nothing twice."""
    nonce = message.get("nonce")
    return None if nonce is None else (message["author"]["id"], nonce)


async def post(
    session: Session,
    channel: Channel,
    text: str,
    nonce: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """Store and publish a new message by the session's user; the message as stored."""
    message = new_message(session, channel, {"text": text, "nonce": nonce, "reply_to": reply_to})
    stored = await session.agora.publish(
        channel.id, "message.created", {"message": message}, idempotency=idempotency(message)
    )
    message = stored.event["d"]["message"]
    if stored.created:
        await after_send(session, channel, message, stored.offset)
    return message


async def after_send(
    session: Session, channel: Channel, message: dict[str, Any], offset: int
) -> None:
    if channel.kind == "thread":
        await threads.after_message(session, channel, message)
    if "@" in message["text"]:
        await mentions.deliver(session, channel, message, offset)
    shelved = channel.community_id is not None and channel.kind != "breakout"
    if "http" in message["text"] and shelved:
        await resources.collect(session.agora, channel.community_id, message)  # type: ignore[arg-type]
    if channel.kind in ("workshop", "breakout"):
        await running.count_message(session.agora, channel, message["author"]["id"])


async def message_in(session: Session, channel: Channel, message_id: str) -> StoredMessage:
    """The message, if it is in ``channel`` and not deleted; else ``not_found``."""
    stored = await session.agora.store.message(message_id)
    if stored is None or stored.channel_id != channel.id or stored.message.get("deleted"):
        raise ProtocolError(
            f"no message '{echo(message_id)}' in this channel", code=ErrorCode.NOT_FOUND
        )
    return stored


@router.command("message.edit")
async def edit(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    channel = await readable_channel(session, d["channel"])
    await require_in(session, channel, Permission.POST)
    stored = await message_in(session, channel, d["message"])
    if stored.author_id != session.user.id:
        raise Forbidden("only its author edits a message", "edit_messages")
    text = d["text"]

    def change(message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if message.get("deleted") or message["text"] == text:
            return None
        message["text"] = text
        message["edited_ts"] = now_ms()
        return "message.updated", {"message": message}

    _, changed = await changed_message(session, channel, d["message"], change)
    return {"message": changed.message}


@router.command("message.delete")
async def delete(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    assert session.user is not None
    channel = await readable_channel(session, d["channel"])
    stored = await session.agora.store.message(d["message"])
    if stored is None or stored.channel_id != channel.id:
        raise ProtocolError(
            f"no message '{echo(d['message'])}' in this channel", code=ErrorCode.NOT_FOUND
        )
    if stored.author_id == session.user.id:
        await require_in(session, channel, Permission.POST)
    elif await require_in(session, channel, Permission.DELETE_MESSAGES) is None:
        raise Forbidden("only its author deletes a message in a DM", Permission.DELETE_MESSAGES)

    def change(message: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if message.get("deleted"):
            return None
        for key in ("edited_ts", "pinned"):
            message.pop(key, None)
        message.update(text="", deleted=True, reactions=[])
        return "message.deleted", {"id": message["id"]}

    await changed_message(session, channel, d["message"], change)
    return {}


async def changed_message(
    session: Session, channel: Channel, message_id: str, change: MessageChange
) -> tuple[bool, StoredMessage]:
    """Apply a change (see ``Store.change_message``) and publish its event; whether there
    was one, and the message as it is now."""
    agora = session.agora
    try:
        appended, stored = await agora.store.change_message(message_id, change)
    except KeyError:
        raise ProtocolError(
            f"no message '{echo(message_id)}' in this channel", code=ErrorCode.NOT_FOUND
        ) from None
    if appended is not None:
        await agora.broker.publish(channel.id, appended.frame)
        agora.metrics.events_published.inc()
    return appended is not None, stored
