# ruff: noqa: F811  (the fixtures imported from test_browser are arguments of the tests)
"""The web client's workshop view (docs/protocol.md §5.10) in a real browser.

Uses the fixtures of ``tests/test_browser.py`` (Debian's Chromium through
Playwright, a fresh deployment per test, both deployments). Each person has a
browser context of their own; pages open on the first node, and the Python
clients that set a scene talk to the last (in the scaled deployment, another
node).
"""

from __future__ import annotations

import contextlib
import copy
import re
from typing import Any

import pytest

from clients import Client
from protocol.workshop import apply
from tests.test_browser import (  # noqa: F401  (fixtures)
    CONTRAST,
    UNLABELLED,
    MakeServer,
    Tab,
    account,
    browser,
    open_tab,
    shoot,
)

with contextlib.suppress(ImportError):  # reported by the `browser` fixture
    from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHANNEL = "planning"


async def command(server: Any, token: str, op: str, d: dict[str, Any]) -> dict[str, Any]:
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=token) as c:
        return await c.request(op, d)


async def setup(server: Any, *names: str) -> tuple[list[dict[str, Any]], str, str]:
    """Accounts (the first owns the community), the community's id, and a new
    workshop channel's id."""
    users = [await account(server, name) for name in names]
    async with Client(server.nodes[-1].ws, token=users[0]["token"]) as c:
        community = c.identity["communities"][0]["id"]
        made = await c.request(
            "channel.create", {"community": community, "name": CHANNEL, "kind": "workshop"}
        )
    return users, community, made["channel"]["id"]


async def accessible(tab: Tab) -> None:
    """What is on screen passes the contrast and label checks of test_browser.py."""
    assert await tab.page.evaluate(CONTRAST) == []
    assert await tab.page.evaluate(UNLABELLED) == []


async def open_workshop(tab: Tab) -> Any:
    """Select the workshop channel in the sidebar; the workshop pane."""
    page = tab.page
    await page.locator("#sidebar .channel").filter(
        has=page.locator(".channel-name", has_text=re.compile(f"^{CHANNEL}$"))
    ).click()
    await expect(page.locator("#channel-title")).to_have_text(f"# {CHANNEL}")
    pane = page.locator("#workshop-view")
    await expect(pane).to_be_visible()
    await expect(pane.get_by_text("Loading the workshop…")).to_have_count(0)
    return pane


def poll_card(pane: Any, question: str) -> Any:
    return pane.locator(".ws-poll").filter(has_text=question)


def question_texts(pane: Any) -> Any:
    return pane.locator(".ws-questions .ws-q-text")


# The fold


async def test_the_browser_fold_is_protocol_workshop_apply(
    make_server: MakeServer, open_tab: Any
) -> None:
    """workshop_state.js folds a real workshop's events (every kind) exactly as
    protocol/workshop.py does, from the start and from a snapshot part way."""
    server = make_server()
    (fay, ann, bob), _, ws = await setup(server, "Fay", "Ann", "Bob")
    ann_id, bob_id = ann["user"]["id"], bob["user"]["id"]
    async with (
        Client(server.nodes[-1].ws, token=fay["token"]) as f,
        Client(server.nodes[0].ws, token=ann["token"]) as a,
        Client(server.nodes[-1].ws, token=bob["token"]) as b,
    ):
        await a.request("subscribe", {"channel": ws})
        await b.request("subscribe", {"channel": ws})
        agenda = [{"title": "Open", "minutes": 5}, {"title": "Ideas"}, {"title": "Close"}]
        await f.request("workshop.start", {"channel": ws, "title": "Fold", "agenda": agenda})
        await f.request("agenda.next", {"channel": ws})
        await f.request("agenda.next", {"channel": ws})
        await a.request("hand.raise", {"channel": ws})
        await f.request("hand.call", {"channel": ws})
        await a.request("hand.raise", {"channel": ws})
        await b.request("hand.raise", {"channel": ws})
        await f.request("hand.order", {"channel": ws, "order": "fair"})
        snapshot = await b.request("workshop.state", {"channel": ws})
        poll = (
            await f.request(
                "poll.create", {"channel": ws, "question": "Which?", "options": ["x", "y"]}
            )
        )["poll"]
        await a.request("poll.vote", {"channel": ws, "poll": poll["id"], "choices": [0]})
        await b.request("poll.vote", {"channel": ws, "poll": poll["id"], "choices": [1]})
        await f.request("poll.close", {"channel": ws, "poll": poll["id"]})
        q1 = (await a.request("question.ask", {"channel": ws, "text": "First?"}))["question"]
        q2 = (await b.request("question.ask", {"channel": ws, "text": "Second?"}))["question"]
        await a.request("question.upvote", {"channel": ws, "question": q2["id"]})
        await f.request("question.answer", {"channel": ws, "question": q1["id"], "text": "Yes"})
        await f.request("question.hide", {"channel": ws, "question": q2["id"]})
        await f.request("timer.cancel", {"channel": ws})  # the first item's
        await f.request("timer.start", {"channel": ws, "seconds": 600, "label": "Think"})
        await f.request("timer.extend", {"channel": ws, "seconds": 60})
        await f.request("timer.cancel", {"channel": ws})
        await a.request("pulse.send", {"channel": ws, "kind": "confused"})
        breakout = (
            await f.request(
                "breakout.open",
                {"channel": ws, "groups": 2, "minutes": 3, "assignment": [[ann_id], [bob_id]]},
            )
        )["breakout"]
        room = breakout["groups"][0]["channel"]
        await a.request("breakout.report", {"channel": room, "text": "We agree"})
        await f.request("breakout.close", {"channel": ws})
        live_state = await f.request("workshop.state", {"channel": ws})
        events = (await f.request("history", {"channel": ws, "limit": 100}))["events"]
    kinds = {e["t"] for e in events}
    assert kinds >= {
        "workshop.started", "agenda.moved", "hands.updated", "poll.created", "poll.updated",
        "poll.closed", "question.asked", "question.updated", "timer.started", "timer.ended",
        "breakout.opened", "breakout.reported", "breakout.closed", "pulse.updated",
    }  # fmt: skip

    tab = await open_tab(server.nodes[0], fay["token"])
    fold_js = """async ([start, events]) => {
      const { apply } = await import('/workshop_state.js');
      let state = start;
      for (const e of events) state = apply(state, e);
      return state;
    }"""
    python = None
    for event in events:
        python = apply(python, copy.deepcopy(event))
    assert python == live_state["workshop"]
    assert await tab.page.evaluate(fold_js, [None, events]) == python
    # From a snapshot part way, skipping what it already has.
    later = [e for e in events if e["o"] > snapshot["offset"]]
    assert await tab.page.evaluate(fold_js, [snapshot["workshop"], later]) == python
    # The end.
    ended = {"t": "workshop.ended", "d": {"workshop": python, "recap": {}}, "o": 10**6}
    assert await tab.page.evaluate(fold_js, [python, [ended]]) is None
