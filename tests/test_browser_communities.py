# ruff: noqa: F811  (the fixtures imported from test_browser are arguments of the tests)
"""The web client's community features, and fixes found by trying it as a new user.

Uses the fixtures of ``tests/test_browser.py`` (Debian's Chromium through
Playwright, a fresh deployment per test, both deployments). Screenshots of the
new views go where that module's go.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from clients import Client
from tests.conftest import timeout
from tests.test_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    MakeServer,
    Tab,
    accessible,
    account,
    browser,
    open_tab,
    shoot,
)

with contextlib.suppress(ImportError):  # reported by the `browser` fixture
    from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def command(server: Any, token: str, op: str, d: dict[str, Any]) -> dict[str, Any]:
    async with Client(server.ws, token) as c:
        return await c.request(op, d)


def sidebar_communities(tab: Tab) -> Any:
    return tab.page.locator("#sidebar h2 .community-name")


# Communities and invites


async def test_create_a_community_from_the_sidebar(make_server: MakeServer, open_tab: Any) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server, ann["token"])
    page = tab.page
    button = page.get_by_role("button", name="New community")
    await button.click()
    dialog = page.get_by_role("dialog", name="Create a community")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Name")).to_be_focused()
    await accessible(tab)
    # Esc closes it, and the focus goes back to the button.
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(button).to_be_focused()

    await button.click()
    await dialog.get_by_label("Name").fill("Book club")
    await shoot(tab, "community-create")
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(sidebar_communities(tab)).to_have_text(["Agora", "Book club"])
    await expect(page.locator("#community-title")).to_have_text("Book club")
    await expect(page.locator("#channel-title")).to_have_text("# general")
    await expect(page.locator("#composer-input")).to_be_focused()
    # Its owner: the invite and new-channel buttons are there.
    await expect(page.get_by_role("button", name="Invite people to Book club")).to_be_visible()
    await expect(page.get_by_role("button", name="Create a channel in Book club")).to_be_visible()
    # A name that is taken is refused in the dialog.
    await button.click()
    await dialog.get_by_label("Name").fill("book CLUB")
    await page.keyboard.press("Enter")
    await expect(dialog.get_by_role("alert")).to_contain_text("exists")


async def test_an_invite_link_takes_a_new_user_in_with_enter_in_the_register_form(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    club = await command(server, ann["token"], "community.create", {"name": "Book club"})
    ann_tab = await open_tab(server, ann["token"])
    page = ann_tab.page
    await page.get_by_role("button", name="Invite people to Book club").click()
    dialog = page.get_by_role("dialog", name="Invite people")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Number of uses").select_option("1")
    await dialog.get_by_role("button", name="Create link").click()
    link = dialog.get_by_label("Invite link")
    await expect(link).to_have_value(re.compile(r"/invite/[\w-]+$"))
    await expect(dialog.locator("#invite-summary")).to_contain_text("Joins as member, 1 use")
    await accessible(ann_tab)
    await shoot(ann_tab, "invite-dialog")
    path = urlsplit(await link.input_value()).path
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()

    # A new visitor opens the link (through the other node, in the scaled deployment).
    new = await open_tab(server)
    await new.page.goto(server.http + path)
    await expect(new.page.locator("#invite-note")).to_be_visible()
    await expect(new.page.get_by_role("button", name="Register")).to_be_visible()
    await accessible(new)
    await shoot(new, "invite-page")
    await new.page.get_by_label("Username").fill("newbie")
    await new.page.get_by_label("Password").fill(PASSWORD)
    await new.page.get_by_label("Display name").fill("Nia")
    await new.page.keyboard.press("Enter")  # registers: the form says Register
    await new.online()
    await expect(new.page.locator("#me")).to_have_text("Nia")
    # The invite's community, instead of the default one.
    await expect(sidebar_communities(new)).to_have_text(["Book club"])
    await expect(new.page.locator("#community-title")).to_have_text("Book club")
    assert urlsplit(new.page.url).path == "/"
    # Ann sees the join in Book club's #general.
    club_section = page.locator("#sidebar section").filter(has_text="Book club")
    await club_section.get_by_role("button", name="general").click()
    await expect(page.locator("#message-list .system > span").last).to_have_text(
        "Nia joined the community."
    )
    # The link was for one use.
    again = await open_tab(server)
    await again.page.goto(server.http + path)
    await again.page.get_by_label("Username").fill("latecomer")
    await again.page.get_by_label("Password").fill(PASSWORD)
    await again.page.keyboard.press("Enter")
    await expect(again.page.locator("#auth-error")).to_have_text("this invite has been used up")
    assert club["community"]["name"] == "Book club"


async def test_an_invite_link_takes_existing_users_in_logged_in_or_not(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob, cat = [await account(server, n) for n in ("Ann", "Bob", "Cat")]
    club = (await command(server, ann["token"], "community.create", {"name": "Book club"}))[
        "community"
    ]
    invite = await command(server, ann["token"], "invite.create", {"community": club["id"]})
    path = f"/invite/{invite['invite']['code']}"

    # Bob is logged in: he is asked, and joins.
    bob_tab = await open_tab(server, bob["token"])
    await bob_tab.page.goto(server.http + path)
    await bob_tab.online()
    dialog = bob_tab.page.get_by_role("dialog", name="Join a community?")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("button", name="Join")).to_be_focused()
    await accessible(bob_tab)
    await dialog.get_by_role("button", name="Join").click()
    await expect(sidebar_communities(bob_tab)).to_have_text(["Agora", "Book club"])
    await expect(bob_tab.page.locator("#community-title")).to_have_text("Book club")
    assert urlsplit(bob_tab.page.url).path == "/"

    # Cat has an account but is logged out: she logs in from the invite page.
    cat_tab = await open_tab(server)
    await cat_tab.page.goto(server.http + path)
    await cat_tab.page.get_by_role("button", name="Sign in").click()
    await cat_tab.page.get_by_label("Username").fill(cat["user"]["username"])
    await cat_tab.page.get_by_label("Password").fill(PASSWORD)
    await cat_tab.page.keyboard.press("Enter")
    await cat_tab.online()
    await expect(sidebar_communities(cat_tab)).to_have_text(["Agora", "Book club"])
    await expect(cat_tab.page.locator("#community-title")).to_have_text("Book club")


# Channels


async def test_channel_create_and_settings_apply_live_and_show_in_the_composer(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob = [await account(server, n) for n in ("Ann", "Bob")]
    ann_tab = await open_tab(server, ann["token"])
    bob_tab = await open_tab(server, bob["token"])
    page, bob_page = ann_tab.page, bob_tab.page
    # Bob is a member: no channel controls.
    await expect(bob_page.locator("#channel-settings")).to_be_hidden()
    await expect(bob_page.locator("#sidebar .side-tool")).to_have_count(0)

    await page.get_by_role("button", name="Create a channel in Agora").click()
    dialog = page.get_by_role("dialog", name="Create a channel")
    await dialog.get_by_label("Name").fill("Reading Group")
    await dialog.get_by_label("Topic").fill("What we read this week")
    await page.keyboard.press("Enter")
    await expect(page.locator("#channel-title")).to_have_text("# reading-group")
    await expect(page.locator("#channel-topic")).to_contain_text("What we read this week")
    # Bob's sidebar has it at once.
    await expect(bob_page.locator("#sidebar .channel-name")).to_have_text(
        ["general", "reading-group"]
    )
    await bob_page.get_by_role("button", name="reading-group").click()
    await expect(bob_page).to_have_url(re.compile(r"#/c/\d+$"))

    # Slow mode: a note in the composer, and a second message waits its turn.
    await page.get_by_role("button", name="Settings of #reading-group").click()
    settings = page.get_by_role("dialog", name="Settings of #reading-group")
    await settings.get_by_label("Slow mode").select_option("30")
    await accessible(ann_tab)
    await shoot(ann_tab, "channel-settings")
    await settings.get_by_role("button", name="Save").click()
    await expect(settings).to_be_hidden()
    note = bob_page.locator("#composer-note")
    await expect(note).to_have_text("Slow mode is on: one message every 30 seconds.")
    await expect(page.locator("#composer-note")).to_contain_text("(you are exempt)")
    await bob_tab.send("first")
    await expect(bob_page.locator('#message-list .message[data-state="sent"]')).to_have_count(1)
    await bob_tab.send("second")
    waiting = bob_page.locator("#message-list .message.waiting .state")
    await expect(waiting).to_contain_text(re.compile(r"Slow mode: sending in \d+ s"))

    # Archived: still readable, closed to new messages.
    await page.get_by_role("button", name="Settings of #reading-group").click()
    await settings.get_by_label("Archived").check()
    await settings.get_by_role("button", name="Save").click()
    await expect(note).to_have_text("This channel is archived: you can read it, but not post here.")
    await expect(bob_page.locator("#composer-input")).to_be_disabled()
    await expect(bob_page.locator("#composer-send")).to_be_disabled()
    await expect(bob_page.get_by_role("button", name="reading-group, archived")).to_be_visible()
    await expect(bob_page.locator("#channel-topic")).to_contain_text("archived")
    # Renamed: the header and sidebar follow.
    await page.get_by_role("button", name="Settings of #reading-group").click()
    await settings.get_by_label("Name").fill("Reading 2024")
    await settings.get_by_role("button", name="Save").click()
    await expect(bob_page.locator("#channel-title")).to_have_text("# reading-2024")


# Members, presence, roles and moderation


async def test_members_panel_groups_by_role_with_live_presence_dots(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob, cat = [await account(server, n) for n in ("Ann", "Bob", "Cat")]
    async with Client(server.ws, ann["token"]) as c:
        agora = c.identity["communities"][0]["id"]
        await c.request(
            "member.role", {"community": agora, "user": cat["user"]["id"], "role": "facilitator"}
        )
    ann_tab = await open_tab(server, ann["token"])
    page = ann_tab.page
    await page.get_by_role("button", name="Members").click()
    panel = page.locator("#members-panel")
    groups = panel.locator(".member-group h3")
    await expect(groups).to_have_text(["Owners — 1", "Facilitators — 1", "Members — 1"])
    row = {
        u["user"]["name"]: panel.locator(f'.member[data-user-id="{u["user"]["id"]}"]')
        for u in (ann, bob, cat)
    }
    await expect(row["Ann"]).to_have_attribute("data-status", "online")
    await expect(row["Bob"]).to_have_attribute("data-status", "offline")
    await expect(row["Bob"]).to_contain_text("offline")  # for screen readers too

    # Bob comes online, and leaves again: the dot follows.
    bob_tab = await open_tab(server, bob["token"])
    await expect(row["Bob"]).to_have_attribute("data-status", "online")
    await expect(row["Bob"].locator(".presence.online")).to_be_visible()
    await expect(panel.locator("#members-note")).to_have_text("3 members, 2 online")
    await accessible(ann_tab)
    await shoot(ann_tab, "members-roles")
    await bob_tab.page.close()
    await expect(row["Bob"]).to_have_attribute("data-status", "offline")

    # A role change moves the member to their new group at once.
    await row["Bob"].get_by_role("button", name="Actions for Bob").click()
    await page.get_by_role("menuitem", name="Make facilitator").click()
    await expect(groups).to_have_text(["Owners — 1", "Facilitators — 2"])
    await expect(page.locator("#notice")).to_have_text("Bob is now a facilitator.")


async def test_message_menu_offers_only_allowed_actions_and_roles_apply_at_once(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann, bob, cat = [await account(server, n) for n in ("Ann", "Bob", "Cat")]
    ann_tab = await open_tab(server, ann["token"])
    bob_tab = await open_tab(server, bob["token"])
    cat_tab = await open_tab(server, cat["token"])
    await bob_tab.send("Hi, I am Bob")
    await expect(cat_tab.messages()).to_have_count(1)
    await cat_tab.send("Hi, I am Cat")
    for tab in (ann_tab, bob_tab, cat_tab):
        await expect(tab.messages()).to_have_count(2)
    # A member moderates nobody: no menus.
    await expect(bob_tab.page.locator(".msg-actions:visible")).to_have_count(0)
    await expect(bob_tab.page.locator("#sidebar .side-tool")).to_have_count(0)

    # The owner: every action on a member.
    page = ann_tab.page
    bobs = ann_tab.messages().nth(0)
    await bobs.hover()
    await bobs.get_by_role("button", name="Actions for Bob").click()
    menu = page.get_by_role("menu")
    items = menu.get_by_role("menuitem")
    await expect(items).to_have_text(
        [
            "Time out for 10 minutes",
            "Time out for 1 hour",
            "Time out for 1 day",
            "Make guest",
            "Make facilitator",
            "Make admin",
            "Make owner",
            "Kick…",
            "Ban…",
        ]
    )
    await expect(items.first).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await expect(items.nth(1)).to_be_focused()
    await accessible(ann_tab)
    await shoot(ann_tab, "message-menu")
    await page.keyboard.press("Escape")
    await expect(menu).to_be_hidden()
    await expect(bobs.get_by_role("button", name="Actions for Bob")).to_be_focused()

    # Bob made facilitator: his controls change at once, and he may time Cat out, nothing more.
    await bobs.get_by_role("button", name="Actions for Bob").click()
    await menu.get_by_role("menuitem", name="Make facilitator").click()
    bob_page = bob_tab.page
    await expect(bob_page.locator("#notice")).to_have_text("Your role in Agora is now facilitator.")
    await expect(bob_page.get_by_role("button", name="Create a channel in Agora")).to_be_visible()
    await expect(bob_page.locator("#channel-settings")).to_be_visible()
    await bob_tab.messages().nth(1).get_by_role("button", name="Actions for Cat").click()
    await expect(bob_page.get_by_role("menu").get_by_role("menuitem")).to_have_text(
        ["Time out for 10 minutes", "Time out for 1 hour", "Time out for 1 day"]
    )
    await bob_page.get_by_role("menuitem", name="Time out for 10 minutes").click()
    await expect(bob_page.locator("#notice")).to_have_text("Cat is timed out for 10 minutes.")
    await cat_tab.send("can I still post?")
    await expect(cat_tab.page.locator('.message[data-state="failed"] .state')).to_contain_text(
        "timed out"
    )
    # Back to member: the controls go again.
    await page.get_by_role("button", name="Members").click()
    await page.locator("#members-panel").get_by_role("button", name="Actions for Bob").click()
    await page.get_by_role("menuitem", name="Make member").click()
    await expect(bob_page.locator("#channel-settings")).to_be_hidden()
    await expect(bob_page.locator(".msg-actions:visible")).to_have_count(0)

    # Kicked (after a confirmation): Cat's community leaves her sidebar at once.
    catss = ann_tab.messages().nth(1)
    await catss.hover()
    await catss.get_by_role("button", name="Actions for Cat").click()
    await page.get_by_role("menuitem", name="Kick…").click()
    confirm = page.get_by_role("dialog", name="Kick Cat?")
    await expect(confirm).to_be_visible()
    await accessible(ann_tab)
    await confirm.get_by_role("button", name="Kick").click()
    await expect(confirm).to_be_hidden()
    await expect(page.locator("#notice")).to_have_text("Cat was kicked.")
    await expect(sidebar_communities(cat_tab)).to_have_count(0)
    await expect(cat_tab.page.locator("#notice")).to_have_text(
        "You are no longer a member of Agora."
    )
    await expect(page.locator("#member-list .member-name")).to_have_text(["Ann", "Bob"])


async def test_a_new_community_from_another_session_appears_at_once(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server, ann["token"])
    await command(server, ann["token"], "community.create", {"name": "Chess"})
    await expect(sidebar_communities(tab)).to_have_text(["Agora", "Chess"])
    await expect(tab.page.locator("#notice")).to_have_text("You joined Chess.")


# Fixes found by trying it as a new user


@pytest.mark.parametrize("width", [375, 320])
async def test_a_long_channel_title_ends_in_an_ellipsis_before_the_buttons_on_a_phone(
    make_server: MakeServer, open_tab: Any, width: int
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server, ann["token"], width=width, height=700)
    page = tab.page
    name = "introductions-and-questions-for-the-spring-cohort"
    async with Client(server.ws, ann["token"]) as c:
        await c.request("channel.update", {"channel": c.channel_named("general"), "name": name})
    title = page.locator("#channel-title")
    await expect(title).to_have_text(f"# {name}")
    box = await title.bounding_box()
    assert box is not None
    # Beside the buttons, not under them, and cut with an ellipsis.
    for button in ("#channel-settings", "#members-toggle"):
        other = await page.locator(button).bounding_box()
        assert other is not None
        assert box["x"] + box["width"] <= other["x"], button
    channels = await page.locator("#sidebar-toggle").bounding_box()
    assert channels is not None and channels["x"] + channels["width"] <= box["x"]
    assert await title.evaluate("e => e.scrollWidth > e.clientWidth")
    assert await title.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    await expect(title).to_have_attribute("title", f"#{name}")
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= width


async def test_the_phone_drawer_keeps_the_conversation_in_view(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server, ann["token"], width=375, height=740)
    page = tab.page
    await tab.send("A message that stays in view behind the channel list")
    await expect(tab.messages()).to_have_count(1)
    await page.get_by_role("button", name="Channels").click()
    sidebar = page.locator("#sidebar")
    await expect(sidebar).to_be_visible()
    # The conversation is still drawn beside the drawer (dimmed behind a scrim).
    await expect(tab.messages().first).to_be_visible()
    await expect(page.locator("#composer")).to_be_visible()
    drawer = await sidebar.bounding_box()
    assert drawer is not None and drawer["width"] <= 0.8 * 375 + 1
    # It moves aside: its messages start beside the drawer, not under it.
    author = await tab.messages().first.locator(".author").bounding_box()
    assert author is not None and author["x"] >= drawer["x"] + drawer["width"]
    assert author["x"] + 20 < 375
    hit = await page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y).id", [drawer["width"] + 20, 300]
    )
    assert hit == "scrim"
    await shoot(tab, "phone-drawer")
    # A tap beside the drawer closes it.
    await page.mouse.click(drawer["width"] + 20, 300)
    await expect(sidebar).to_be_hidden()
    await expect(page.get_by_role("button", name="Channels")).to_be_focused()


async def test_channels_have_urls_back_works_and_a_reload_reopens_the_last_channel(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    async with Client(server.ws, ann["token"]) as c:
        community = c.identity["communities"][0]["id"]
        general = c.channel_named("general")
        for name in ("random", "books"):
            await c.request("channel.create", {"community": community, "name": name})
    tab = await open_tab(server, ann["token"])
    page = tab.page
    title = page.locator("#channel-title")
    await expect(page).to_have_url(re.compile(f"/#/c/{general}$"))
    sidebar = page.locator("#sidebar")
    await sidebar.get_by_role("button", name="random").click()
    await expect(title).to_have_text("# random")
    await sidebar.get_by_role("button", name="books").click()
    await expect(title).to_have_text("# books")
    books = page.url
    await page.go_back()
    await expect(title).to_have_text("# random")
    await page.go_back()
    await expect(title).to_have_text("# general")
    await page.go_forward()
    await expect(title).to_have_text("# random")

    # A reload stays where it was, and so does a new visit to the bare address.
    await page.reload()
    await tab.online()
    await expect(title).to_have_text("# random")
    # (The same origin: the last channel is kept in its local storage.)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    await page.goto(origin + "/")
    await tab.online()
    await expect(title).to_have_text("# random")
    # A link to a channel opens it.
    await page.goto(books)
    await tab.online()
    await expect(title).to_have_text("# books")


async def test_after_an_outage_the_page_is_back_as_soon_as_the_server_answers(
    make_server: MakeServer, open_tab: Any
) -> None:
    """The backoff grows while the server is down (to 7.5-15 s after six attempts);
    the page asks /healthz every second and reconnects when it answers. A second
    page that cannot reach /healthz offers "Retry now", which reconnects at once."""
    server = make_server()
    ann = await account(server, "Ann")
    probing = await open_tab(server, ann["token"])
    blind = await open_tab(server, ann["token"])
    await blind.page.route("**/healthz", lambda route: route.abort())
    attempts = {probing: 0, blind: 0}
    grown = {probing: asyncio.Event(), blind: asyncio.Event()}

    def counter(tab: Tab) -> Any:
        def count(_: Any) -> None:
            attempts[tab] += 1
            if attempts[tab] >= 6:
                grown[tab].set()

        return count

    for tab in (probing, blind):
        tab.page.on("websocket", counter(tab))
    await asyncio.to_thread(server.stop)
    for tab in (probing, blind):
        await expect(tab.page.locator("#status")).to_have_attribute("data-state", "offline")
        await expect(tab.page.get_by_role("button", name="Retry now")).to_be_visible()
    await accessible(probing)
    async with asyncio.timeout(timeout(40)):
        for tab in (probing, blind):
            await grown[tab].wait()
    await asyncio.to_thread(server.start)
    quick = 3000  # ms: well before the next attempt of the grown backoff
    await expect(probing.page.locator("#status")).to_have_attribute(
        "data-state", "online", timeout=quick
    )
    await blind.page.get_by_role("button", name="Retry now").click()
    await expect(blind.page.locator("#status")).to_have_attribute(
        "data-state", "online", timeout=quick
    )
    await expect(blind.page.get_by_role("button", name="Retry now")).to_be_hidden()
