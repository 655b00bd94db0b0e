"""The end of a workshop: ``workshop.end``, the recap thread, the open questions carried
on as threads, and ``community.participation`` across a series.

``workshop.end`` stores ``workshop.ended`` with the whole recap, its thread
ids included, before it writes any thread; writing them is idempotent, so if
the server stops in between, the sweep (``LiveWorkshops``) finishes the job
and nothing is written twice.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from protocol.commands import MAX_MESSAGE_CHARS, MAX_TITLE_CHARS
from protocol.workshop import apply
from server.discussions.threads import THREAD_PARENTS
from server.domain.channels import readable_channel, require_in
from server.domain.communities import user_topic
from server.domain.permissions import Permission, has, require
from server.gateway.router import CommandRouter
from server.ids import new_id, now_ms
from server.store import Channel, Conflict, User
from server.store.workshops import COUNTS, END, WorkshopRow, Write
from server.workshops import breakouts, polls
from server.workshops.access import bad_request, driving, live, user_id
from server.workshops.live import Change, Fold

if TYPE_CHECKING:
    from server.app import Agora
    from server.gateway.session import Session

router = CommandRouter()


@router.command("workshop.end")
async def end(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    channel = await driving(session, d["channel"])
    target = channel
    if d["recap_channel"] is not None:
        target = await readable_channel(session, d["recap_channel"])
        if target.community_id != channel.community_id or target.kind not in THREAD_PARENTS:
            raise bad_request("a recap goes to a text, forum or workshop channel of this community")
        await require_in(session, target, Permission.POST)
    agora = session.agora
    closed_breakout: list[dict[str, Any]] = []

    async def decide(fold: Fold) -> Change:
        assert fold.state is not None
        state = copy.deepcopy(fold.state)
        now = now_ms()
        change = Change()
        if state["timer"] is not None:
            change.event("timer.ended", {"timer": state["timer"], "cancelled": True})
        closed_breakout.clear()
        if state["breakout"] is not None:
            closed_breakout.append(state["breakout"])
            breakouts.closing(change, state)
        for poll in state["polls"]:
            if not poll["closed"]:
                polls.closing(change, copy.deepcopy(poll))
        final = state
        for t, event_d in change.events:
            final = apply(final, {"t": t, "d": event_d})
        assert final is not None
        recap = await _recap(agora, fold.row, final, now, target.id)
        plan = {"recap": recap, "by": user_id(session)}
        change.event("workshop.ended", {"workshop": dict(final, ended_ts=now), "recap": recap})
        change.writes.append(Write(END, (now, json.dumps(plan), fold.row.id)))
        change.reply = {"recap": recap}
        return change

    reply = await live(session).change(channel.id, decide)
    for breakout in closed_breakout:
        await breakouts.archive_groups(agora, breakout)
    row = await agora.store.workshop(reply["recap"]["id"])
    if row is not None:
        await write_recap(agora, row)
    return reply


async def _recap(
    agora: Agora, row: WorkshopRow, final: dict[str, Any], ended_ts: int, channel_id: str
) -> dict[str, Any]:
    store = agora.store
    agenda = copy.deepcopy(final["agenda"])
    current = final["current"]
    if 0 <= current < len(agenda) and "ended_ts" not in agenda[current]:
        agenda[current]["ended_ts"] = ended_ts
    results = []
    for poll in final["polls"]:
        poll = copy.deepcopy(poll)
        if not poll["anonymous"]:
            poll["ballots"] = await store.poll_ballots(poll["id"])
        results.append(poll)
    questions = []
    for question in final["questions"]:
        if question["hidden"]:
            continue
        question = copy.deepcopy(question)
        if not question["answered"]:
            question["thread"] = new_id()
        questions.append(question)
    turns = final["hands"]["turns"]
    people = sorted(await store.people(row.id), key=lambda p: p.user_id)
    return {
        "id": row.id,
        "thread": new_id(),
        "channel": channel_id,
        "title": final["title"],
        "started_ts": final["started_ts"],
        "ended_ts": ended_ts,
        "agenda": agenda,
        "polls": results,
        "questions": questions,
        "speakers": [
            {"user": u, "turns": n} for u, n in sorted(turns.items(), key=lambda x: (-x[1], x[0]))
        ],
        "reports": copy.deepcopy(final["reports"]),
        "participation": [{"user": p.user_id, **p.counts()} for p in people],
    }


async def write_recap(agora: Agora, row: WorkshopRow) -> None:
    """Write the recap thread and the open questions' threads, once (see the module)."""
    if row.recap is None or row.recap_done:
        return
    store = agora.store
    recap, by = row.recap["recap"], await store.user(row.recap["by"])
    parent = await store.channel(recap["channel"])
    if by is None or parent is None:  # gone since: nothing to write into
        await store.set_recap_done(row.id)
        return
    named = {p["user"] for p in recap["participation"]} | {r["by"] for r in recap["reports"]}
    names = {u: user.display_name for u in named if (user := await store.user(u)) is not None}
    text = recap_markdown(recap, names, by.id)
    extra = {"recap": recap}
    await open_thread(agora, parent, recap["thread"], recap["title"], by, text, [], extra)
    for question in recap["questions"]:
        asker = await store.user(question["by"]) if "thread" in question else None
        if asker is None:
            continue
        followers = await store.upvoters(question["id"])
        title = question["text"][:MAX_TITLE_CHARS]
        await open_thread(
            agora, parent, question["thread"], title, asker, question["text"], followers, {}
        )
    await store.set_recap_done(row.id)


async def open_thread(
    agora: Agora,
    parent: Channel,
    thread_id: str,
    title: str,
    author: User,
    text: str,
    followers: list[str],
    extra: dict[str, Any],
) -> None:
    """A thread opened by ``author`` with ``text``, followed by them and ``followers``;
    each step is skipped when an earlier attempt did it."""
    store = agora.store
    now = now_ms()
    thread = Channel(
        thread_id,
        parent.community_id,
        thread_id,
        "thread",
        parent.id,
        title=title,
        created_by=author.id,
        last_ts=now,
    )
    try:
        await store.create_thread(thread)
        created = True
    except Conflict:
        created = False
    public = thread.public()
    if created:
        await agora.publish(parent.id, "thread.created", {"thread": public, "by": author.id})
    for follower in dict.fromkeys([author.id, *followers]):
        await store.follow(thread_id, follower, True)
        await agora.publish_ephemeral(
            user_topic(follower), "thread.followed", follower, {"thread": public, "following": True}
        )
    message = {
        "id": new_id(),
        "channel": thread_id,
        "author": {"id": author.id, "name": author.display_name, "bot": author.bot},
        "text": text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…",
        "ts": now,
        "reactions": [],
        **extra,
    }
    await agora.publish(
        thread_id, "message.created", {"message": message}, idempotency=(author.id, thread_id)
    )


def recap_markdown(recap: dict[str, Any], names: dict[str, str], by: str) -> str:
    """The recap as a person reads it (``by``: who ran it, never listed as silent)."""

    def who(user: str) -> str:
        return names.get(user, "someone")

    minutes = max(1, round((recap["ended_ts"] - recap["started_ts"]) / 60_000))
    attended = len(recap["participation"])
    lines = [f"## Recap: {recap['title']}", f"{minutes} min, {attended} attended"]
    if recap["agenda"]:
        lines += ["", "### Agenda"]
        for number, item in enumerate(recap["agenda"], 1):
            planned = f", {item['minutes']} min planned" if "minutes" in item else ""
            if "started_ts" in item and "ended_ts" in item:
                ran = max(0, round((item["ended_ts"] - item["started_ts"]) / 60_000))
                lines.append(f"{number}. {item['title']} (ran {ran} min{planned})")
            else:
                lines.append(f"{number}. {item['title']} (not reached{planned})")
    for poll in recap["polls"]:
        kind = "anonymous poll" if poll["anonymous"] else "poll"
        lines += ["", f"### Poll: {poll['question']}", f"{kind}, {poll['voters']} voted"]
        for option, tally in zip(poll["options"], poll["tallies"], strict=True):
            share = round(100 * tally / poll["voters"]) if poll["voters"] else 0
            lines.append(f"- {option}: {tally} ({share}%)")
    if recap["questions"]:
        lines += ["", "### Questions"]
        for question in recap["questions"]:
            state = "answered" if question["answered"] else "open, carried on in its own thread"
            votes = _plural(question["votes"], "vote")
            lines.append(f"- **{question['text']}** ({votes}, {state})")
            if question.get("answer"):
                lines.append(f"  - {question['answer']}")
    if recap["speakers"]:
        lines += ["", "### Who spoke"]
        lines += [f"- {who(s['user'])}: {_plural(s['turns'], 'turn')}" for s in recap["speakers"]]
    if recap["reports"]:
        lines += ["", "### Breakout reports"]
        lines += [f"- {who(r['by'])}: {r['text']}" for r in recap["reports"]]
    silent = [p["user"] for p in recap["participation"] if not _took_part(p)]
    silent = [u for u in silent if u != by]
    if silent:
        lines += ["", "### Attended without taking part", ", ".join(who(u) for u in silent)]
    return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _took_part(counts: dict[str, int]) -> bool:
    return any(counts[k] for k in COUNTS if k != "turns")


@router.command("community.participation")
async def participation(session: Session, d: dict[str, Any]) -> dict[str, Any]:
    store = session.agora.store
    await require(store, d["community"], user_id(session), Permission.READ_PARTICIPATION)
    rows = await store.recent_workshops(d["community"], d["sessions"])
    members = await store.members(d["community"])
    totals = {user.id: dict.fromkeys(("attended", *COUNTS), 0) for user, _ in members}
    runs = {user.id for user, role in members if has(role, Permission.RUN_WORKSHOPS)}
    for row in rows:
        for person in await store.people(row.id):
            counts = totals.get(person.user_id)
            if counts is not None:
                counts["attended"] += 1
                for k, n in person.counts().items():
                    counts[k] += n
    return {
        "sessions": [row.session() for row in rows],
        "members": [{"user": user, **counts} for user, counts in totals.items()],
        "silent": [
            u for u, c in totals.items() if c["attended"] and not _took_part(c) and u not in runs
        ],
    }
