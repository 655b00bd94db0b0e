# ruff: noqa: F811  (the fixtures imported from test_browser are arguments of the tests)
"""The web client's login form under the hardening of issue 13: the throttled login's
message with its wait, and the setup code the first account needs beyond loopback.

Uses the fixtures of ``tests/test_browser.py`` (Debian's Chromium through
Playwright, a fresh deployment per test, both deployments).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

from tests.test_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    MakeServer,
    account,
    browser,
    open_tab,
)

with contextlib.suppress(ImportError):  # reported by the `browser` fixture
    from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_throttled_login_says_when_to_try_again(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server(login_account_limit=1)
    username = (await account(server, "ann"))["user"]["username"]
    tab = await open_tab(server.nodes[0])
    page = tab.page
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill("wrong password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#auth-error")).to_have_text("wrong username or password")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#auth-error")).to_have_text(
        re.compile(r"^too many failed logins; try again in \d+ (s|min)$")
    )
    await expect(page.locator("#auth-view")).to_be_visible()


async def test_the_first_account_beyond_loopback_is_asked_for_the_setup_code(
    make_server: MakeServer, open_tab: Any
) -> None:
    server = make_server(host="0.0.0.0")
    found = re.search(r"setup code ([0-9a-f]{20})", server.nodes[0].log.read_text())
    assert found is not None
    tab = await open_tab(server.nodes[0])
    page = tab.page
    await page.get_by_role("button", name="Create an account").click()
    await expect(page.get_by_label("Setup code")).to_be_hidden()
    await page.get_by_label("Username").fill("ann")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#auth-error")).to_contain_text("needs the setup code")
    await expect(page.get_by_label("Setup code")).to_be_visible()
    await expect(page.get_by_label("Setup code")).to_be_focused()

    await page.get_by_label("Setup code").fill(found[1])
    await page.get_by_role("button", name="Register").click()
    await tab.online()
    await expect(page.locator("#chat-view")).to_be_visible()
