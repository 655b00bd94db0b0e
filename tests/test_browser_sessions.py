# ruff: noqa: F811  (the fixtures imported from test_browser are arguments of the tests)
"""The web client's log out and Sessions view (issue 13 item 2).

Uses the fixtures of ``tests/test_browser.py`` (Debian's Chromium through
Playwright, a fresh deployment per test, both deployments). Pages open on the
first node; the Python side uses the last, so a revocation made in the page
closes a session on the other node, and one made elsewhere ends the page's.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from clients import change_password, login
from tests.conftest import closed_with, http_json, raw_session
from tests.test_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    MakeServer,
    accessible,
    account,
    browser,
    open_tab,
    shoot,
)

with contextlib.suppress(ImportError):  # reported by the `browser` fixture
    from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="module")

SESSIONS = "/api/v1/auth/sessions"


async def another_token(server: Any, ann: dict[str, Any]) -> str:
    return (await login(server.nodes[-1].http, ann["user"]["username"], PASSWORD))["token"]


async def test_log_out_revokes_the_token_on_the_server(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    elsewhere = await raw_session(server.nodes[-1], token=ann["token"])  # the same token
    tab = await open_tab(server.nodes[0], ann["token"])

    await tab.page.get_by_role("button", name="Log out").click()

    await expect(tab.page.locator("#auth-view")).to_be_visible()
    await expect(tab.page.locator("#auth-error")).to_have_text("")
    assert await closed_with(elsewhere.ws) == (4001, "logged out")
    assert http_json("GET", server.nodes[-1].http + SESSIONS, token=ann["token"])[0] == 401


async def test_the_sessions_view_revokes_one_session_then_every_other(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    other = await another_token(server, ann)
    other_session = await raw_session(server.nodes[-1], token=other)
    tab = await open_tab(server.nodes[0], ann["token"])
    page = tab.page

    await page.get_by_role("button", name="Sessions").click()
    dialog = page.locator("#sessions-dialog")
    await expect(dialog.locator(".session")).to_have_count(2)
    await expect(dialog.locator(".current-session")).to_have_count(1)
    await expect(dialog.locator("#sessions-summary")).to_have_text("You are signed in in 2 places.")
    await accessible(tab)
    await shoot(tab, "sessions")
    await dialog.get_by_role("button", name="Revoke").click()
    assert await closed_with(other_session.ws) == (4001, "token revoked")
    await expect(dialog.locator(".session")).to_have_count(1)
    await expect(dialog.locator("#sessions-summary")).to_have_text(
        "Revoked. This is your only session."
    )
    await dialog.get_by_role("button", name="Close").click()

    others = [await another_token(server, ann) for _ in range(2)]
    open_sessions = [await raw_session(server.nodes[-1], token=t) for t in others]
    await page.get_by_role("button", name="Sessions").click()
    await expect(dialog.locator(".session")).to_have_count(3)
    await dialog.get_by_role("button", name="Log out everywhere else").click()
    for session in open_sessions:
        assert await closed_with(session.ws) == (4001, "token revoked")
    await expect(dialog.locator("#sessions-summary")).to_have_text(
        "Logged out of 2 other sessions. This is your only session."
    )
    await tab.online()  # this page's own session stays


async def test_a_page_whose_session_ends_elsewhere_says_why(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server()
    ann = await account(server, "Ann")
    tab = await open_tab(server.nodes[0], ann["token"])
    other = await another_token(server, ann)

    await change_password(server.nodes[-1].http, other, PASSWORD, "a brand new password")

    await expect(tab.page.locator("#auth-view")).to_be_visible()
    await expect(tab.page.locator("#auth-error")).to_have_text(
        "Your password was changed, which ended your other sessions."
        " Please log in with the new one."
    )
    # A page opened later with the stored, revoked token is told the session ended.
    await tab.page.evaluate(f"localStorage.setItem('agora.token', {ann['token']!r})")
    await tab.page.reload()
    await expect(tab.page.locator("#auth-error")).to_have_text(
        "Your session has ended (logged out elsewhere, revoked or expired). Please log in again."
    )
