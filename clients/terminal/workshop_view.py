"""A workshop as text, for ``agora chat``: the side panel, ``/workshop`` and the lines
that mark what happened in the transcript.

No I/O and no UI: the workshop is what ``Client.workshops`` keeps (the fold of
``protocol.workshop``), and ``names`` maps user ids to display names.

Polls are numbered in creation order and questions in the order they were asked,
from 1, so a number stays the same while votes reorder the list: ``/vote 2 1``
and ``/upvote 3`` use these numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clients.workshops import Followed

#: Questions the panel lists (most votes first).
TOP_QUESTIONS = 5
#: Closed polls the panel still lists (the latest).
CLOSED_POLLS = 2
#: Width of a tally bar at its longest.
BAR = 10
PULSE_SIGNS = {"agree": "agree", "confused": "confused", "slower": "slower", "faster": "faster"}


def name_of(names: Mapping[str, str], user: str | None, me: str = "") -> str:
    if user is None:
        return "someone"
    if user == me:
        return "you"
    return names.get(user, "someone")


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour) of a time left, never below 0:00."""
    left = max(0, int(seconds + 0.999))
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def questions_by_number(workshop: dict[str, Any]) -> list[dict[str, Any]]:
    """The questions in the order they were asked: question N is item N-1."""
    return sorted(workshop["questions"], key=lambda q: (q["ts"], q["id"]))


def question_number(workshop: dict[str, Any], question_id: str) -> int | None:
    for n, question in enumerate(questions_by_number(workshop), 1):
        if question["id"] == question_id:
            return n
    return None


def poll_number(workshop: dict[str, Any], poll_id: str) -> int | None:
    for n, poll in enumerate(workshop["polls"], 1):
        if poll["id"] == poll_id:
            return n
    return None


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def panel(followed: Followed, names: Mapping[str, str], me: str, now_ms: float) -> list[str]:
    """The workshop as the side panel shows it, one string per line."""
    workshop = followed.workshop
    if workshop is None:
        lines = ["No workshop is live here."]
        if followed.recap is not None:
            lines.append(f"Last: {followed.recap.get('title', '')} (recap in its thread)")
        return lines
    lines = [f"Workshop: {workshop['title']}"]
    lines += _agenda(workshop)
    timer = workshop.get("timer")
    if timer is not None:
        label = f"{timer['label']} " if timer.get("label") else ""
        lines.append(f"Timer: {label}{clock((timer['ends_at'] - now_ms) / 1000)} left")
    lines += _hands(workshop, names, me)
    lines += _polls(workshop, followed)
    lines += _questions(workshop, followed)
    pulse = workshop.get("pulse") or {}
    if any(pulse.values()):
        lines.append("Pulse: " + ", ".join(f"{k} {pulse[k]}" for k in PULSE_SIGNS if pulse.get(k)))
    breakout = workshop.get("breakout")
    if breakout is not None:
        mine = [g for g in breakout["groups"] if me in g.get("members", [])]
        groups = _count(len(breakout["groups"]), "group")
        lines.append(f"Breakout: you are in {mine[0]['name']}" if mine else f"Breakout: {groups}")
    return lines


def _agenda(workshop: dict[str, Any]) -> list[str]:
    agenda, current = workshop["agenda"], workshop["current"]
    if not agenda:
        return []
    lines = ["Agenda:"]
    for i, item in enumerate(agenda):
        mark = "▶" if i == current else "✓" if "ended_ts" in item else " "
        minutes = f" ({item['minutes']} min)" if item.get("minutes") else ""
        lines.append(f" {mark} {i + 1}. {item['title']}{minutes}")
    return lines


def _hands(workshop: dict[str, Any], names: Mapping[str, str], me: str) -> list[str]:
    hands = workshop["hands"]
    queue, speaking = hands["queue"], hands.get("speaking")
    if not queue and speaking is None:
        return ["Hands: none raised (/hand)"]
    lines = [f"Hands ({hands['order']}):"]
    if speaking is not None:
        lines.append(f" speaking: {name_of(names, speaking, me)}")
    for place, hand in enumerate(queue, 1):
        lines.append(f" {place}. {name_of(names, hand['user'], me)}")
    place = next((i for i, h in enumerate(queue, 1) if h["user"] == me), None)
    if place is not None:
        lines.append(f" your hand is {ordinal(place)} in line")
    return lines


def _polls(workshop: dict[str, Any], followed: Followed) -> list[str]:
    polls = list(enumerate(workshop["polls"], 1))
    shown = [(n, p) for n, p in polls if not p["closed"]]
    shown += [(n, p) for n, p in polls if p["closed"]][-CLOSED_POLLS:]
    lines: list[str] = []
    for n, poll in sorted(shown, key=lambda np: np[0]):
        state = "closed" if poll["closed"] else "open"
        lines.append(f"Poll {n} ({state}, {_count(poll['voters'], 'vote')}):")
        lines.append(f"  {poll['question']}")
        ballot = followed.ballot(poll["id"]) or []
        most = max(poll["tallies"], default=0) or 1
        for i, (option, tally) in enumerate(zip(poll["options"], poll["tallies"], strict=False)):
            bar = "█" * max(1, round(BAR * tally / most)) + " " if tally else ""
            chosen = " ✓" if i in ballot else ""
            lines.append(f"  {i + 1}. {option} {bar}{tally}{chosen}")
    return lines


def _questions(workshop: dict[str, Any], followed: Followed) -> list[str]:
    visible = [q for q in workshop["questions"] if not q.get("hidden")]
    if not visible:
        return []
    number = {q["id"]: n for n, q in enumerate(questions_by_number(workshop), 1)}
    lines = ["Questions (/upvote N):"]
    for question in visible[:TOP_QUESTIONS]:
        up = "▲" if followed.upvoted(question["id"]) else "△"
        answered = " (answered)" if question.get("answered") else ""
        lines.append(
            f" {number[question['id']]}. {up}{question['votes']} {question['text']}{answered}"
        )
    if len(visible) > TOP_QUESTIONS:
        lines.append(f" … and {len(visible) - TOP_QUESTIONS} more (/workshop)")
    return lines


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def everything(followed: Followed, names: Mapping[str, str], me: str, now_ms: float) -> list[str]:
    """What ``/workshop`` prints: the panel, with every question."""
    lines = panel(followed, names, me, now_ms)
    workshop = followed.workshop
    if workshop is None:
        return lines
    visible = [q for q in workshop["questions"] if not q.get("hidden")]
    if len(visible) > TOP_QUESTIONS:
        cut = next(i for i, line in enumerate(lines) if line.startswith(" … and "))
        number = {q["id"]: n for n, q in enumerate(questions_by_number(workshop), 1)}
        more = [
            f" {number[q['id']]}. {'▲' if followed.upvoted(q['id']) else '△'}{q['votes']} "
            f"{q['text']}{' (answered)' if q.get('answered') else ''}"
            for q in visible[TOP_QUESTIONS:]
        ]
        lines[cut : cut + 1] = more
    return lines


def event_line(
    t: str, d: dict[str, Any], names: Mapping[str, str], workshop: dict[str, Any] | None
) -> str | None:
    """The transcript line marking a workshop event, or None for those the panel shows.

    ``workshop`` is the live one as kept, if any: it names the agenda item an
    ``agenda.moved`` moved onto, when it is that same move.
    """
    if t == "workshop.started":
        started = d["workshop"]
        who = names.get(started.get("by", ""), "someone")
        return f"{who} started '{started['title']}' (/workshop shows it)"
    if t == "workshop.ended":
        return f"'{d['workshop']['title']}' ended; the recap is in a thread here"
    if t == "agenda.moved":
        title = ""
        if workshop is not None and 0 <= d["current"] < len(workshop["agenda"]):
            item = workshop["agenda"][d["current"]]
            if item.get("started_ts") == d["started_ts"]:
                title = f": {item['title']}"
        return f"agenda item {d['current'] + 1}{title}"
    if t == "poll.created":
        poll = d["poll"]
        n = poll_number(workshop, poll["id"]) if workshop is not None else None
        vote = f" (/vote {n} N)" if n is not None else ""
        return f"poll: {poll['question']}{vote}"
    if t == "poll.closed":
        poll = d["poll"]
        results = ", ".join(
            f"{o} {c}" for o, c in zip(poll["options"], poll["tallies"], strict=False)
        )
        return f"poll closed: {poll['question']} ({results})"
    if t == "timer.ended" and not d.get("cancelled"):
        label = d["timer"].get("label")
        return f"time is up: {label}" if label else "time is up"
    if t == "breakout.opened":
        return f"breakouts open: {_count(len(d['breakout']['groups']), 'group')}"
    if t == "breakout.closed":
        return "the breakouts closed"
    return None
