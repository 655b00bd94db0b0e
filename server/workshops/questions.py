"""Q&A: ``question.ask``/``upvote``/``unvote``/``answer``/``hide`` and their events.

Who upvoted is kept in ``question_votes`` (one upvote each, and the recap's
threads are followed by the upvoters); events carry only the count.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol import ErrorCode, ProtocolError
from protocol.workshop import MAX_QUESTIONS
from server.domain.channels import require_in
from server.domain.permissions import Permission
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store.workshops import ADD_UPVOTE, DROP_UPVOTE, Write, counted
from server.workshops.access import (
    conflict,
    driving,
    live,
    not_found,
    room_for_one_more,
    taking_part,
    user_id,
)
from server.workshops.live import Change, Fold

if TYPE_CHECKING:
    from server.gateway.session import Session

router = CommandRouter()


def _question_in(state: dict[str, Any], question_id: str) -> dict[str, Any]:
    for question in state["questions"]:
        if question["id"] == question_id:
            return copy.deepcopy(question)
    raise not_found("question", question_id)


@router.command("question.ask")
async def ask(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await taking_part(session, d["channel"])
    me = user_id(session)

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        room_for_one_more(fold.state["questions"], MAX_QUESTIONS, "questions")
        question = {
            "id": new_id(),
            "text": d["text"].strip(),
            "by": me,
            "votes": 0,
            "answered": False,
            "hidden": False,
            "ts": now_ms(),
        }
        change = Change(reply={"question": question})
        change.event("question.asked", {"question": question})
        change.writes.append(counted(fold.row.id, me, "questions"))
        return change

    return await live(session).change(channel.id, decide)


@router.command("question.upvote")
async def upvote(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _vote(session, d, up=True)


@router.command("question.unvote")
async def unvote(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    return await _vote(session, d, up=False)


async def _vote(session: Session, d: dict[str, Any], *, up: bool) -> dict[str, Any]:
    channel = await taking_part(session, d["channel"])
    me = user_id(session)

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        question = _question_in(fold.state, d["question"])
        if question["hidden"]:
            raise conflict("this question is hidden")
        change = Change(reply={"question": question})
        if await session.agora.store.upvoted(question["id"], me) == up:
            return change
        question["votes"] += 1 if up else -1
        statement = ADD_UPVOTE if up else DROP_UPVOTE
        values = (question["id"], me, fold.row.id) if up else (question["id"], me)
        change.writes += [
            Write(statement, values),
            counted(fold.row.id, me, "upvotes", 1 if up else -1),
        ]
        change.event("question.updated", {"question": question})
        return change

    return await live(session).change(channel.id, decide)


@router.command("question.answer")
async def answer(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])
    text = (d["text"] or "").strip()

    def change(question: dict[str, Any]) -> None:
        question["answered"] = True
        if text:
            question["answer"] = text

    return await _update(session, channel.id, d["question"], change)


@router.command("question.hide")
async def hide(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await taking_part(session, d["channel"])
    me = user_id(session)
    may_drive = await _may_drive(session, channel)

    def change(question: dict[str, Any]) -> None:
        if question["hidden"]:
            return
        if question.get("by") != me and not may_drive:
            raise ProtocolError(
                "only its asker or a facilitator hides a question",
                code=ErrorCode.FORBIDDEN,
                permission=str(Permission.RUN_WORKSHOPS),
            )
        question["hidden"] = True
        question.pop("by", None)

    return await _update(session, channel.id, d["question"], change)


async def _may_drive(session: Session, channel: Any) -> bool:
    try:
        await require_in(session, channel, Permission.RUN_WORKSHOPS)
    except ProtocolError:
        return False
    return True


async def _update(
    session: Session, channel_id: str, question_id: str, edit: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        before = _question_in(fold.state, question_id)
        question = copy.deepcopy(before)
        edit(question)
        change = Change(reply={"question": question})
        if question != before:
            change.event("question.updated", {"question": question})
        return change

    return await live(session).change(channel_id, decide)
