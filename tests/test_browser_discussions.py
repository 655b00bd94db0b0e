# ruff: noqa: F811  (the fixtures imported from test_browser are arguments of the tests)
"""The web client's discussion features (issue 10): threads, forums, edits and
deletes, reactions, replies, pins, mentions, read state, DMs, typing, search,
resources, Markdown, bots, "jump to present" and the length limit.

Uses the fixtures of ``tests/test_browser.py`` (Debian's Chromium through
Playwright, a fresh deployment per test, both deployments). A second user is a
Python client (``clients.Client``) or a second page.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

from clients import Client
from tests.conftest import http_json
from tests.test_browser import (  # noqa: F401  (fixtures)
    CONTRAST,
    UNLABELLED,
    MakeServer,
    Tab,
    account,
    browser,
    command,
    open_tab,
    shoot,
)

with contextlib.suppress(ImportError):  # reported by the `browser` fixture
    from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def identify(server: Any, token: str) -> dict[str, Any]:
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=token) as c:
        return c.identity


async def send(server: Any, token: str, channel: str, *texts: str) -> list[dict[str, Any]]:
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=token) as c:
        return [await c.send_message(channel, text) for text in texts]


def general_of(identity: dict[str, Any]) -> str:
    return next(c["id"] for c in identity["communities"][0]["channels"] if c["name"] == "general")


async def setup(server: Any, *names: str) -> tuple[list[dict[str, Any]], str, str]:
    """Accounts (the first is the owner), the community's id and its general channel."""
    users = [await account(server, name) for name in names]
    me = await identify(server, users[0]["token"])
    return users, me["communities"][0]["id"], general_of(me)


async def accessible(tab: Tab) -> None:
    """What is on screen passes the contrast and label checks of test_browser.py."""
    assert await tab.page.evaluate(CONTRAST) == []
    assert await tab.page.evaluate(UNLABELLED) == []


def message(tab: Tab, text: str) -> Any:
    return tab.messages().filter(has=tab.page.locator(".text", has_text=text))


async def message_action(tab: Tab, text: str, action: str) -> None:
    row = message(tab, text)
    await row.hover()
    await row.get_by_role("button", name="Message actions").click()
    await tab.page.get_by_role("menuitem", name=action).click()


def channel_button(tab: Tab, name: str) -> Any:
    return tab.page.locator("#sidebar .channel").filter(
        has=tab.page.locator(".channel-name", has_text=re.compile(f"^{re.escape(name)}$"))
    )


# Threads and forums


async def test_thread_panel_reply_and_follow(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    await send(server, bob["token"], general, "Who wants to plan the picnic?")
    tab = await open_tab(server, ann["token"])
    page = tab.page
    await expect(tab.messages()).to_have_count(1)
    await message_action(tab, "picnic", "Start a thread")
    panel = page.locator("#thread-panel")
    await expect(panel).to_be_visible()
    await expect(panel.locator("#thread-title")).to_have_text("Who wants to plan the picnic?")
    # The creator follows the thread.
    follow = panel.locator("#thread-follow")
    await expect(follow).to_have_text("Unfollow")
    await panel.get_by_label("Reply in the thread").fill("Me! Saturday?")
    await page.keyboard.press("Enter")
    await expect(panel.locator(".message .text")).to_have_text(["Me! Saturday?"])
    # Confirmed, so stored before Bob's answer: on screen alone it may still be in flight.
    await expect(panel.locator(".message.pending")).to_have_count(0)

    # Bob answers in the thread: it shows live in the panel, and the parent message
    # gets the reply count (thread.updated).
    thread = (await identify(server, ann["token"]))["threads"][0]
    await send(server, bob["token"], thread["id"], "Saturday works for me")
    await expect(panel.locator(".message .text")).to_have_text(
        ["Me! Saturday?", "Saturday works for me"]
    )
    summary = message(tab, "picnic").locator(".thread-summary")
    await expect(summary).to_contain_text("2 replies")
    await expect(summary).to_contain_text("last activity")
    await accessible(tab)
    await shoot(tab, "thread-panel")
    # Ann edits her reply in the thread from its menu.
    mine = panel.locator(".message").filter(has_text="Me! Saturday?")
    await mine.hover()
    await mine.get_by_role("button", name="Message actions").click()
    await page.get_by_role("menuitem", name="Edit").click()
    await panel.get_by_label("Edit the message").fill("Me! Sunday?")
    await page.keyboard.press("Enter")
    await expect(panel.locator(".message .text")).to_have_text(
        ["Me! Sunday? (edited)", "Saturday works for me"]
    )

    # Typing in the thread shows in the panel.
    await command(server, bob["token"], "typing.start", {"channel": thread["id"]})
    await expect(panel.locator("#thread-typing")).to_have_text("Bob is typing…")

    # Unfollow, then follow again: the server keeps what the button says.
    await follow.click()
    await expect(follow).to_have_text("Follow")
    assert (await identify(server, ann["token"]))["threads"] == []
    await follow.click()
    await expect(follow).to_have_text("Unfollow")
    assert [t["id"] for t in (await identify(server, ann["token"]))["threads"]] == [thread["id"]]
    # Closed, and opened again from the summary under the message.
    await panel.get_by_role("button", name="Close the thread").click()
    await expect(panel).to_be_hidden()
    await summary.click()
    await expect(panel.locator(".message .text")).to_have_count(2)
    # A followed thread is listed in the sidebar; activity there while its panel is
    # closed (thread.activity) shows as unread, until it is opened.
    await panel.get_by_role("button", name="Close the thread").click()
    link = page.locator("#sidebar .thread-link")
    await expect(link.locator(".channel-name")).to_have_text("Who wants to plan the picnic?")
    await send(server, bob["token"], thread["id"], "Bring cake")
    await expect(link.locator(".unread-count")).to_have_text("1")
    await link.click()
    await expect(panel.locator(".message .text")).to_have_count(3)
    await expect(link.locator(".unread-count")).to_be_hidden()
    # Ann unfollows in another session: this tab hears thread.followed, drops the thread
    # from the sidebar, and takes it back when she follows again there.
    await command(server, ann["token"], "thread.unfollow", {"thread": thread["id"]})
    await expect(link).to_have_count(0)
    await expect(follow).to_have_text("Follow")
    await command(server, ann["token"], "thread.follow", {"thread": thread["id"]})
    await expect(link).to_have_count(1)
    await expect(follow).to_have_text("Unfollow")


async def test_thread_panel_pages_in_older_messages(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    [start] = await send(server, bob["token"], general, "A long story")
    thread = (
        await command(
            server,
            ann["token"],
            "thread.create",
            {"channel": general, "title": "A long story", "message": start["id"]},
        )
    )["thread"]
    replies = [f"chapter {i}" for i in range(65)]
    await send(server, bob["token"], thread["id"], *replies)
    tab = await open_tab(server, ann["token"])
    page = tab.page
    # Ann follows the thread she started: it is in the sidebar.
    await page.locator("#sidebar .thread-link").click()
    panel = page.locator("#thread-panel")
    texts = panel.locator(".message .text")
    # The newest page (50 messages), scrolled to its end.
    await expect(texts).to_have_count(50)
    await expect(texts.last).to_have_text("chapter 64")
    await expect(texts.last).to_be_in_viewport()
    # Scrolled to the top: the older messages come in above, once each, in order,
    # and the view stays where it was (the message that was on top is still in view).
    await page.locator("#thread-scroll").evaluate("box => { box.scrollTop = 0; }")
    await expect(texts).to_have_text(replies)
    await expect(texts.first).to_have_text("chapter 0")
    await expect(
        panel.locator(".message .text", has_text=re.compile("^chapter 15$"))
    ).to_be_in_viewport()
    await expect(texts.first).not_to_be_in_viewport()


async def test_thread_reply_box_has_mention_autocomplete_and_a_length_counter(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    [start] = await send(server, bob["token"], general, "Plans for the weekend")
    await command(
        server,
        ann["token"],
        "thread.create",
        {"channel": general, "title": "Weekend", "message": start["id"]},
    )
    tab = await open_tab(server, ann["token"])
    page = tab.page
    await page.locator("#sidebar .thread-link").click()
    panel = page.locator("#thread-panel")
    box = panel.get_by_label("Reply in the thread")
    # @mention autocomplete, as in the main composer: offered under the reply box,
    # picked with Enter.
    await box.press_sequentially("Coming, @Bo")
    option = panel.get_by_role("option")
    await expect(option).to_have_count(1)
    await expect(option).to_contain_text("Bob")
    await expect(page.locator("#mention-list")).to_be_hidden()
    await expect(box).to_have_attribute("aria-expanded", "true")
    await accessible(tab)
    await page.keyboard.press("Enter")
    username = bob["user"]["username"]
    await expect(box).to_have_value(f"Coming, @{username} ")
    await expect(option).to_have_count(0)
    await page.keyboard.type("?")
    await page.keyboard.press("Enter")
    replies = panel.locator(".message")
    await expect(replies.locator(".mention")).to_have_text(f"@{username}")
    await expect(box).to_have_value("")
    # The length counter: shown near the limit, a reply over it is refused, not cut.
    counter = panel.locator("#thread-count")
    await expect(counter).to_be_hidden()
    await box.fill("é" * 4001)
    await expect(counter).to_have_text("4,001 / 4,000")
    await expect(counter).to_have_class(re.compile("over"))
    await expect(box).to_have_attribute("aria-invalid", "true")
    await accessible(tab)
    await box.press("Enter")
    await expect(page.locator("#notice")).to_contain_text("too long")
    await expect(replies).to_have_count(1)
    assert len(await box.input_value()) == 4001  # nothing was cut
    await box.press("Backspace")
    await expect(counter).to_have_text("4,000 / 4,000")
    await expect(counter).not_to_have_class(re.compile("over"))
    await box.press("Enter")
    await expect(replies).to_have_count(2)
    await expect(counter).to_be_hidden()


async def test_forum_cards_new_post_and_tag_filter(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), community, _ = await setup(server, "Ann", "Bob")
    forum = (
        await command(
            server,
            ann["token"],
            "channel.create",
            {"community": community, "name": "help", "kind": "forum"},
        )
    )["channel"]
    await command(
        server,
        bob["token"],
        "thread.create",
        {
            "channel": forum["id"],
            "title": "Printer is on fire",
            "text": "Help!",
            "tags": ["hardware"],
        },
    )
    tab = await open_tab(server, ann["token"])
    page = tab.page
    await channel_button(tab, "help").click()
    cards = page.locator("#thread-cards .thread-card")
    await expect(cards).to_have_count(1)
    await expect(cards.first.locator(".card-title")).to_have_text("Printer is on fire")
    await expect(cards.first).to_contain_text("#hardware")
    await expect(cards.first).to_contain_text("0 replies")
    await expect(cards.first).to_contain_text("last activity")
    await expect(page.locator("#composer")).to_be_hidden()

    await page.get_by_role("button", name="New post").click()
    post = page.locator("#forum-post")
    await post.get_by_label("Title").fill("How do I reset my password?")
    await post.get_by_label("Text", exact=True).fill("I forgot it **again**.")
    await post.get_by_label("Tags").fill("accounts, faq")
    await page.get_by_role("button", name="Post", exact=True).click()
    await expect(cards).to_have_count(2)
    await expect(cards.first.locator(".card-title")).to_have_text("How do I reset my password?")
    await expect(cards.first).to_contain_text("#accounts")

    # A thread Bob creates now shows live, and a reply raises its count.
    created = await command(
        server,
        bob["token"],
        "thread.create",
        {"channel": forum["id"], "title": "Wifi password?", "text": "Anyone?", "tags": ["faq"]},
    )
    await expect(cards).to_have_count(3)
    await send(server, ann["token"], created["thread"]["id"], "It is on the fridge.")
    wifi = cards.filter(has_text="Wifi password?")
    await expect(wifi).to_contain_text("1 reply")
    await accessible(tab)
    await shoot(tab, "forum")

    # Filter by tag: the form, then a tag on a card.
    await page.get_by_label("Filter by tag").fill("faq")
    await page.get_by_role("button", name="Filter", exact=True).click()
    await expect(cards.locator(".card-title")).to_have_text(
        ["Wifi password?", "How do I reset my password?"]
    )
    await page.get_by_role("button", name="All posts").click()
    await expect(cards).to_have_count(3)
    await cards.filter(has_text="Printer").get_by_role("button", name="#hardware").click()
    await expect(cards.locator(".card-title")).to_have_text(["Printer is on fire"])

    # A card opens its thread: the opening post first.
    await cards.first.locator(".card-open").click()
    panel = page.locator("#thread-panel")
    await expect(panel.locator("#thread-title")).to_have_text("Printer is on fire")
    await expect(panel.locator(".message .text")).to_have_text(["Help!"])
    # Marked resolved from the panel: the card says so (thread.updated).
    await panel.get_by_role("button", name="Mark resolved").click()
    await expect(cards.first.locator(".resolved-mark")).to_have_text("resolved")
    await expect(panel.get_by_role("button", name="Reopen")).to_be_visible()


async def test_forum_pages_with_next(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann,), community, _ = await setup(server, "Ann")
    forum = (
        await command(
            server,
            ann["token"],
            "channel.create",
            {"community": community, "name": "ideas", "kind": "forum"},
        )
    )["channel"]
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=ann["token"]) as c:
        for i in range(27):
            await c.request(
                "thread.create", {"channel": forum["id"], "title": f"Idea {i}", "text": "."}
            )
    tab = await open_tab(server, ann["token"])
    await channel_button(tab, "ideas").click()
    cards = tab.page.locator("#thread-cards .thread-card")
    await expect(cards).to_have_count(25)
    await tab.page.get_by_role("button", name="Load more").click()
    await expect(cards).to_have_count(27)
    await expect(tab.page.get_by_role("button", name="Load more")).to_be_hidden()


# Messages: edits, deletes, reactions, replies, pins


async def test_edit_and_delete_from_the_message_menu(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    ann_tab = await open_tab(server, ann["token"])
    bob_tab = await open_tab(server.nodes[-1], bob["token"])
    await ann_tab.send("The meeting is at 5")
    await expect(bob_tab.messages()).to_have_count(1)
    await send(server, bob["token"], general, "Bob was here")
    await expect(ann_tab.messages()).to_have_count(2)

    # Bob, a member, may neither edit nor delete Ann's message.
    row = message(bob_tab, "meeting")
    await row.hover()
    await row.get_by_role("button", name="Message actions").click()
    items = bob_tab.page.get_by_role("menu").get_by_role("menuitem")
    await expect(items).to_have_text(["Reply", "Start a thread"])
    await bob_tab.page.keyboard.press("Escape")

    # Ann edits her own message: "(edited)", live for Bob too.
    await message_action(ann_tab, "meeting", "Edit")
    editor = ann_tab.page.get_by_label("Edit the message")
    await expect(editor).to_be_focused()
    await editor.fill("The meeting is at 6")
    await ann_tab.page.keyboard.press("Enter")
    for tab in (ann_tab, bob_tab):
        await expect(tab.messages().first.locator(".text")).to_have_text(
            "The meeting is at 6 (edited)"
        )
        await expect(tab.messages().first.locator(".edited")).to_be_visible()

    # The owner deletes Bob's message (delete_messages), after a confirmation.
    await message_action(ann_tab, "Bob was here", "Delete…")
    dialog = ann_tab.page.get_by_role("dialog", name="Delete this message?")
    await dialog.get_by_role("button", name="Delete").click()
    for tab in (ann_tab, bob_tab):
        await expect(tab.messages().nth(1).locator(".text")).to_have_text("message deleted")
    # Bob deletes his... nothing left of his; Ann's own delete works the same way.
    await message_action(ann_tab, "meeting", "Delete…")
    await dialog.get_by_role("button", name="Delete").click()
    await expect(bob_tab.messages().locator(".text")).to_have_text(
        ["message deleted", "message deleted"]
    )
    # After a reload, the history says the same.
    await bob_tab.page.reload()
    await expect(bob_tab.messages().locator(".text")).to_have_text(
        ["message deleted", "message deleted"]
    )


async def test_reactions_picker_and_chips_toggle(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    tab = await open_tab(server, ann["token"])
    await tab.send("We shipped **version 2**! See `CHANGES.md` and https://example.com/notes")
    row = tab.messages().first
    await expect(row).to_have_attribute("data-state", "sent")
    await row.hover()
    await row.get_by_role("button", name="Add reaction").click()
    await tab.page.get_by_role("button", name="React with 🎉").click()
    chip = row.locator('.reaction[data-emoji="🎉"]')
    await expect(chip).to_have_text("🎉 1")
    await expect(chip).to_have_attribute("aria-pressed", "true")

    # Bob reacts through the server: the count comes live.
    message_id = await row.get_attribute("data-message-id")
    await command(
        server,
        bob["token"],
        "reaction.add",
        {"channel": general, "message": message_id, "emoji": "🎉"},
    )
    await expect(chip).to_have_text("🎉 2")
    await command(
        server,
        bob["token"],
        "reaction.add",
        {"channel": general, "message": message_id, "emoji": "👀"},
    )
    await expect(row.locator('.reaction[data-emoji="👀"]')).to_have_attribute(
        "aria-pressed", "false"
    )
    await accessible(tab)
    await shoot(tab, "reactions-markdown")
    # Ann's chip toggles her reaction off, then on again.
    await chip.click()
    await expect(chip).to_have_text("🎉 1")
    await expect(chip).to_have_attribute("aria-pressed", "false")
    await chip.click()
    await expect(chip).to_have_text("🎉 2")
    await expect(chip).to_have_attribute("aria-pressed", "true")


async def test_reactions_stay_current_across_history_pages(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    [target] = await send(server, bob["token"], general, "an old message")
    react = {"channel": general, "message": target["id"], "emoji": "👍"}
    await command(server, ann["token"], "reaction.add", react)  # its event: count 1
    await send(server, bob["token"], general, *[f"filler {i}" for i in range(60)])
    await command(server, bob["token"], "reaction.add", react)  # on the newest page: count 2
    tab = await open_tab(server, ann["token"])
    await expect(tab.messages().last.locator(".text")).to_have_text("filler 59")
    # The older page holds the message (as it is now) and its first reaction's event.
    await tab.page.locator("#messages").evaluate("box => { box.scrollTop = 0; }")
    old = message(tab, "an old message")
    await expect(old).to_have_count(1)
    await expect(old.locator('.reaction[data-emoji="👍"]')).to_have_text("👍 2")


async def test_reply_quotes_the_original(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    [original] = await send(server, bob["token"], general, "Shall we meet on Friday?")
    tab = await open_tab(server, ann["token"])
    await expect(tab.messages()).to_have_count(1)
    await message_action(tab, "Friday", "Reply")
    preview = tab.page.locator("#reply-preview")
    await expect(preview).to_contain_text("Replying to Bob: Shall we meet on Friday?")
    await expect(tab.page.locator("#composer-input")).to_be_focused()
    await tab.send("Friday is fine")
    await expect(preview).to_be_hidden()
    answer = message(tab, "Friday is fine")
    await expect(answer.locator(".reply-quote")).to_contain_text("Bob")
    await expect(answer.locator(".reply-quote")).to_contain_text("Shall we meet on Friday?")
    await expect(answer).to_have_attribute("data-state", "sent")
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=bob["token"]) as c:
        events = await c.history(general)
    assert events[-1].d["message"]["reply_to"] == original["id"]


async def test_pins_panel_and_pin_from_the_menu(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    await send(server, bob["token"], general, "House rules: be kind", "Another message")
    ann_tab = await open_tab(server, ann["token"])
    bob_tab = await open_tab(server.nodes[-1], bob["token"])
    await expect(ann_tab.messages()).to_have_count(2)
    await message_action(ann_tab, "House rules", "Pin")
    # message.pinned, live on both pages.
    for tab in (ann_tab, bob_tab):
        await expect(message(tab, "House rules").locator(".pin-mark")).to_be_visible()
    await ann_tab.page.get_by_role("button", name="Pins").click()
    pins = ann_tab.page.locator("#pins-list .result")
    await expect(pins).to_have_count(1)
    await expect(pins.first).to_contain_text("House rules: be kind")
    await accessible(ann_tab)
    # Bob, a member, has no Pin in his menu.
    row = message(bob_tab, "Another")
    await row.hover()
    await row.get_by_role("button", name="Message actions").click()
    await expect(bob_tab.page.get_by_role("menuitem", name="Pin")).to_have_count(0)
    await bob_tab.page.keyboard.press("Escape")
    # Unpinned: the mark goes and the open panel empties.
    await message_action(ann_tab, "House rules", "Unpin")
    await expect(message(bob_tab, "House rules").locator(".pin-mark")).to_be_hidden()
    await expect(pins).to_have_count(0)
    await expect(ann_tab.page.locator("#pins-note")).to_contain_text("Nothing is pinned")


# Mentions, read state, DMs, typing


async def test_mention_autocomplete_highlight_and_badge_survive_reload(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    (ann, bob), community, _ = await setup(server, "Ann", "Bob")
    await command(
        server, ann["token"], "channel.create", {"community": community, "name": "random"}
    )
    ann_tab = await open_tab(server, ann["token"])
    bob_tab = await open_tab(server.nodes[-1], bob["token"])
    await channel_button(ann_tab, "random").click()
    page = ann_tab.page
    composer = page.locator("#composer-input")
    await composer.press_sequentially("Hello @Bo")
    option = page.get_by_role("option")
    await expect(option).to_have_count(1)
    await expect(option).to_contain_text("Bob")
    await accessible(ann_tab)
    await page.keyboard.press("Enter")
    await expect(composer).to_have_value(f"Hello @{bob['user']['username']} ")
    await page.keyboard.type("see you")
    await page.keyboard.press("Enter")
    await expect(ann_tab.messages().locator(".mention")).to_have_text(f"@{bob['user']['username']}")

    # Bob is in #general: #random gets a mention badge, which a reload keeps.
    badge = channel_button(bob_tab, "random").locator(".mention-count")
    await expect(badge).to_have_text("@1")
    await bob_tab.page.reload()
    await bob_tab.online()
    await expect(badge).to_have_text("@1")
    await expect(channel_button(bob_tab, "random").locator(".unread-count")).to_have_text("1")
    # There, the mention of Bob is marked strongly for him.
    await channel_button(bob_tab, "random").click()
    await expect(bob_tab.messages().locator(".mention.mention-me")).to_have_count(1)
    await expect(bob_tab.messages().first).to_have_class(re.compile("mentions-me"))
    await expect(badge).to_be_hidden()


async def test_new_messages_divider_and_unread_badges_from_the_read_marker(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    (ann, bob), community, general = await setup(server, "Ann", "Bob")
    random = (
        await command(
            server, ann["token"], "channel.create", {"community": community, "name": "random"}
        )
    )["channel"]["id"]
    await send(server, ann["token"], general, "old one", "old two")
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=bob["token"]) as c:
        head = (await c.history(general))[-1].o
        await c.request("read.mark", {"channel": general, "o": head})
    await send(server, ann["token"], general, "new one", "new two")
    await send(server, ann["token"], random, "elsewhere 1", "elsewhere 2")

    tab = await open_tab(server, bob["token"])
    await expect(tab.messages()).to_have_count(4)  # Bob's join line is not a message
    divider = tab.page.locator("#message-list .new-divider")
    await expect(divider).to_have_text("New messages")
    following = tab.page.locator("#message-list .new-divider + .message .text")
    await expect(following).to_have_text("new one")
    await accessible(tab)
    # Unread in #random, from identify's reads, and again after a reload.
    badge = channel_button(tab, "random").locator(".unread-count")
    await expect(badge).to_have_text("2")
    # Seen at the bottom of #general with the window focused: read.mark moves the marker.
    await tab.page.bring_to_front()

    async def marker() -> int:
        reads = (await identify(server, bob["token"]))["reads"]
        return next(r["o"] for r in reads if r["channel"] == general)

    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=ann["token"]) as c:
        latest = (await c.history(general))[-1].o
    for _ in range(50):
        if await marker() == latest:
            break
        await tab.page.wait_for_timeout(100)
    assert await marker() == latest
    await tab.page.reload()
    await tab.online()
    await expect(badge).to_have_text("2")
    await expect(divider).to_have_count(0)  # all of #general was read
    # Another session reads #random: the badge goes here too (read.updated).
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=ann["token"]) as c:
        top = (await c.history(random))[-1].o
    await command(server, bob["token"], "read.mark", {"channel": random, "o": top})
    await expect(badge).to_be_hidden()


async def test_direct_message_from_the_members_panel(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    (ann, bob), _, _ = await setup(server, "Ann", "Bob")
    ann_tab = await open_tab(server, ann["token"])
    bob_tab = await open_tab(server.nodes[-1], bob["token"])
    page = ann_tab.page
    await page.get_by_role("button", name="Members").click()
    await page.locator("#members-panel").get_by_role("button", name="Message Bob").click()
    await expect(page.locator("#channel-title")).to_have_text("@ Bob")
    await expect(channel_button(ann_tab, "Bob")).to_have_attribute("aria-current", "page")
    await ann_tab.send("Psst, Bob")
    await expect(ann_tab.messages()).to_have_count(1)
    # Bob hears of the DM live (dm.created), with its unread count.
    dm = channel_button(bob_tab, "Ann")
    await expect(dm).to_be_visible()
    await expect(dm.locator(".unread-count")).to_have_text("1")
    await accessible(bob_tab)
    await dm.click()
    await expect(bob_tab.messages().locator(".text")).to_have_text(["Psst, Bob"])
    await bob_tab.send("Hi Ann")
    await expect(ann_tab.messages()).to_have_count(2)
    # After a reload, the DM is still listed (identify's dms).
    await bob_tab.page.reload()
    await bob_tab.online()
    await expect(channel_button(bob_tab, "Ann")).to_be_visible()


async def test_typing_line_seen_by_another_user(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, _ = await setup(server, "Ann", "Bob")
    ann_tab = await open_tab(server, ann["token"])
    bob_tab = await open_tab(server.nodes[-1], bob["token"])
    # Bob's tab subscribes to #general before it asks for its history (one command at a
    # time, answered in order): once that history shows, Ann's typing reaches the tab.
    joined = bob_tab.page.locator("#messages .system").filter(has_text="Bob joined")
    await expect(joined).to_have_count(1)
    await ann_tab.page.locator("#composer-input").press_sequentially("I am wri")
    line = bob_tab.page.locator("#typing")
    await expect(line).to_have_text("Ann is typing…")
    await expect(ann_tab.page.locator("#typing")).to_have_text("")  # never to oneself
    # It goes after about 5 s without more typing.
    await expect(line).to_have_text("", timeout=10_000)
    # And at once when her message arrives.
    await ann_tab.page.locator("#composer-input").press_sequentially("ting")
    await expect(line).to_have_text("Ann is typing…")
    await ann_tab.page.keyboard.press("Enter")
    await expect(bob_tab.messages()).to_have_count(1)
    await expect(line).to_have_text("")


# Search, resources


async def test_search_jumps_to_the_message(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    async with Client(server.nodes[-1].ws, wait_on_rate_limit=True, token=bob["token"]) as c:
        await c.send_message(general, "the secret word is marmalade")
        for i in range(80):
            await c.send_message(general, f"filler {i}")
    tab = await open_tab(server, ann["token"])
    await expect(tab.messages().last.locator(".text")).to_have_text("filler 79")
    await tab.page.get_by_label("Search messages").fill("marmalade")
    await tab.page.keyboard.press("Enter")
    results = tab.page.locator("#search-results .result")
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("the secret word is marmalade")
    await accessible(tab)
    await shoot(tab, "search")
    await results.first.click()
    found = message(tab, "marmalade")
    await expect(found).to_be_in_viewport()
    await expect(found).to_have_class(re.compile("flash"))
    # Back to the newest messages.
    await tab.page.get_by_role("button", name="Jump to present").click()
    await expect(tab.messages().last.locator(".text")).to_have_text("filler 79")
    await expect(tab.messages().last).to_be_in_viewport()


async def test_resources_page_add_and_list(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann,), community, _ = await setup(server, "Ann")
    await command(
        server,
        ann["token"],
        "resource.add",
        {
            "community": community,
            "title": "Style guide",
            "note": "How we write",
            "tags": ["writing"],
        },
    )
    tab = await open_tab(server, ann["token"])
    page = tab.page
    await page.get_by_role("button", name="Resources").click()
    panel = page.locator("#resources-panel")
    items = panel.locator(".resource")
    await expect(items).to_have_count(1)
    await panel.get_by_label("Title").fill("Python docs")
    await panel.get_by_label("Link").fill("https://docs.python.org/3/")
    await panel.get_by_label("Tags").fill("python, reference")
    await panel.get_by_role("button", name="Add").click()
    await expect(items).to_have_count(2)
    await accessible(tab)
    link = items.first.locator("a.resource-title")
    await expect(link).to_have_text("Python docs")
    await expect(link).to_have_attribute("href", "https://docs.python.org/3/")
    await panel.get_by_placeholder("Tag").fill("writing")
    await panel.get_by_role("button", name="Filter").click()
    await expect(items.locator(".resource-title")).to_have_text(["Style guide"])
    await panel.get_by_placeholder("Tag").fill("")
    await panel.get_by_placeholder("Words").fill("python")
    await panel.get_by_role("button", name="Filter").click()
    await expect(items.locator(".resource-title")).to_have_text(["Python docs"])


# Markdown, bots, jump to present, the length limit


async def test_markdown_renders_safely(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    await send(
        server,
        bob["token"],
        general,
        '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2">',
        "**bold** _italics_ `code` [a link](https://example.com/) [bad](javascript:alert(1))",
        "```\nfor x in y:\n    print(x)\n```\n> a quote",
    )
    tab = await open_tab(server, ann["token"])
    rows = tab.messages()
    await expect(rows).to_have_count(3)
    first = rows.nth(0).locator(".text")
    await expect(first).to_have_text(
        '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2">'
    )
    assert await first.locator("script, img").count() == 0
    assert await tab.page.evaluate("window.pwned") is None
    second = rows.nth(1).locator(".text")
    await expect(second.locator("strong")).to_have_text("bold")
    await expect(second.locator("em")).to_have_text("italics")
    await expect(second.locator("code")).to_have_text("code")
    link = second.locator("a")
    await expect(link).to_have_count(1)  # javascript: stays text
    await expect(link).to_have_attribute("href", "https://example.com/")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    third = rows.nth(2).locator(".text")
    await expect(third.locator("pre code")).to_have_text("for x in y:\n    print(x)\n")
    await expect(third.locator("blockquote")).to_have_text("a quote")


async def test_bot_messages_carry_a_bot_tag(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann,), _, general = await setup(server, "Ann")
    status, made = http_json(
        "POST",
        server.nodes[-1].http + "/api/v1/bots",
        {"username": "helper", "display_name": "Helper"},
        token=ann["token"],
    )
    assert status == 201, made
    await send(server, made["token"], general, "beep boop")
    await send(server, ann["token"], general, "hello bot")
    tab = await open_tab(server, ann["token"])
    await expect(tab.messages()).to_have_count(2)
    await expect(message(tab, "beep boop").locator(".bot-tag")).to_have_text("BOT")
    await expect(message(tab, "hello bot").locator(".bot-tag")).to_have_count(0)


async def test_jump_to_present_when_scrolled_up(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann, bob), _, general = await setup(server, "Ann", "Bob")
    await send(server, bob["token"], general, *[f"line {i}" for i in range(40)])
    tab = await open_tab(server, ann["token"])
    await expect(tab.messages()).to_have_count(40)
    button = tab.page.get_by_role("button", name="Jump to present")
    await expect(button).to_be_hidden()
    await tab.page.locator("#messages").evaluate("box => { box.scrollTop = 200; }")
    await send(server, bob["token"], general, "something new")
    await expect(tab.messages()).to_have_count(41)
    await expect(button).to_be_visible()
    await expect(tab.messages().last).not_to_be_in_viewport()
    await button.click()
    await expect(tab.messages().last).to_be_in_viewport()
    await expect(button).to_be_hidden()


async def test_over_length_counter_refuses_to_send(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    (ann,), _, _ = await setup(server, "Ann")
    tab = await open_tab(server, ann["token"])
    composer = tab.page.locator("#composer-input")
    counter = tab.page.locator("#composer-count")
    await expect(counter).to_be_hidden()
    await composer.fill("é" * 4001)
    await expect(counter).to_have_text("4,001 / 4,000")
    await expect(counter).to_have_class(re.compile("over"))
    await accessible(tab)
    await tab.page.keyboard.press("Enter")
    await expect(tab.page.locator("#notice")).to_contain_text("too long")
    await expect(tab.messages()).to_have_count(0)
    assert len(await composer.input_value()) == 4001  # nothing was cut
    await composer.press("Backspace")
    await expect(counter).to_have_text("4,000 / 4,000")
    await expect(counter).not_to_have_class(re.compile("over"))
    await tab.page.keyboard.press("Enter")
    await expect(tab.messages()).to_have_count(1)
    await expect(tab.messages().first).to_have_attribute("data-state", "sent")
