"""A lead in Chromium at 1366x768: opens the review page, sees the charts, drills into
one agent's refunds, exports them, and reads a refund's customer message; no CSP
violation or console error anywhere."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.support import signed_in_context, watch_errors
from tests.browser.test_approvals import csp_watched, violations
from tests.pages.factories import add_payment, add_refund
from tests.support.browser import screenshot
from web.db import session_scope
from web.models import RefundStatus, User
from web.timezones import now

pytestmark = pytest.mark.browser


async def test_a_lead_reviews_drills_into_an_agent_and_exports(
    browser: Browser,
    live_server: str,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    ann = await make_user(role="agent", name="Ann Agent")
    bo = await make_user(role="agent", name="Bo Agent")
    lead = await make_user(role="lead", name="Lea Lead")
    today = now()
    async with session_scope(engine) as s:
        usd = await add_payment(s, method="CARD", currency="USD", amount_minor=50_000)
        jpy = await add_payment(s, method="ALIPAY_CN", currency="JPY", amount_minor=90_000)
        for day in range(6):
            at = today - timedelta(days=day, hours=1)
            await add_refund(
                s,
                usd,
                amount_minor=1_000 + day,
                agent_id=ann.id,
                created_at=at,
                refunded_at=at + timedelta(minutes=day + 1),
            )
            await add_refund(
                s,
                jpy,
                amount_minor=500,
                agent_id=bo.id,
                created_at=at,
                reason="goodwill",
                reason_text="Goodwill",
                status=RefundStatus.FAILED if day == 2 else RefundStatus.SUCCEEDED,
                refunded_at=at + timedelta(seconds=30),
            )
        message_refund = await add_refund(
            s,
            usd,
            amount_minor=2_500,
            agent_id=ann.id,
            status=RefundStatus.PROCESSING,
            refund_id="2026REFMSG",
        )
    errors: list[str] = []
    context = await csp_watched(
        await signed_in_context(browser, live_server, lead, timezone_id="Asia/Tokyo")
    )
    page = await context.new_page()
    watch_errors(page, errors)
    await page.goto(f"{live_server}/refunds")
    await page.get_by_role("link", name="Review").click()
    await expect(page).to_have_url(re.compile(r"/review"))
    for chart in ("chart-per-day", "chart-reasons", "chart-agents", "chart-time-to-final"):
        await expect(page.locator(f"#{chart}")).to_be_visible()
    await expect(page.locator("#chart-per-day rect.bar").first).to_be_visible()
    await expect(page.locator("#review-currencies")).to_contain_text("USD")
    await screenshot(page, "review-1-page")

    await page.locator("#review-agents").get_by_role("link", name="Ann Agent").click()
    await expect(page).to_have_url(re.compile(rf"/refunds\?agent={ann.id}"))
    await expect(page.locator("[id^=refund-row-]")).to_have_count(7)
    await expect(page.locator("#refunds-totals")).to_contain_text("USD")
    await screenshot(page, "review-2-agent-refunds")

    async with page.expect_download() as waiting:
        await page.locator("#refunds-export").click()
    download = await waiting.value
    path = await download.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == 7
    assert {r["agent"] for r in rows} == {ann.email}
    assert {r["time_zone"] for r in rows} == {"Asia/Tokyo"}

    await page.goto(f"{live_server}/refunds/{message_refund.id}")
    await expect(page.locator("#customer-message")).to_have_value(
        re.compile(r"started a refund of \$25\.00 to the card you paid with")
    )
    await page.locator("#copy-customer-message").click()
    await expect(page.locator("#copy-customer-message")).to_have_text("Copied")
    await screenshot(page, "review-3-customer-message")

    assert await violations(page) == []
    assert errors == []
    await context.close()
