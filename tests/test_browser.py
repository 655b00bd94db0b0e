"""The web client in a real browser: Debian's Chromium, driven by Playwright.

Each test starts its own deployment (so that channels hold only what the test
wrote) and opens pages on it. Pages open on the first node; accounts, Python
clients and a second page use the last. In the scaled deployment those are two
nodes, so what one page shows another page or client sent through the other. Screenshots of the main
views go to ``artifacts/screenshots/``; with ``AGORA_UPDATE_SCREENSHOTS=1`` also
to ``docs/screenshots/``, which the README shows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from clients import Client, register
from tests.agora_cli import ok, storage
from tests.conftest import ROOT, AgoraProcess, eventually, timeout

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # reported by the `browser` fixture
    async_playwright = None

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "artifacts" / "screenshots"
DOC_SHOTS = ROOT / "docs" / "screenshots"
PASSWORD = "correct horse battery"

pytestmark = pytest.mark.asyncio(loop_scope="module")

MakeServer = Callable[..., AgoraProcess]


def _missing() -> str | None:
    if async_playwright is None:
        return "playwright is not installed: pip install -e '.[test]'"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    return None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run: {reason}")
        pytest.skip(reason)
    expect.set_options(timeout=timeout(10) * 1000)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # This machine has no route out: keep Chromium from trying.
            args=[
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        await chromium.close()


class Tab:
    """A page of the web client, failing the test on any script error, and on anything
    the server's Content-Security-Policy refused (an inline style or script, a foreign
    connection: Chromium reports each on the console)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(message.text)

    def messages(self) -> Any:
        return self.page.locator("#message-list .message")

    async def texts(self) -> list[str]:
        return await self.page.locator("#message-list .message .text").all_inner_texts()

    async def send(self, text: str) -> None:
        await self.page.locator("#composer-input").fill(text)
        await self.page.keyboard.press("Enter")

    async def online(self) -> None:
        await expect(self.page.locator("#status")).to_have_attribute("data-state", "online")


@pytest_asyncio.fixture(loop_scope="module")
async def open_tab(browser: Browser) -> AsyncIterator[Callable[..., Awaitable[Tab]]]:
    """Open the client on a server in a fresh browser context (its own storage)."""
    contexts = []
    tabs: list[Tab] = []

    async def open_(
        server: AgoraProcess, token: str | None = None, *, width: int = 1100, height: int = 720
    ) -> Tab:
        context = await browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        if token is not None:
            await context.add_init_script(f"localStorage.setItem('agora.token', {token!r})")
        tab = Tab(await context.new_page())
        tabs.append(tab)
        await tab.page.goto(server.http + "/")
        if token is not None:
            await tab.online()
            await expect(tab.page.locator("#channel-title")).to_have_text("# general")
        return tab

    yield open_
    for context in contexts:
        await context.close()
    assert [e for tab in tabs for e in tab.errors] == [], "script errors in the page"


async def shoot(tab: Tab, name: str) -> None:
    """Save a screenshot as a test artifact (and for the README when asked to)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await tab.page.screenshot(path=path)
    if os.environ.get("AGORA_UPDATE_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOC_SHOTS / path.name)


_names = iter(range(10**6))


async def account(server: AgoraProcess, name: str) -> dict[str, Any]:
    """A new account, registered through the last node (pages open on the first)."""
    return await register(server.nodes[-1].http, f"{name.lower()}{next(_names)}", PASSWORD, name)


async def general(server: AgoraProcess, token: str) -> str:
    async with Client(server.nodes[-1].ws, token) as c:
        return c.channel_named("general")


async def command(server: AgoraProcess, token: str, op: str, d: dict[str, Any]) -> dict[str, Any]:
    """The reply to one command, sent through the last node (waiting out rate limits)."""
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=token) as c:
        return await c.request(op, d)


async def accessible(tab: Tab) -> None:
    """What is on screen passes the contrast and label checks (``CONTRAST``, ``UNLABELLED``)."""
    assert await tab.page.evaluate(CONTRAST) == []
    assert await tab.page.evaluate(UNLABELLED) == []


# Log in


async def test_register_and_log_in_through_the_ui(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    tab = await open_tab(server.nodes[0])
    page = tab.page
    await expect(page.locator("#auth-view")).to_be_visible()
    await shoot(tab, "login")

    await page.get_by_role("button", name="Create an account").click()
    await page.get_by_label("Username").fill("ann")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Display name").fill("Ann Lee")
    await page.get_by_role("button", name="Register").click()
    await tab.online()
    await expect(page.locator("#me")).to_have_text("Ann Lee")
    await expect(page.locator("#channel-title")).to_have_text("# general")

    await page.get_by_role("button", name="Log out").click()
    await expect(page.locator("#auth-view")).to_be_visible()
    await page.get_by_label("Username").fill("ann")
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#auth-error")).to_have_text("wrong username or password")

    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await tab.online()
    await expect(page.locator("#me")).to_have_text("Ann Lee")
    # The token is kept: a reload goes straight to the chat.
    await page.reload()
    await tab.online()
    await expect(page.locator("#chat-view")).to_be_visible()


# Content-Security-Policy


async def test_the_web_client_runs_under_its_content_security_policy(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server.nodes[0], ann["token"])  # logged in, live, # general drawn
    await tab.send("**bold**, `code` and https://example.org")
    await expect(tab.page.locator("#message-list .message .text strong")).to_have_text("bold")
    assert tab.errors == []
    # What the policy forbids is refused, and the tab reports it (so every browser test
    # fails on a violation): an inline script added to the page does not run.
    await tab.page.evaluate(
        "const s = document.createElement('script');"
        " s.textContent = 'window.inlineRan = true'; document.body.append(s)"
    )
    await eventually(lambda: len(tab.errors) == 1, "the refused inline script reported")
    assert "Content Security Policy" in tab.errors[0]
    assert await tab.page.evaluate("window.inlineRan === undefined")
    tab.errors.clear()


# Chat


async def test_two_users_chat_live_and_a_third_sees_the_history(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob, cat = [await account(server, n) for n in ("Ann", "Bob", "Cat")]
    ann_tab = await open_tab(server.nodes[0], ann["token"])
    bob_tab = await open_tab(server.nodes[-1], bob["token"])

    await ann_tab.send("Hello Bob, did you finish chapter 3?")
    await expect(bob_tab.messages()).to_have_count(1)
    await bob_tab.send("Yes! The ending surprised me.")
    # Ann answers what she has read: otherwise the two could land either way round
    # (in the Redis deployment they are sent through different nodes).
    await expect(ann_tab.messages()).to_have_count(2)
    await ann_tab.send("Me too.")
    expected = ["Hello Bob, did you finish chapter 3?", "Yes! The ending surprised me.", "Me too."]
    for tab in (ann_tab, bob_tab):
        await expect(tab.messages()).to_have_count(3)
        assert await tab.texts() == expected

    # Each message shows its author's name and time (a run by one author shares
    # the header on screen, but every message keeps both for screen readers).
    first = bob_tab.messages().nth(0)
    await expect(first.locator(".author")).to_have_text("Ann")
    await expect(first.locator("time")).to_have_attribute("datetime", _iso)
    await expect(bob_tab.messages().nth(1).locator(".author")).to_have_text("Bob")

    cat_tab = await open_tab(server.nodes[0], cat["token"])
    await expect(cat_tab.messages()).to_have_count(3)
    assert await cat_tab.texts() == expected
    await shoot(cat_tab, "history")


_iso = __import__("re").compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_local_echo_is_reconciled_by_nonce_without_a_duplicate(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server.nodes[0], ann["token"])
    for i in range(5):
        await tab.send(f"quick message {i}")
    await expect(tab.messages()).to_have_count(5)
    await expect(tab.page.locator('#message-list .message[data-state="sent"]')).to_have_count(5)
    async with Client(server.nodes[-1].ws, ann["token"]) as c:
        events = await c.history(c.channel_named("general"))
    stored = [e.d["message"] for e in events if e.t == "message.created"]
    assert [m["text"] for m in stored] == [f"quick message {i}" for i in range(5)]
    ids = await tab.messages().evaluate_all(
        "els => els.map(e => [e.dataset.messageId, e.dataset.nonce])"
    )
    assert ids == [[m["id"], m["nonce"]] for m in stored]


async def test_a_refused_message_is_marked_failed_with_retry_and_discard(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server.nodes[0], ann["token"])
    # Text the server refuses (a lone surrogate is not valid Unicode); the composer itself
    # refuses what is over the length limit (tests/test_browser_discussions.py).
    await tab.page.locator("#composer-input").evaluate("box => { box.value = 'x\\ud800' }")
    await tab.page.locator("#composer-input").press("Enter")
    failed = tab.page.locator('#message-list .message[data-state="failed"]')
    await expect(failed).to_have_count(1)
    await expect(failed.locator(".state")).to_contain_text("Not sent")
    assert server.metric("agora_errors_total", 'code="bad_request"') == 1
    await failed.get_by_role("button", name="Retry").click()
    # the page sends it again and the server refuses it again (the old entry's "Not
    # sent" would pass any check of the page made before that)
    await eventually(
        lambda: server.metric("agora_errors_total", 'code="bad_request"') == 2, "the retry refused"
    )
    await expect(failed).to_have_count(1)
    await expect(failed.locator(".state")).to_contain_text("Not sent")
    await failed.get_by_role("button", name="Discard").click()
    await expect(tab.messages()).to_have_count(0)
    await tab.send("a shorter one")
    await expect(tab.page.locator('#message-list .message[data-state="sent"]')).to_have_count(1)


# Reconnecting


async def test_after_a_restart_pages_reconnect_and_show_what_was_sent_meanwhile_once_in_order(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob, dan = [await account(server, n) for n in ("Ann", "Bob", "Dan")]
    ann_tab = await open_tab(server.nodes[0], ann["token"])
    bob_tab = await open_tab(server.nodes[-1], bob["token"])
    await ann_tab.send("before the restart")
    await expect(bob_tab.messages()).to_have_count(1)

    await asyncio.to_thread(server.stop)
    for tab in (ann_tab, bob_tab):
        await expect(tab.page.locator("#status")).to_have_attribute("data-state", "offline")
        await expect(tab.page.locator("#status")).to_contain_text("Offline")
    # Written while offline: shown at once as pending, sent on reconnect.
    await ann_tab.send("written while offline")
    pending = ann_tab.page.locator('#message-list .message[data-state="pending"]')
    await expect(pending).to_have_count(1)
    await expect(pending.locator(".state")).to_have_text("Sending…")
    await shoot(ann_tab, "offline")

    await asyncio.to_thread(server.start)
    async with Client(server.nodes[-1].ws, dan["token"]) as dan_client:
        channel = dan_client.channel_named("general")
        for i in range(3):
            await dan_client.send_message(channel, f"meanwhile {i}")
        for tab in (ann_tab, bob_tab):
            await tab.online()
            await expect(tab.messages()).to_have_count(5)
        events = await dan_client.history(channel)
    stored = [e.d["message"]["text"] for e in events if e.t == "message.created"]
    assert sorted(stored) == sorted(
        ["before the restart", "written while offline"] + [f"meanwhile {i}" for i in range(3)]
    )
    for tab in (ann_tab, bob_tab):
        assert await tab.texts() == stored  # once each, in the log's order
    await expect(ann_tab.page.locator('#message-list .message[data-state="sent"]')).to_have_count(5)


async def test_when_too_much_was_missed_the_channel_reloads_and_says_so(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server(replay_cap=5)
    ann, dan = [await account(server, n) for n in ("Ann", "Dan")]
    tab = await open_tab(server.nodes[0], ann["token"])
    await tab.send("before")
    await expect(tab.messages()).to_have_count(1)
    # Stored and acknowledged before the server stops (not still pending, to be retried).
    pending = tab.page.locator('#message-list .message[data-state="pending"]')
    await expect(pending).to_have_count(0)
    # Offline in the browser, so that it cannot reconnect before Dan is done.
    await asyncio.to_thread(server.stop)
    await tab.page.context.set_offline(True)
    await asyncio.to_thread(server.start)
    async with Client(server.nodes[-1].ws, dan["token"]) as c:
        for i in range(8):
            await c.send_message(c.channel_named("general"), f"missed {i}")
    await tab.page.context.set_offline(False)
    await tab.online()
    await expect(tab.page.locator("#skipped")).to_be_visible()
    await expect(tab.page.locator("#skipped")).to_contain_text("Some messages were skipped")
    await expect(tab.messages()).to_have_count(9)
    assert await tab.texts() == ["before"] + [f"missed {i}" for i in range(8)]
    await tab.page.get_by_role("button", name="Load older").first.click()
    await expect(tab.page.locator("#skipped")).to_be_hidden()


# History and unread marks


async def test_history_loads_as_you_scroll_up(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server(rate_limit=0)
    ann = await account(server, "Ann")
    async with Client(server.nodes[-1].ws, ann["token"]) as c:
        channel = c.channel_named("general")
        for i in range(1, 121):
            await c.send_message(channel, f"m{i:03}")
    tab = await open_tab(server.nodes[0], ann["token"])
    box = tab.page.locator("#messages")
    await expect(tab.messages()).to_have_count(50)
    await expect(tab.messages().last).to_be_in_viewport()
    await expect(tab.page.locator("#history-start")).to_be_hidden()
    for count in (100, 120):
        await box.hover()
        await tab.page.mouse.wheel(0, -100_000)
        await expect(tab.messages()).to_have_count(count)
    await expect(tab.page.locator("#history-start")).to_be_visible()
    assert await tab.texts() == [f"m{i:03}" for i in range(1, 121)]


def add_channels(server: AgoraProcess, owner: dict[str, Any], member: dict[str, Any]) -> None:
    """A #random in the first community, and a second community with a #chapter-1.

    Made with the admin CLI beside the running server: a session sees them when it
    next identifies, so this comes before the tabs open.
    """
    ok("channel", "create", "Agora", "random", *storage(server))
    owner_name = owner["user"]["username"]
    [[club, _]] = ok("community", "create", "Book club", "--owner", owner_name, *storage(server))
    ok("channel", "create", club, "chapter-1", *storage(server))
    ok("member", "add", club, member["user"]["username"], *storage(server))


async def test_unread_marks_per_channel_and_community(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob = [await account(server, n) for n in ("Ann", "Bob")]
    add_channels(server, ann, bob)
    tab = await open_tab(server.nodes[0], ann["token"])
    page = tab.page
    sidebar = page.locator("#sidebar")
    await expect(sidebar.locator("h2")).to_have_text(["Agora", "Book club"])
    # The tab subscribes to every channel, then asks for #general's history (answered in
    # order): once that shows, what Bob sends reaches the tab live. A message sent before
    # a channel's first subscribe is answered is counted by neither `ready` nor the feed.
    await expect(page.locator("#messages .system").filter(has_text="Bob joined")).to_have_count(1)

    async with Client(server.nodes[-1].ws, bob["token"]) as c:
        await c.send_message(c.channel_named("general"), "Welcome to the club, Ann.")
        await c.send_message(c.channel_named("general"), "We start with chapter 1.")
        for text in ("Anyone up for a walk?", "Or coffee?"):
            await c.send_message(c.channel_named("random"), text)
        await c.send_message(c.channel_named("chapter-1", community=1), "What did you think?")
    random = sidebar.get_by_role("button", name="random")
    chapter = sidebar.get_by_role("button", name="chapter-1")
    await expect(random).to_have_accessible_name("random, 2 unread")
    await expect(random.locator(".unread-count")).to_have_text("2")
    await expect(chapter.locator(".unread-count")).to_have_text("1")
    await expect(sidebar.locator("h2").nth(0).locator(".unread-count")).to_have_text("2")
    await expect(sidebar.locator("h2").nth(1).locator(".unread-count")).to_have_text("1")
    # The channel on screen gets no mark: its messages are in view. (Agora's
    # #general, listed first; the Book club has one too.)
    general = sidebar.get_by_role("button", name="general").first
    await expect(general).to_have_accessible_name("general")
    await expect(tab.messages()).to_have_count(2)
    await expect(page).to_have_title("(3) Agora")
    await shoot(tab, "chat")

    await page.keyboard.press("Alt+ArrowDown")  # the next channel
    await expect(page.locator("#channel-title")).to_have_text("# random")
    await expect(tab.messages()).to_have_count(2)
    await expect(random.locator(".unread-count")).to_be_hidden()
    await page.keyboard.press("Alt+Shift+ArrowDown")  # the next one with unread messages
    await expect(page.locator("#channel-title")).to_have_text("# chapter-1")
    await expect(page.locator("#community-title")).to_have_text("Book club")
    await expect(tab.messages()).to_have_count(1)
    await expect(page).to_have_title("Agora")
    await expect(page.locator("#composer-input")).to_be_focused()


# Members


async def test_members_panel_lists_members_and_joins_show_as_a_line(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server.nodes[0], ann["token"])
    page = tab.page
    await page.get_by_role("button", name="Members").click()
    panel = page.locator("#members-panel")
    await expect(panel.locator(".member-name")).to_have_text(["Ann"])
    await expect(panel.locator(".member-group h3")).to_have_text(["Owners — 1"])

    await account(server, "Bob")
    joins = page.locator("#message-list .system")
    await expect(joins.locator("> span")).to_have_text(
        ["Ann joined the community.", "Bob joined the community."]
    )
    await expect(joins.locator("time")).to_have_count(2)  # member.joined carries ts
    await expect(panel.locator(".member-name")).to_have_text(["Ann", "Bob"])
    await expect(panel.locator(".member-group h3")).to_have_text(["Owners — 1", "Members — 1"])
    await expect(panel.locator("#members-note")).to_have_text("2 members, 1 online")
    await shoot(tab, "members")
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(page.get_by_role("button", name="Members")).to_be_focused()


# Phone, keyboard, contrast and labels


async def test_phone_layout_has_a_collapsible_sidebar(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server.nodes[0], ann["token"], width=375, height=740)
    page = tab.page
    await expect(page.locator("#sidebar")).to_be_hidden()
    await tab.send("Hello from my phone")
    await expect(tab.messages()).to_have_count(1)
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 375
    await expect(page.locator("#composer-send")).to_be_in_viewport()
    await shoot(tab, "phone")

    toggle = page.get_by_role("button", name="Channels")
    await toggle.click()
    await expect(page.locator("#sidebar")).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(page.locator("#sidebar .channel[aria-current=page]")).to_be_focused()
    await shoot(tab, "phone-sidebar")
    await page.keyboard.press("Escape")
    await expect(page.locator("#sidebar")).to_be_hidden()
    await expect(toggle).to_be_focused()
    await toggle.click()
    await page.locator("#sidebar").get_by_role("button", name="general").click()
    await expect(page.locator("#sidebar")).to_be_hidden()
    await expect(page.locator("#composer-input")).to_be_focused()


async def test_keyboard_only_send_and_navigation(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server.nodes[0], ann["token"])
    page = tab.page
    # From the top of the page, Tab goes through the top bar, the sidebar and
    # the messages to the message box.
    await page.locator("#channel-title").click()
    order = []
    for _ in range(16):
        await page.keyboard.press("Tab")
        order.append(
            await page.evaluate(
                "(e => e.id || (e.dataset.channelId && 'channel')"
                " || e.dataset.action?.replace(/^channel:.*/, 'new-channel').replace(/:.*/, ''))"
                "(document.activeElement)"
            )
        )
        if order[-1] == "composer-input":
            break
    # Ann owns the community: the channel settings, invite and new-channel buttons too.
    assert order == [
        "channel-settings",
        "search-input",
        "pins-toggle",
        "resources-toggle",
        "members-toggle",
        "invite",
        "new-channel",
        "channel",
        "new-community",
        "sessions",
        "logout",
        "messages",
        "composer-input",
    ]

    await page.keyboard.type("line one")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("line two")
    await page.keyboard.press("Enter")
    await expect(tab.messages()).to_have_count(1)
    assert await tab.texts() == ["line one\nline two"]
    await expect(page.locator('#message-list .message[data-state="sent"]')).to_have_count(1)

    await page.keyboard.press("Control+k")
    await expect(page.locator("#sidebar .channel[aria-current=page]")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(page.locator("#composer-input")).to_be_focused()


CONTRAST = """() => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = (c) => {
    const linear = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    const [r, g, b] = rgb(c).map(linear);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if ((rgb(c)[3] ?? 1) > 0) return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    const texts = [...el.childNodes].filter((n) => n.nodeType === 3);
    const own = texts.map((n) => n.data.trim()).join('');
    const box = el.getBoundingClientRect();
    if (!own || !el.checkVisibility() || box.width < 2 || box.height < 2) continue;
    if (el.closest('button:disabled')) continue;  // WCAG exempts inactive controls
    const [a, b] = [lum(getComputedStyle(el).color), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(`${el.tagName} "${own.slice(0, 30)}": ${ratio.toFixed(2)}`);
  }
  return low;
}"""

UNLABELLED = """() => [...document.querySelectorAll('input, textarea, button, [tabindex]')]
  .filter((e) => e.checkVisibility())
  .filter((e) => !(e.labels?.length || e.getAttribute('aria-label')
                   || e.getAttribute('aria-labelledby') || e.textContent.trim()))
  .map((e) => e.outerHTML.slice(0, 80))"""


async def test_text_meets_wcag_aa_contrast_and_every_control_has_a_label(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob = [await account(server, n) for n in ("Ann", "Bob")]
    add_channels(server, ann, bob)
    login = await open_tab(server.nodes[0])
    assert await login.page.evaluate(CONTRAST) == []
    assert await login.page.evaluate(UNLABELLED) == []

    tab = await open_tab(server.nodes[0], ann["token"])
    async with Client(server.nodes[-1].ws, bob["token"]) as c:
        await c.send_message(c.channel_named("general"), "Hello")
        await c.send_message(c.channel_named("random"), "Unread here")
    await tab.send("Hi Bob")
    await expect(tab.page.locator("#sidebar .channel.unread")).to_have_count(1)
    await tab.page.get_by_role("button", name="Members").click()
    await expect(tab.page.locator("#member-list .member")).to_have_count(2)
    await tab.page.locator("#message-list .message").first.hover()
    assert await tab.page.evaluate(CONTRAST) == []
    assert await tab.page.evaluate(UNLABELLED) == []
    await asyncio.to_thread(server.stop)
    await expect(tab.page.locator("#status")).to_have_attribute("data-state", "offline")
    assert await tab.page.evaluate(CONTRAST) == []
