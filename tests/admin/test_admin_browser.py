"""The admin pages in real Chromium at 1366×768 (``test-artifacts/admin-*.png``): each
renders without a script or CSP error, and an invitation's link works in the browser."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.support import REFUSED_FORM, signed_in_context, watch_errors
from tests.support.browser import launched_browser, screenshot
from tests.support.fixtures_app import only_sqlite
from web.models import User

pytestmark = [pytest.mark.browser, only_sqlite]


@pytest.fixture(name="browser")
async def fx_browser() -> object:
    async with launched_browser() as browser:
        yield browser


async def test_the_admin_pages_in_a_browser(
    browser: Browser, live_server: str, make_user: Callable[..., Awaitable[User]]
) -> None:
    admin = await make_user(role="admin", email="ada@desk.test", name="Ada Admin")
    await make_user(role="agent", email="aki@desk.test", name="Aki Agent")
    await make_user(role="lead", email="lee@desk.test", name="Lee Lead", active=False)
    context = await signed_in_context(browser, live_server, admin)
    page: Page = await context.new_page()
    errors: list[str] = []
    watch_errors(page, errors)

    await page.goto(f"{live_server}/payments")
    await page.get_by_role("link", name="Admin", exact=True).click()
    await expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()
    await screenshot(page, "admin-1366-index")

    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("Email").fill("new@desk.test")
    await page.get_by_label("Name").fill("Noor New")
    await page.get_by_role("button", name="Invite and make a link").click()
    link = await page.locator("#set-password-link").input_value()
    assert re.search(r"/set-password/[A-Za-z0-9_-]{43}$", link)
    await screenshot(page, "admin-1366-users-invited")

    await page.goto(f"{live_server}/admin/limits/")
    await page.get_by_label("Currency").fill("USD")
    await page.get_by_label("Largest single refund").fill("12.345")
    await page.get_by_role("button", name="Save limit").click()
    await expect(page.locator("#max_single-error")).to_contain_text("at most 2 decimal places")
    await page.get_by_label("Largest single refund").fill("500")
    await page.get_by_label("Total per 24 hours").fill("2,000")
    await page.get_by_role("button", name="Save limit").click()
    await expect(page.get_by_text("Saved the limit of the agent role")).to_be_visible()
    await screenshot(page, "admin-1366-limits")

    await page.goto(f"{live_server}/admin/reasons/?edit=goodwill")
    await expect(page.get_by_label("Label")).to_have_value("Goodwill gesture")
    await screenshot(page, "admin-1366-reasons")

    await page.goto(f"{live_server}/admin/permissions")
    await screenshot(page, "admin-1366-permissions")

    other = await browser.new_context(viewport={"width": 1366, "height": 768})
    newcomer = await other.new_page()
    watch_errors(newcomer, errors)
    await newcomer.goto(link)
    await expect(newcomer).to_have_url(f"{live_server}/set-password")
    await screenshot(newcomer, "admin-1366-set-password")
    await newcomer.get_by_label("New password").fill("a long new password")
    await newcomer.get_by_label("The same again").fill("a long new password")
    await newcomer.get_by_role("button", name="Set password").click()
    await expect(newcomer.get_by_text("Your password is set")).to_be_visible()
    await other.close()
    await context.close()

    assert [e for e in errors if REFUSED_FORM not in e] == []
