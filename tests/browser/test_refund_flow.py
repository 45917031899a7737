"""An agent's refund, end to end in real Chromium: sign in, find the payment in Antom, type a
wrong then a right amount with live messages, submit, see the result badge.

The app runs on a real uvicorn server (``live_server``) against a real simulator.
Screenshots land in ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import launched_browser, screenshot
from tests.support.fixtures_app import DEFAULT_PASSWORD
from tests.support.simulator import SimHandle
from tests.support.waiting import DEADLINE_S
from web.models import User
from web.settings import Settings

pytestmark = pytest.mark.browser
DEADLINE_MS = int(DEADLINE_S * 1000)


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    # Asynchronous refunds stay PROCESSING until a test settles them: the page must be
    # showing the processing result before Antom's notification can arrive.
    return {"refund_delay_s": 10**9}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], simulator: SimHandle) -> Settings:
    return make_settings(simulator=simulator)


@pytest.fixture(name="browser")
async def fx_browser() -> AsyncIterator[Browser]:
    async with launched_browser() as browser:
        yield browser


async def test_agent_refunds_a_payment_found_in_antom(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    agent = await make_user(role="agent", name="Mei Chen", limits={"JPY": 100_000})
    created = simulator.create_payment(
        method="ALIPAY_CN", currency="JPY", amount_minor=1200, buyer_email="kenji@example.jp"
    )
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{page.url}: {msg.text} at {msg.location}")
            if msg.type == "error"
            else None
        ),
    )

    await page.goto(f"{live_server}/login")
    await page.get_by_label("Email").fill(agent.email)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/payments$"))
    await screenshot(page, "01-payments-empty")

    await page.get_by_label("Find a payment in Antom").fill(created["paymentId"])
    await page.get_by_role("button", name="Find", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/payments/\d+$"))
    await expect(page.get_by_test_id("refundable")).to_have_text("¥1,200")
    amount = page.get_by_label("Amount")
    await expect(amount).to_have_value("1200")
    await screenshot(page, "02-payment-page")

    submit = page.locator("#refund-submit")
    await amount.fill("")
    await amount.press_sequentially("5000", delay=30)
    await expect(page.locator("#refund-amount-errors")).to_contain_text("refundable")
    await expect(submit).to_have_attribute("aria-disabled", "true")  # still in the Tab order
    await expect(amount).to_be_focused()  # live checks never steal the field being typed in
    await screenshot(page, "03-amount-too-large")

    await page.get_by_label("Reason").select_option("other")
    await expect(page.locator("#refund-note-errors")).to_contain_text("note")
    await amount.fill("")
    await amount.press_sequentially("1000", delay=30)
    await expect(page.locator("#refund-amount-errors")).to_be_empty()
    await page.locator("#refund-note").press_sequentially("Customer changed their mind", delay=10)
    await expect(page.locator("#refund-note-errors")).to_be_empty()
    await expect(submit).not_to_have_attribute("aria-disabled", "true")
    await expect(submit).to_have_text("Refund ¥1,000 to ALIPAY_CN")
    await screenshot(page, "04-ready-to-refund")

    await submit.click()
    result = page.locator("#refund-result")
    await expect(result.locator(".badge")).to_have_text("Succeeded")
    await expect(result).to_contain_text("Refund of ¥1,000 succeeded")
    await expect(page.get_by_test_id("refundable")).to_have_text("¥200")
    await expect(page.locator("#payment-refunds")).to_contain_text("¥1,000")
    await screenshot(page, "05-refund-succeeded")

    await result.get_by_role("link").click()
    await expect(page.locator("ol.timeline li").first).to_be_visible()
    await screenshot(page, "06-refund-timeline")

    # The lists: filter with htmx, the URL follows, and the back button restores a page.
    await page.goto(f"{live_server}/refunds")
    await expect(page.locator("#refunds-results")).to_contain_text("¥1,000")
    await screenshot(page, "07-refunds-list")
    await page.goto(f"{live_server}/payments")
    await page.get_by_label("Search").fill(created["paymentId"])
    await expect(page).to_have_url(re.compile(f"q={created['paymentId']}"))
    await expect(page.locator("#payments-results")).to_contain_text(created["paymentId"])
    await page.locator("#payments-results").get_by_role("link", name=created["paymentId"]).click()
    await expect(page).to_have_url(re.compile(r"/payments/\d+$"))
    await page.go_back()
    await expect(page.locator("#payment-filters")).to_be_visible()
    await expect(page.get_by_label("Search")).to_have_value(created["paymentId"])
    await screenshot(page, "08-payments-search")

    # htmx settles only class/width/height (base.html), so no inline style trips the CSP.
    assert not errors, errors
    await context.close()


async def test_a_processing_refund_turns_succeeded_without_a_reload(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """GCash settles later: the badge says Processing, then Antom's notification reaches
    the desk and the open page updates itself over SSE."""
    agent = await make_user(role="agent", limits={"PHP": 10_000_000})
    created = simulator.create_payment(method="GCASH", currency="PHP", amount_minor=250_000)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{live_server}/login")
    await page.get_by_label("Email").fill(agent.email)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_label("Find a payment in Antom").fill(created["paymentId"])
    await page.get_by_role("button", name="Find", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/payments/\d+$"))

    await page.get_by_label("Amount").fill("500.00")
    await page.get_by_label("Reason").select_option("item_returned")
    submit = page.locator("#refund-submit")
    await expect(submit).to_have_text("Refund ₱500.00 to GCASH")
    await submit.click()
    result = page.locator("#refund-result")
    await expect(result).to_contain_text("is processing at Antom")
    (at_antom,) = simulator.admin_get(f"refunds?paymentId={created['paymentId']}")
    simulator.settle(at_antom["refundId"], "SUCCESS")  # Antom settles it, and says so
    row_badge = page.locator("#payment-refunds tbody tr .badge")
    await expect(row_badge).to_have_text("Succeeded", timeout=DEADLINE_MS)
    await expect(result.locator(".badge")).to_have_text("Succeeded")
    await expect(page.get_by_test_id("refundable")).to_have_text("₱2,000.00")
    await screenshot(page, "09-processing-then-succeeded")
    await context.close()
