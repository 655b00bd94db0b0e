"""Workshops on the wire: limits, payload checks, and the fold.

A live workshop's state is a fold of its channel's durable workshop events:
``apply(state, event)`` for each, in offset order, starting from ``None``. The
server keeps its state that way and so can every client, which is why a
restart, a late joiner and the recap agree by construction. The fold is pure
and deterministic; it never looks at the clock.
"""

from __future__ import annotations

import copy
from typing import Any

#: The durable events of a workshop channel that change its workshop's state.
WORKSHOP_EVENTS = frozenset(
    {
        "workshop.started",
        "agenda.moved",
        "hands.updated",
        "poll.created",
        "poll.updated",
        "poll.closed",
        "question.asked",
        "question.updated",
        "timer.started",
        "timer.ended",
        "breakout.opened",
        "breakout.reported",
        "breakout.closed",
        "pulse.updated",
        "workshop.ended",
    }
)

MAX_WORKSHOP_TITLE = 200
MAX_AGENDA_ITEMS = 50
MAX_ITEM_MINUTES = 24 * 60
MAX_POLL_OPTIONS = 10
MAX_OPTION_CHARS = 200
MAX_QUESTION_CHARS = 1000
MAX_ANSWER_CHARS = 4000
MAX_REPORT_CHARS = 4000
#: Most breakout reports one workshop holds.
MAX_REPORTS = 200
#: Most polls and questions one workshop holds (the next answers ``too_large``).
MAX_POLLS = 100
MAX_QUESTIONS = 500
MAX_TIMER_S = 6 * 3600
MAX_GROUPS = 50
MAX_BREAKOUT_MINUTES = 24 * 60
#: Most workshops ``community.participation`` looks back over, and its default.
MAX_SESSIONS = 50
DEFAULT_SESSIONS = 5
PULSE_KINDS = ("agree", "confused", "slower", "faster")
#: How long a participant's latest pulse counts.
PULSE_WINDOW_MS = 60_000
HAND_ORDERS = ("fifo", "fair")


class TooLarge(ValueError):
    """A payload part over its limit (``too_large``; other ``ValueError``s are ``bad_request``)."""


def _text(value: Any, most: int, what: str) -> str:
    """``value``, if it is a string of 1 to ``most`` characters that UTF-8 can carry (a
    JSON escape can smuggle in a lone surrogate)."""
    if isinstance(value, str) and len(value) > most:
        raise TooLarge(f"{what} is over the limit of {most} characters")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is a string of 1 to {most} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode") from None
    return value


def agenda_of(raw: list[Any]) -> list[dict[str, Any]]:
    """The agenda as kept: ``[{title, minutes?}]``; raises ``ValueError``."""
    if len(raw) > MAX_AGENDA_ITEMS:
        raise ValueError(f"an agenda has at most {MAX_AGENDA_ITEMS} items")
    items: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("each agenda item is a map {title, minutes?}")
        title, minutes = item.get("title"), item.get("minutes")
        kept: dict[str, Any] = {
            "title": _text(title, MAX_WORKSHOP_TITLE, "an item's title").strip()
        }
        if minutes is not None:
            if (
                not isinstance(minutes, int)
                or isinstance(minutes, bool)
                or not 1 <= minutes <= MAX_ITEM_MINUTES
            ):
                raise ValueError(f"an agenda item's minutes are 1 to {MAX_ITEM_MINUTES}")
            kept["minutes"] = minutes
        items.append(kept)
    return items


def options_of(raw: list[Any]) -> list[str]:
    """A poll's options as kept; raises ``ValueError``."""
    if not 2 <= len(raw) <= MAX_POLL_OPTIONS:
        raise ValueError(f"a poll has 2 to {MAX_POLL_OPTIONS} options")
    options = []
    for option in raw:
        options.append(_text(option, MAX_OPTION_CHARS, "an option").strip())
    return options


def choices_of(raw: list[Any], options: int, multi: bool) -> list[int]:
    """A ballot's choices, sorted; raises ``ValueError``."""
    if not raw:
        raise ValueError("a vote chooses at least one option")
    if not multi and len(raw) > 1:
        raise ValueError("this poll takes one choice")
    choices = set()
    for choice in raw:
        if not isinstance(choice, int) or isinstance(choice, bool) or not 0 <= choice < options:
            raise ValueError(f"a choice is an option's index, 0 to {options - 1}")
        choices.add(choice)
    return sorted(choices)


def assignment_of(raw: list[Any], groups: int) -> list[list[str]]:
    """Groups of user ids as given (each user once); raises ``ValueError``."""
    if len(raw) != groups:
        raise ValueError("an assignment lists one group of user ids per group")
    seen: set[str] = set()
    out = []
    for group in raw:
        if not isinstance(group, list):
            raise ValueError("each group of an assignment is a list of user ids")
        for user in group:
            _text(user, 64, "a user id")
        if seen.intersection(group) or len(set(group)) != len(group):
            raise ValueError("a user is in one group at most")
        seen.update(group)
        out.append(list(group))
    return out


def queue_in_order(queue: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """The hand queue in its one authoritative order.

    ``fifo``: by ``raised_ts``; ``fair``: fewest ``turns`` first, then by
    ``raised_ts``. Ties fall to the user id, so every node sorts alike.
    """
    if order == "fair":
        return sorted(queue, key=lambda h: (h["turns"], h["raised_ts"], h["user"]))
    return sorted(queue, key=lambda h: (h["raised_ts"], h["user"]))


def question_order(question: dict[str, Any]) -> tuple[int, int, str]:
    """Most votes first, then the earliest asked."""
    return (-question["votes"], question["ts"], question["id"])


def apply(state: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any] | None:
    """The workshop after one event of its channel (events of other kinds change nothing).

    ``state`` is changed in place where it can be; use the returned value.
    """
    t, d = event.get("t"), event.get("d") or {}
    if t == "workshop.started":
        return copy.deepcopy(d["workshop"])
    if state is None or t not in WORKSHOP_EVENTS:
        return state
    if t == "workshop.ended":
        return None
    if t == "agenda.moved":
        agenda, at = state["agenda"], d["started_ts"]
        if 0 <= state["current"] < len(agenda):
            agenda[state["current"]]["ended_ts"] = at
        state["current"] = d["current"]
        item = agenda[d["current"]]
        item["started_ts"] = at
        item.pop("ended_ts", None)
    elif t == "hands.updated":
        state["hands"] = copy.deepcopy(d["hands"])
    elif t in ("poll.created", "poll.updated", "poll.closed"):
        _replace(state["polls"], d["poll"])
    elif t in ("question.asked", "question.updated"):
        _replace(state["questions"], d["question"])
        state["questions"].sort(key=question_order)
    elif t == "timer.started":
        state["timer"] = copy.deepcopy(d["timer"])
    elif t == "timer.ended":
        if state["timer"] is not None and state["timer"]["id"] == d["timer"]["id"]:
            state["timer"] = None
    elif t == "breakout.opened":
        state["breakout"] = copy.deepcopy(d["breakout"])
    elif t == "breakout.reported":
        state["reports"].append({"group": d["group"], "text": d["text"], "by": d["by"]})
    elif t == "breakout.closed":
        state["breakout"] = None
    elif t == "pulse.updated":
        state["pulse"] = dict(d["counts"])
    return state


def _replace(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    for i, old in enumerate(items):
        if old["id"] == item["id"]:
            items[i] = copy.deepcopy(item)
            return
    items.append(copy.deepcopy(item))


def new_workshop(
    workshop_id: str,
    channel: str,
    title: str,
    agenda: list[dict[str, Any]],
    by: str,
    started_ts: int,
) -> dict[str, Any]:
    """A workshop as ``workshop.started`` carries it."""
    return {
        "id": workshop_id,
        "channel": channel,
        "title": title,
        "by": by,
        "started_ts": started_ts,
        "agenda": agenda,
        "current": -1,
        "hands": {"order": "fifo", "queue": [], "speaking": None, "turns": {}},
        "polls": [],
        "questions": [],
        "timer": None,
        "breakout": None,
        "reports": [],
        "pulse": dict.fromkeys(PULSE_KINDS, 0),
    }
