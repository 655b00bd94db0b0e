# ruff: noqa: F811  (the fixtures imported from test_browser are arguments of the tests)
"""The web client's workshop view (docs/protocol.md §5.10) in a real browser.

Uses the fixtures of ``tests/test_browser.py`` (Debian's Chromium through
Playwright, a fresh deployment per test, both deployments). Each person has a
browser context of their own; pages open on the first node, and the Python
clients that set a scene talk to the last (in the scaled deployment, another
node).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
from typing import Any

import pytest

from clients import Client
from protocol.workshop import apply
from tests.conftest import timeout
from tests.test_browser import (  # noqa: F401  (fixtures)
    MakeServer,
    Tab,
    accessible,
    account,
    browser,
    command,
    open_tab,
    shoot,
)

with contextlib.suppress(ImportError):  # reported by the `browser` fixture
    from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHANNEL = "planning"


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


async def open_workshop(tab: Tab) -> Any:
    """Select the workshop channel in the sidebar; the workshop pane."""
    page = tab.page
    await (
        page.locator("#sidebar .channel")
        .filter(has=page.locator(".channel-name", has_text=re.compile(f"^{CHANNEL}$")))
        .click()
    )
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


# A whole workshop


async def test_a_facilitator_and_three_participants_run_a_whole_workshop(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    (fay, ann, bob, cy), community, ws = await setup(server, "Fay", "Ann", "Bob", "Cy")
    # The facilitator's screen is a tall one: the screenshot shows the agenda and the hands.
    tabs = [await open_tab(server, fay["token"], height=980)]
    tabs += [await open_tab(server, u["token"]) for u in (ann, bob, cy)]
    fay_tab, ann_tab, bob_tab, cy_tab = tabs
    people = tabs[1:]
    panes = [await open_workshop(tab) for tab in tabs]
    fay_pane, ann_pane, bob_pane, cy_pane = panes

    # Nothing runs yet: the facilitator gets the start form, the others a line.
    for pane in panes[1:]:
        await expect(pane.locator(".ws-none-text")).to_have_text("No workshop running.")
        await expect(pane.get_by_role("button", name="Start workshop")).to_have_count(0)
    start = fay_pane.locator("form.ws-start")
    await start.get_by_label("Title").fill("Planning day")
    await start.get_by_label("Item 1", exact=True).fill("Introductions")
    await start.get_by_role("button", name="Add an item").click()
    await expect(start.get_by_label("Item 2", exact=True)).to_be_focused()
    await fay_tab.page.keyboard.type("Ideas")
    await start.get_by_label("Minutes").nth(1).fill("10")
    await start.get_by_role("button", name="Add an item").click()
    await start.get_by_label("Item 3", exact=True).fill("Wrap-up")
    await start.get_by_role("button", name="Start workshop").click()

    # Everyone sees the agenda; the facilitator starts it and moves on.
    for pane in panes:
        await expect(pane.locator("#workshop-heading")).to_have_text("Planning day")
        await expect(pane.locator(".ws-item-name")).to_have_text(
            ["Introductions", "Ideas", "Wrap-up"]
        )
    await fay_pane.get_by_role("button", name="Start the agenda").click()
    for pane in panes:
        await expect(pane.locator(".ws-item[aria-current=step] .ws-item-name")).to_have_text(
            "Introductions"
        )
    await fay_pane.get_by_role("button", name="Next item").click()
    # "Ideas" is timeboxed: its 10 minutes count down for everyone, on the server's clock.
    for pane in panes:
        await expect(pane.locator(".ws-item[aria-current=step] .ws-item-name")).to_have_text(
            "Ideas"
        )
        await expect(pane.locator("#ws-timer-label")).to_have_text("Ideas")
        await expect(pane.locator("#ws-timer-left")).to_have_text(
            re.compile(r"^(10:00|9:[0-5]\d)$")
        )
    for pane in panes:
        await expect(pane.locator("#ws-timer-left")).to_have_text(re.compile(r"^9:5\d$"))

    # Hands: Ann speaks first; then she, Bob and Cy raise theirs. In fair order
    # Ann (one turn already) goes after the two who have not spoken.
    await ann_pane.get_by_role("button", name="Raise hand").click()
    await expect(ann_pane.locator(".ws-place")).to_have_text("Your place in the queue: 1 of 1.")
    await fay_pane.get_by_role("button", name="Call next").click()
    await expect(ann_pane.locator(".ws-place")).to_have_text("You are speaking.")
    await expect(ann_tab.page.locator("#notice")).to_have_text("It is your turn to speak.")
    await expect(bob_pane.locator(".ws-speaking")).to_have_text("Speaking: Ann")
    for pane in (ann_pane, bob_pane, cy_pane):
        await pane.get_by_role("button", name="Raise hand").click()
        await expect(pane.get_by_role("button", name="Lower hand")).to_have_attribute(
            "aria-pressed", "true"
        )
    queue = fay_pane.locator(".ws-queue-name")
    await expect(queue).to_have_text(["Ann", "Bob", "Cy"])
    await fay_pane.get_by_label("Fair: fewest turns first").check()
    for pane, who in zip(panes, ("Fay", "Ann", "Bob", "Cy"), strict=True):
        # each sees "You" for themselves
        order = ["You" if name == who else name for name in ("Bob", "Cy", "Ann")]
        await expect(pane.locator(".ws-queue-name")).to_have_text(order)
    reasons = fay_pane.locator(".ws-reason")
    await expect(reasons.nth(0)).to_have_text(re.compile(r"^0 turns · raised \d"))
    await expect(reasons.nth(2)).to_have_text(re.compile(r"^1 turn · raised \d"))
    await expect(bob_pane.locator(".ws-place")).to_have_text("Your place in the queue: 1 of 3.")
    await accessible(fay_tab)
    await fay_pane.evaluate("pane => { pane.scrollTop = 0; }")
    await shoot(fay_tab, "workshop-facilitator")
    await expect(ann_pane.locator(".ws-place")).to_have_text(
        "You are speaking. Your place in the queue: 3 of 3."
    )
    await fay_pane.get_by_role("button", name="Call next").click()
    await expect(bob_pane.locator(".ws-place")).to_have_text("You are speaking.")
    # A chosen person: Ann, though Cy is first.
    await fay_pane.get_by_role("button", name="Call Ann").click()
    await expect(ann_pane.locator(".ws-place")).to_have_text("You are speaking.")
    await expect(queue).to_have_text(["Cy"])
    await fay_pane.get_by_role("button", name="Lower Cy's hand").click()
    await expect(cy_pane.get_by_role("button", name="Raise hand")).to_have_attribute(
        "aria-pressed", "false"
    )
    await bob_pane.get_by_role("button", name="Raise hand").click()
    await cy_pane.get_by_role("button", name="Raise hand").click()
    await expect(queue).to_have_count(2)
    await fay_pane.get_by_role("button", name="Lower all").click()
    await expect(queue).to_have_count(0)
    await expect(bob_pane.get_by_role("button", name="Raise hand")).to_be_visible()

    # A poll: live bars for everyone; a vote can change until the poll closes.
    new_poll = fay_pane.locator("form.ws-poll-form")
    await new_poll.get_by_label("Question").fill("Which idea first?")
    await new_poll.get_by_label("Options").fill("Garden\nLibrary\nMarket")
    await new_poll.get_by_role("button", name="Create poll").click()
    for pane, choice in ((ann_pane, "Garden"), (bob_pane, "Library"), (cy_pane, "Garden")):
        card = poll_card(pane, "Which idea first?")
        await card.get_by_label(choice).check()
        await card.get_by_role("button", name="Vote").click()
        await expect(card.locator(".ws-your-vote")).to_have_text(f"Your vote: {choice}")
    counts = ["2 votes · 67%", "1 vote · 33%", "0 votes · 0%"]
    for pane in panes:
        await expect(poll_card(pane, "Which idea first?").locator(".ws-count")).to_have_text(counts)
    bars = poll_card(fay_pane, "Which idea first?").locator(".ws-fill")
    await expect(bars.nth(0)).to_have_attribute("style", "width: 67%;")
    bob_card = poll_card(bob_pane, "Which idea first?")
    await expect(bob_card.get_by_label("Library")).to_be_checked()
    await bob_card.get_by_label("Garden").check()
    await bob_card.get_by_role("button", name="Change vote").click()
    await expect(poll_card(ann_pane, "Which idea first?").locator(".ws-count")).to_have_text(
        ["3 votes · 100%", "0 votes · 0%", "0 votes · 0%"]
    )
    await poll_card(fay_pane, "Which idea first?").get_by_role("button", name="Close poll").click()
    for pane in panes:
        card = poll_card(pane, "Which idea first?")
        await expect(card).to_have_class(re.compile("closed"))
        await expect(card.get_by_label("Market")).to_be_disabled()
    await expect(bob_card.get_by_role("button", name="Change vote")).to_have_count(0)

    # Q&A: most votes first; an upvote toggles; hidden questions are the facilitator's to see.
    for pane, text in ((ann_pane, "Can we meet on Fridays?"), (bob_pane, "Who brings snacks?")):
        await pane.get_by_label("Ask a question").fill(text)
        await pane.get_by_role("button", name="Ask", exact=True).click()
    for pane in panes:
        await expect(question_texts(pane)).to_have_text(
            ["Can we meet on Fridays?", "Who brings snacks?"]
        )
    snacks = cy_pane.get_by_role("button", name="Upvote: Who brings snacks?")
    await snacks.click()
    await expect(snacks).to_have_attribute("aria-pressed", "true")
    for pane in panes:
        await expect(question_texts(pane)).to_have_text(
            ["Who brings snacks?", "Can we meet on Fridays?"]
        )
    await ann_pane.get_by_role("button", name="Upvote: Who brings snacks?").click()
    await expect(fay_pane.locator(".ws-q-count").first).to_have_text("2")
    await snacks.click()
    await expect(snacks).to_have_attribute("aria-pressed", "false")
    await expect(fay_pane.locator(".ws-q-count").first).to_have_text("1")
    await expect(
        ann_pane.get_by_role("button", name="Upvote: Can we meet on Fridays?")
    ).to_be_disabled()  # one's own
    await fay_pane.get_by_role("button", name="Answer: Can we meet on Fridays?").click()
    await fay_pane.get_by_label("Answer (optional)").fill("Yes, from May.")
    await fay_pane.get_by_role("button", name="Mark answered").click()
    fridays = ann_pane.locator(".ws-q").filter(has_text="Can we meet on Fridays?")
    await expect(fridays.locator(".ws-q-answer")).to_have_text("Answer: Yes, from May.")
    await expect(fridays.locator(".answered-mark")).to_be_visible()
    await cy_pane.get_by_label("Ask a question").fill("Buy my stuff")
    await cy_pane.get_by_label("Ask a question").press("Enter")
    await expect(question_texts(ann_pane)).to_have_count(3)
    await fay_pane.get_by_role("button", name="Hide: Buy my stuff").click()
    await expect(fay_pane.locator(".ws-q.hidden-q .ws-q-text")).to_have_text("Buy my stuff")
    for pane in panes[1:]:
        await expect(question_texts(pane)).to_have_count(2)

    # Pulse: counts for the facilitator.
    await ann_pane.get_by_role("button", name="Confused").click()
    await expect(ann_pane.locator(".ws-pulse-note")).to_contain_text("Sent: confused")
    await expect(fay_pane.locator("[data-count=confused]")).to_have_text("Confused 1")
    await accessible(fay_tab)
    await accessible(ann_tab)

    # Breakouts, by hand: Ann and Bob in Group 1, Cy in Group 2.
    opening = fay_pane.locator("form.ws-breakout-form")
    await opening.get_by_label("Groups", exact=True).fill("2")
    await opening.get_by_label("I choose").check()
    await opening.get_by_label("Ann", exact=True).select_option("0")
    await opening.get_by_label("Bob", exact=True).select_option("0")
    await opening.get_by_label("Cy", exact=True).select_option("1")
    await opening.get_by_label("Minutes").fill("15")
    await opening.get_by_role("button", name="Open breakouts").click()
    rooms = {ann_tab: "Group 1", bob_tab: "Group 1", cy_tab: "Group 2"}
    for tab, pane in zip(people, panes[1:], strict=True):
        await expect(pane.locator(".ws-my-group")).to_contain_text(f"You are in {rooms[tab]}")
        await expect(pane.locator("#ws-timer-label")).to_have_text("Breakouts")
    await expect(ann_pane.locator(".ws-my-group")).to_contain_text("with Bob.")
    await expect(fay_pane.locator(".ws-groups li")).to_have_count(2)
    for tab in people:
        await tab.page.get_by_role("button", name=f"Open {rooms[tab]}'s room").click()
        await expect(tab.page.locator("#channel-title")).to_have_text(f"# {rooms[tab]}")
        await expect(tab.page.locator("#room-bar")).to_be_visible()
    await ann_tab.send("Gardens need water")
    await expect(bob_tab.messages().locator(".text")).to_have_text(["Gardens need water"])
    await fay_pane.get_by_label("Message to every group").fill("Five minutes left")
    await fay_pane.get_by_role("button", name="Send to all groups").click()
    for tab in people:
        await expect(tab.messages().locator(".text").last).to_have_text("Five minutes left")
    for tab in people:
        await tab.page.get_by_label("Report back to the workshop").fill(
            f"{rooms[tab]} thinks so, says {await tab.page.locator('#me').inner_text()}"
        )
        await tab.page.get_by_role("button", name="Send report").click()
        await expect(tab.page.locator("#room-note")).to_have_text("Report sent to the workshop.")
    reports = fay_pane.locator(".ws-report-list li")
    await expect(reports).to_have_count(3)
    await expect(reports.first).to_contain_text("Group 1")
    await fay_pane.get_by_role("button", name="Close breakouts").click()
    # Back to the workshop, the reports kept.
    for tab in people:
        await expect(tab.page.locator("#channel-title")).to_have_text(f"# {CHANNEL}")
        await expect(tab.page.locator("#sidebar .channel.room")).to_have_count(0)
        await expect(tab.page.locator("#workshop-view .ws-report-list li")).to_have_count(3)

    # The end: a recap thread in the channel, linked for everyone.
    await fay_tab.page.get_by_role("button", name="End workshop").click()
    await fay_tab.page.get_by_role("dialog").get_by_role("button", name="End workshop").click()
    for pane in panes:
        await expect(pane.locator(".ws-none-text")).to_have_text("The workshop has ended.")
    # The recap, and the one question left unanswered (the hidden one is left out). Both
    # are written just after workshop.ended, which the panes showed (server/workshops/recap.py).
    wanted = ["Planning day", "Who brings snacks?"]
    deadline = asyncio.get_running_loop().time() + timeout(10)
    while True:
        threads = (await command(server, fay["token"], "thread.list", {"channel": ws}))["threads"]
        titles = sorted(t["thread"]["title"] for t in threads)
        if titles == wanted or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert titles == wanted, titles
    await ann_pane.get_by_role("button", name="Open the recap: Planning day").click()
    panel = ann_tab.page.locator("#thread-panel")
    await expect(panel.locator("#thread-title")).to_have_text("Planning day")
    await expect(panel.locator(".message").first).to_contain_text("Which idea first?")

    # Participation, in a dialog: Cy asked a question, so nobody was silent; Ann raised
    # her hand three times and took two turns.
    await fay_pane.get_by_role("button", name="Participation").click()
    dialog = fay_tab.page.get_by_role("dialog", name="Participation")
    ann_row = dialog.locator("tr").filter(has=fay_tab.page.get_by_role("rowheader", name="Ann"))
    await expect(ann_row.locator("td")).to_have_count(7)
    await expect(ann_row.locator("td").nth(0)).to_have_text("1")  # attended
    await expect(ann_row.locator("td").nth(3)).to_have_text("2")  # turns
    await expect(dialog.locator("#participation-sessions")).to_contain_text("Planning day")
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()
    del community


# Focused tests


async def live_workshop(server: Any, token: str, ws: str) -> dict[str, Any]:
    """A workshop with an agenda under way, a timer, a poll and a question."""
    agenda = [{"title": "Welcome"}, {"title": "A long discussion of the plan", "minutes": 20}]
    await command(
        server, token, "workshop.start", {"channel": ws, "title": "Team day", "agenda": agenda}
    )
    await command(server, token, "agenda.next", {"channel": ws})
    await command(server, token, "agenda.next", {"channel": ws})
    poll = {"channel": ws, "question": "Lunch at noon?", "options": ["Yes", "No, at one"]}
    await command(server, token, "poll.create", poll)
    return await command(
        server, token, "question.ask", {"channel": ws, "text": "Is there a plan B?"}
    )


async def live_setup(
    make_server: MakeServer, *names: str
) -> tuple[Any, list[dict[str, Any]], str, str]:
    """A new deployment, ``setup``'s accounts, community and workshop channel, and the
    first account's ``live_workshop`` in that channel."""
    server = make_server()
    users, community, ws = await setup(server, *names)
    await live_workshop(server, users[0]["token"], ws)
    return server, users, community, ws


async def test_on_a_phone_the_workshop_stacks_above_the_chat_without_overflow(
    make_server: MakeServer, open_tab: Any
) -> None:
    server, (fay, ann), _, ws = await live_setup(make_server, "Fay", "Ann")
    await command(server, fay["token"], "hand.raise", {"channel": ws})
    tab = await open_tab(server, ann["token"], width=375, height=740)
    page = tab.page
    await page.get_by_role("button", name="Channels").click()
    pane = await open_workshop(tab)
    await expect(pane.locator("#ws-timer-left")).to_have_text(re.compile(r"^(20:00|19:[0-5]\d)$"))
    card = poll_card(pane, "Lunch at noon?")
    await card.get_by_label("Yes").check()
    await card.get_by_role("button", name="Vote").click()
    await expect(card.locator(".ws-count").first).to_have_text("1 vote · 100%")
    # Stacked: the workshop above the conversation, the message box in view, and
    # nothing wider than the screen.
    pane_box = await pane.bounding_box()
    composer = await page.locator("#composer").bounding_box()
    assert pane_box is not None and composer is not None
    assert pane_box["y"] + pane_box["height"] <= composer["y"] + 1
    await expect(page.locator("#composer-send")).to_be_in_viewport()
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 375
    overflowing = await page.evaluate(
        """() => [...document.querySelectorAll('#workshop-view *')]
          .filter((e) => e.checkVisibility() && e.getBoundingClientRect().right > 375.5)
          .map((e) => e.outerHTML.slice(0, 80))"""
    )
    assert overflowing == []
    assert await pane.evaluate("e => e.scrollWidth <= e.clientWidth")
    await accessible(tab)
    await pane.evaluate("pane => { pane.scrollTop = 0; }")
    await shoot(tab, "workshop-phone")
    # The pane scrolls on its own: the questions are down there.
    await pane.get_by_label("Ask a question").scroll_into_view_if_needed()
    await expect(question_texts(pane)).to_have_text(["Is there a plan B?"])
    await expect(page.locator("#composer-send")).to_be_in_viewport()


async def test_a_hand_is_raised_and_lowered_by_keyboard_alone(
    make_server: MakeServer, open_tab: Any
) -> None:
    server, (fay, ann), _, ws = await live_setup(make_server, "Fay", "Ann")
    tab = await open_tab(server, ann["token"])
    page = tab.page
    # Ctrl+K to the channel list, down to the workshop, Enter: the message box has the focus.
    await page.keyboard.press("Control+k")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    await expect(page.locator("#channel-title")).to_have_text(f"# {CHANNEL}")
    await expect(page.locator("#composer-input")).to_be_focused()
    # Shift+Tab back into the workshop pane, to the hand button.
    raise_hand = page.get_by_role("button", name="Raise hand")
    for _ in range(30):
        await page.keyboard.press("Shift+Tab")
        if await raise_hand.evaluate("e => e === document.activeElement"):
            break
    await expect(raise_hand).to_be_focused()
    # The focus shows.
    outline = await raise_hand.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"
    await page.keyboard.press("Enter")
    lower = page.get_by_role("button", name="Lower hand")
    await expect(lower).to_have_attribute("aria-pressed", "true")
    await expect(lower).to_be_focused()  # kept through the redraw
    await expect(page.locator(".ws-place")).to_have_text("Your place in the queue: 1 of 1.")
    state = await command(server, fay["token"], "workshop.state", {"channel": ws})
    assert [h["user"] for h in state["workshop"]["hands"]["queue"]] == [ann["user"]["id"]]
    # Enter again (a Space here went unanswered twice in full CI runs, never alone: to
    # be found; see the issue 11 closing note)
    await page.keyboard.press("Enter")
    await expect(raise_hand).to_have_attribute("aria-pressed", "false")
    await expect(raise_hand).to_be_focused()
    state = await command(server, fay["token"], "workshop.state", {"channel": ws})
    assert state["workshop"]["hands"]["queue"] == []


FACILITATOR_BUTTONS = [
    "Next item", "Go to", "Call next", "Lower all", "Close poll", "Create poll", "Answer",
    "Hide", "Start timer", "Cancel timer", "Open breakouts", "Close breakouts",
    "End workshop", "Participation", "Send to all groups",
]  # fmt: skip


async def test_a_participant_sees_no_facilitator_controls_until_made_facilitator(
    make_server: MakeServer, open_tab: Any
) -> None:
    server, (fay, ann, bob), community, ws = await live_setup(make_server, "Fay", "Ann", "Bob")
    await command(server, bob["token"], "hand.raise", {"channel": ws})
    hidden = await command(server, bob["token"], "question.ask", {"channel": ws, "text": "Spam?"})
    await command(
        server, fay["token"], "question.hide", {"channel": ws, "question": hidden["question"]["id"]}
    )
    await command(
        server,
        fay["token"],
        "breakout.open",
        {"channel": ws, "groups": 1, "assignment": [[ann["user"]["id"], bob["user"]["id"]]]},
    )
    tab = await open_tab(server, ann["token"])
    page = tab.page
    pane = await open_workshop(tab)
    await expect(pane.locator(".ws-queue-name")).to_have_text(["Bob"])
    await expect(pane.locator(".ws-my-group")).to_contain_text("You are in Group 1 with Bob.")
    await expect(question_texts(pane)).to_have_text(["Is there a plan B?"])  # not the hidden one
    for name in FACILITATOR_BUTTONS:
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    await expect(pane.get_by_role("button", name=re.compile("^(Call|Lower) "))).to_have_count(0)
    await expect(pane.get_by_label("Queue order")).to_have_count(0)
    await expect(pane.locator("[data-count]")).to_have_count(0)  # pulse counts
    await expect(pane.get_by_role("button", name="Raise hand")).to_be_visible()
    await expect(pane.get_by_role("button", name="Agree")).to_be_visible()
    await accessible(tab)
    # Made a facilitator: the controls come at once, the hidden question too.
    await command(
        server,
        fay["token"],
        "member.role",
        {"community": community, "user": ann["user"]["id"], "role": "facilitator"},
    )
    await expect(pane.get_by_role("button", name="Call next")).to_be_visible()
    await expect(pane.get_by_role("button", name="Close breakouts")).to_be_visible()
    await expect(page.get_by_role("button", name="End workshop")).to_be_visible()
    await expect(question_texts(pane)).to_have_count(2)
    await expect(page.locator("#sidebar .channel.room")).to_have_count(1)


async def test_after_a_reload_your_vote_and_upvotes_come_back_from_the_server(
    make_server: MakeServer, open_tab: Any
) -> None:
    server, (fay, ann, bob), _, ws = await live_setup(make_server, "Fay", "Ann", "Bob")
    tab = await open_tab(server, ann["token"])
    pane = await open_workshop(tab)
    card = poll_card(pane, "Lunch at noon?")
    await card.get_by_label("No, at one").check()
    await card.get_by_role("button", name="Vote").click()
    await expect(card.locator(".ws-your-vote")).to_have_text("Your vote: No, at one")
    upvote = pane.get_by_role("button", name="Upvote: Is there a plan B?")
    await upvote.click()
    await expect(upvote).to_have_attribute("aria-pressed", "true")
    await tab.page.reload()
    await tab.online()
    # The page reopens the workshop channel: `mine` of the subscribe reply.
    await expect(tab.page.locator("#channel-title")).to_have_text(f"# {CHANNEL}")
    await expect(card.locator(".ws-your-vote")).to_have_text("Your vote: No, at one")
    await expect(card.get_by_label("No, at one")).to_be_checked()
    await expect(card.get_by_role("button", name="Change vote")).to_be_visible()
    await expect(upvote).to_have_attribute("aria-pressed", "true")
    await expect(pane.locator(".ws-q-count")).to_have_text(["1"])
    # Others' votes arrive live on top of the snapshot.
    poll = (await command(server, fay["token"], "workshop.state", {"channel": ws}))["workshop"]
    await command(
        server,
        bob["token"],
        "poll.vote",
        {"channel": ws, "poll": poll["polls"][0]["id"], "choices": [0]},
    )
    await expect(card.locator(".ws-count")).to_have_text(["1 vote · 50%", "1 vote · 50%"])


async def test_the_facilitator_runs_timers_and_the_agenda_for_everyone(
    make_server: MakeServer, open_tab: Any
) -> None:
    server, (fay, ann), _, ws = await live_setup(make_server, "Fay", "Ann")
    await command(server, fay["token"], "timer.cancel", {"channel": ws})  # the item's
    fay_tab = await open_tab(server, fay["token"])
    ann_tab = await open_tab(server, ann["token"])
    fay_pane, ann_pane = await open_workshop(fay_tab), await open_workshop(ann_tab)
    left = ann_pane.locator("#ws-timer-left")
    await expect(ann_pane.locator("#ws-timer")).to_be_hidden()
    timer = fay_pane.locator(".ws-card-timer")
    await timer.get_by_label("Minutes").fill("2")
    await timer.get_by_label("Label (optional)").fill("Think alone")
    await timer.get_by_role("button", name="Start timer").click()
    await expect(ann_pane.locator("#ws-timer-label")).to_have_text("Think alone")
    await expect(left).to_have_text(re.compile(r"^(2:00|1:[0-5]\d)$"))
    await timer.get_by_role("button", name="+1 minute").click()
    await expect(left).to_have_text(re.compile(r"^(3:00|2:[1-5]\d)$"))
    await timer.get_by_role("button", name="Cancel timer").click()
    await expect(ann_pane.locator("#ws-timer")).to_be_hidden()
    # A timer that runs out: "Time's up", until the server ends it (within about a second).
    await timer.get_by_label("Minutes").fill("0")
    await timer.get_by_label("Seconds").fill("2")
    await timer.get_by_role("button", name="Start timer").click()
    await expect(ann_pane.locator("#ws-timer")).to_be_visible()
    await expect(left).to_have_text(re.compile(r"^0:0[12]$"))
    await expect(ann_pane.locator("#ws-timer")).to_be_hidden()
    await expect(ann_pane.locator("#ws-live")).to_have_text("Time is up.")
    # Back to the first item, which has no timebox.
    await fay_pane.get_by_role("button", name="Go to item 1: Welcome").click()
    await expect(ann_pane.locator(".ws-item[aria-current=step] .ws-item-name")).to_have_text(
        "Welcome"
    )
    await expect(fay_pane.get_by_role("button", name="Next item")).to_be_enabled()
    # A new workshop channel from the channel dialog opens on its start form.
    page = fay_tab.page
    await page.get_by_role("button", name="Create a channel in Agora").click()
    dialog = page.get_by_role("dialog", name="Create a channel")
    await dialog.get_by_label("Name").fill("retro")
    await dialog.get_by_label("Kind").select_option("workshop")
    await dialog.get_by_role("button", name="Create").click()
    await expect(page.locator("#channel-title")).to_have_text("# retro")
    await expect(page.locator("#workshop-view form.ws-start")).to_be_visible()
    retro = page.locator("#sidebar .channel").filter(has_text="retro")
    await expect(retro).to_have_attribute("aria-label", "retro, workshop")
    await expect(ann_tab.page.locator("#sidebar .channel-name")).to_have_text(
        ["general", CHANNEL, "retro"]
    )
