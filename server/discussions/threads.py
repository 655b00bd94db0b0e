"""Threads: channels of kind ``thread`` under a text or forum channel.

A thread has its own log (offsets, ``subscribe``, ``history``, ``message.send``);
its parent hears ``thread.created`` and ``thread.updated`` (durable), its
followers ``thread.activity``. After new messages the parent's
``thread.updated`` waits ``UPDATE_DELAY`` so that a burst of replies makes one
event per node.

Each session listens to the topic of every thread its user follows, so a new
message's ``thread.activity`` is one event, encoded once, however many follow.
A change of following is the user event ``thread.followed``: every session of
the user starts or stops listening when it hears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError, echo
from protocol.commands import tag_filter, tags_of
from server.domain import communities, pages
from server.domain.channels import postable_channel, readable_channel, require_in
from server.domain.permissions import Permission
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store import Channel, Conflict

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session

router = CommandRouter()
log = logging.getLogger("agora.threads")

#: Seconds between a thread's new message and its parent's ``thread.updated``.
UPDATE_DELAY = 1.0
#: The kinds of channel threads start in (a workshop's recap is a thread of its channel).
THREAD_PARENTS = ("text", "forum", "workshop")
#: Most participants a ``thread.updated`` names (the first to post).
MAX_PARTICIPANTS = 20


@router.command("thread.create")
async def create(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    from server.domain.messages import changed_message, message_in, post

    user = session.user
    assert user is not None
    agora = session.agora
    parent = await postable_channel(session, d["channel"])
    if parent.kind not in THREAD_PARENTS:
        raise ProtocolError(
            "threads start in a text, forum or workshop channel", code=ErrorCode.BAD_REQUEST
        )
    if parent.kind == "forum" and d["text"] is None:
        raise ProtocolError("a forum post needs its text", code=ErrorCode.BAD_REQUEST)
    tags = _tags(d["tags"])
    thread_id = new_id()
    if d["message"] is not None:
        await message_in(session, parent, d["message"])

        def start(message: dict[str, Any]) -> tuple[None, None] | None:
            if "thread" in message:
                return None
            message["thread"] = thread_id
            return None, None

        _, root = await changed_message(session, parent, d["message"], start)
        if root.message["thread"] != thread_id:  # a thread from it exists already
            existing = await agora.store.channel(root.message["thread"])
            if existing is not None:
                return {"thread": existing.public()}
            thread_id = root.message["thread"]  # its creation was cut short: finish it
    thread = Channel(
        thread_id,
        parent.community_id,
        thread_id,
        "thread",
        parent.id,
        title=d["title"].strip(),
        created_by=user.id,
        root_message=d["message"],
        tags=tuple(tags or ()),
        last_ts=now_ms(),
    )
    try:
        await agora.store.create_thread(thread)
    except Conflict:  # a request from the same message on another node made it meanwhile
        existing = await agora.store.channel(thread.id)
        assert existing is not None
        return {"thread": existing.public()}
    public = thread.public()
    await agora.publish(parent.id, "thread.created", {"thread": public, "by": user.id})
    await _followed(session, public, True)
    if d["text"] is not None:
        await post(session, thread, d["text"])
        updated = await agora.store.channel(thread.id)
        public = (updated or thread).public()
    return {"thread": public}


@router.command("thread.list")
async def list_threads(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    parent = await readable_channel(session, d["channel"])
    if parent.kind not in THREAD_PARENTS:
        raise ProtocolError(
            "threads are in text, forum and workshop channels", code=ErrorCode.BAD_REQUEST
        )
    before = pages.cursor(d["before"])
    tag = tag_filter(d["tag"])
    found = await session.agora.store.threads(parent.id, tag, before, d["limit"] + 1)
    page = found[: d["limit"]]
    answer: dict[str, Any] = {"threads": [_summary(thread) for thread in page]}
    if len(found) > d["limit"]:
        answer["next"] = pages.next_cursor(page[-1].last_ts or 0, page[-1].id)
    return answer


@router.command("thread.update")
async def update(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    user = session.user
    assert user is not None
    agora = session.agora
    thread = await thread_of(session, d["thread"])
    # its creator as long as they may post, else a facilitator (a time-out stops both)
    mine = thread.created_by == user.id
    await require_in(session, thread, Permission.POST if mine else Permission.MANAGE_THREADS)
    changes: dict[str, Any] = {}
    if d["title"] is not None:
        changes["title"] = d["title"].strip()
    if d["tags"] is not None:
        changes["tags"] = tuple(_tags(d["tags"]) or ())
    if d["resolved"] is not None:
        changes["resolved"] = d["resolved"]
    if not changes:
        raise ProtocolError("nothing to change", code=ErrorCode.BAD_REQUEST)
    updated = await agora.store.update_channel(thread.id, changes)
    await publish_update(agora, updated)
    return {"thread": updated.public()}


@router.command("thread.follow")
async def follow(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _follow(session, d["thread"], True)


@router.command("thread.unfollow")
async def unfollow(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _follow(session, d["thread"], False)


async def _follow(session: Session, thread_id: str, following: bool) -> dict[str, Any]:
    assert session.user is not None
    thread = await thread_of(session, thread_id)
    if await session.agora.store.follow(thread.id, session.user.id, following):
        await _followed(session, thread.public(), following)
    return {}


async def _followed(session: Session, thread: dict[str, Any], following: bool) -> None:
    """The user follows ``thread`` now, or no longer: this session listens (or stops) before
    it answers, so that what follows its answer reaches it; the user's other sessions
    when they hear ``thread.followed``."""
    assert session.user is not None
    if following:
        await _listen(session, thread["id"], thread["community"])
    else:
        _unlisten(session, thread["id"])
    await session.agora.publish_ephemeral(
        communities.user_topic(session.user.id),
        "thread.followed",
        session.user.id,
        {"thread": thread, "following": following},
    )


async def attach(session: Session, followed: list[Channel]) -> None:
    """Listen to the topics of the threads the user follows (after ``identify``)."""
    for thread in followed:
        await _listen(session, thread.id, thread.community_id)


async def _listen(session: Session, thread_id: str, community_id: str | None) -> None:
    assert community_id is not None  # threads belong to a community
    session.followed[thread_id] = community_id
    await session.listen(communities.thread_topic(thread_id))


def _unlisten(session: Session, thread_id: str) -> None:
    if session.followed.pop(thread_id, None) is not None:
        session.unlisten(communities.thread_topic(thread_id))


def on_topic_event(agora: Agora, topic: str, event: dict[str, Any]) -> None:
    """The user's sessions here listen to a thread's topic while they follow it."""
    if event.get("t") != "thread.followed" or not topic.startswith("user:"):
        return
    thread, following = event["d"]["thread"], event["d"]["following"]
    for session in list(agora.user_sessions.get(event["ch"], ())):
        if following:
            _spawn(_listen(session, thread["id"], thread["community"]))
        else:
            _unlisten(session, thread["id"])


async def thread_of(session: Session, thread_id: str) -> Channel:
    channel = await readable_channel(session, thread_id)
    if channel.kind != "thread":
        raise ProtocolError(f"'{echo(thread_id)}' is not a thread", code=ErrorCode.BAD_REQUEST)
    return channel


async def after_message(session: Session, thread: Channel, message: dict[str, Any]) -> None:
    """A new message in a thread: its author follows it, the other followers hear of it,
    and the parent hears ``thread.updated`` soon."""
    agora = session.agora
    author = message["author"]["id"]
    public = (await agora.store.channel(thread.id) or thread).public()
    if await agora.store.follow(thread.id, author, True):
        await _followed(session, public, True)
    await agora.publish_ephemeral(
        communities.thread_topic(thread.id),
        "thread.activity",
        thread.id,
        {"thread": public, "message": message, "user": author},
    )
    if thread.id not in agora.pending_thread_updates:
        agora.pending_thread_updates.add(thread.id)
        asyncio.get_running_loop().call_later(
            UPDATE_DELAY, lambda: _spawn(_send_update(agora, thread.id))
        )


async def _send_update(agora: Agora, thread_id: str) -> None:
    agora.pending_thread_updates.discard(thread_id)
    thread = await agora.store.channel(thread_id)
    if thread is not None:
        await publish_update(agora, thread)


async def publish_update(agora: Agora, thread: Channel) -> None:
    assert thread.parent is not None
    d = _summary(thread)
    d["participants"] = await agora.store.participants(thread.id, MAX_PARTICIPANTS)
    await agora.publish(thread.parent, "thread.updated", d)


def _summary(thread: Channel) -> dict[str, Any]:
    return {
        "thread": thread.public(),
        "replies": thread.replies,
        "last_ts": thread.last_ts,
        "tags": list(thread.tags),
        "resolved": thread.resolved,
    }


def _tags(raw: list[Any] | None) -> list[str] | None:
    try:
        return tags_of(raw)
    except ValueError as exc:
        raise ProtocolError(str(exc), code=ErrorCode.BAD_REQUEST) from None


def _spawn(coroutine: Any) -> None:
    task = asyncio.ensure_future(coroutine)
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.warning("a thread's update or topic failed: %s", task.exception())
