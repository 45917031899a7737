"""The agent's flow as screenshots, at 1366×768 and 1920×1080 (``test-artifacts/desk-*``),
for people to look at: the lists with what blocks a refund, a payment page on arrival,
a wrong amount, a ready form, a refund that succeeded, one that failed with what to do
next, "Refund again", the refunds list with a new-rows bar, the refund page, the leads'
worklists and the time zone setting. Each step also checks what the picture should show.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.support import (
    DEADLINE_MS,
    expect_live,
    payment_page,
    signed_in_context,
    watch_errors,
)
from tests.status.conftest import desk_payment, refund_result, signed
from tests.support.browser import screenshot
from tests.support.simulator import SimHandle
from web.db import session_scope
from web.models import Alert, AlertKind, Payment, User, utcnow
from web.settings import PollerConfig

pytestmark = pytest.mark.browser

SIZES = {"1366": (1366, 768), "1920": (1920, 1080)}
FAST_POLLER = PollerConfig(base_delay_s=0.0, max_delay_s=0.0, pending_grace_s=0.0, idle_s=0.05)


async def shot(page: Page, size: str, name: str) -> None:
    await screenshot(page, f"desk-{size}-{name}")


async def _seed(engine: AsyncEngine, simulator: SimHandle) -> dict[str, Payment]:
    buyers = [
        ("Mei Chen", "mei.chen@example.com", "ORD-10233"),
        ("Kenji Sato", "kenji@example.jp", "ORD-10234"),
        ("Ana Lima", "ana.lima@example.com", "ORD-10235"),
        ("Tom Berg", "tom@example.se", "ORD-10236"),
    ]
    made = {
        "alipay": await desk_payment(engine, simulator, currency="USD", amount_minor=42_050),
        "gcash": await desk_payment(
            engine, simulator, method="GCASH", currency="PHP", amount_minor=250_000
        ),
        "chargeback": await desk_payment(engine, simulator, currency="EUR", amount_minor=8_900),
        "old": await desk_payment(
            engine, simulator, method="DANA", currency="IDR", amount_minor=1_500_000_00
        ),
    }
    async with session_scope(engine) as session:
        for (name, email, ref), payment in zip(buyers, made.values(), strict=True):
            row = await session.get(Payment, payment.id)
            assert row is not None
            row.buyer_name, row.buyer_email, row.reference_order_id = name, email, ref
            if payment is made["chargeback"]:
                row.dispute_open = True
            if payment is made["old"]:
                row.paid_at = utcnow() - timedelta(days=120)
    return made


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.desk(poller_enabled=True, poller=FAST_POLLER)
async def test_the_agent_flow_in_pictures(
    size: str,
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    made = await _seed(engine, simulator)
    agent = await make_user(
        role="agent", name="Mei Ling", limits={"USD": 100_000, "PHP": 10_000_000, "EUR": 100_000}
    )
    context = await signed_in_context(
        browser, live_server, agent, viewport=SIZES[size], timezone_id="Asia/Singapore"
    )
    errors: list[str] = []

    lists = await context.new_page()
    watch_errors(lists, errors)
    await lists.goto(f"{live_server}/payments")
    await expect_live(lists)
    await expect(lists.locator("[data-blocker=chargeback]")).to_be_visible()
    await expect(lists.locator("[data-blocker=window_closed]")).to_be_visible()
    await shot(lists, size, "01-payments")

    page = await payment_page(context, live_server, made["alipay"].id or 0)
    watch_errors(page, errors)
    await expect(page.get_by_label("Amount")).to_be_focused()
    await shot(page, size, "02-payment-arrival")
    await page.keyboard.type("500")
    await expect(page.locator("#refund-amount-errors")).to_contain_text("refundable")
    await shot(page, size, "03-amount-too-large")
    await page.get_by_label("Amount").fill("120.50")
    await page.get_by_label("Reason").select_option("item_returned")
    await expect(page.locator("#refund-submit")).to_have_text("Refund $120.50 to ALIPAY_CN")
    await shot(page, size, "04-ready")
    await page.locator("#refund-submit").click()
    await expect(page.locator("#refund-result")).to_contain_text("succeeded")
    await shot(page, size, "05-succeeded")

    # An asynchronous refund that Antom fails: the banner says why and what to do next.
    gcash = await payment_page(context, live_server, made["gcash"].id or 0)
    watch_errors(gcash, errors)
    await gcash.get_by_label("Amount").fill("700.00")
    await gcash.get_by_label("Reason").select_option("duplicate_charge")
    await gcash.locator("#refund-submit").click()
    await expect(gcash.locator("#refund-result")).to_contain_text("processing")
    await shot(gcash, size, "06-processing")
    (at_antom,) = simulator.admin_get(f"refunds?paymentId={made['gcash'].payment_id}")
    simulator.settle(at_antom["refundId"], "FAIL")
    result = gcash.locator("#refund-result")
    await expect(result.locator("[data-status]").first).to_have_attribute(
        "data-status", "failed", timeout=DEADLINE_MS
    )
    await expect(result).to_contain_text("Next:")
    await shot(gcash, size, "07-failed-what-next")
    await result.get_by_role("link", name="Refund again").click()
    await expect(gcash.get_by_label("Amount")).to_have_value("700.00")
    await expect(gcash.locator("#refund-form-notice")).to_contain_text("Refunding again")
    await shot(gcash, size, "08-refund-again")

    # The refunds list, with a refund made elsewhere offered at the top.
    refunds = await context.new_page()
    watch_errors(refunds, errors)
    await refunds.goto(f"{live_server}/refunds")
    await expect_live(refunds)
    body, headers = signed(
        refund_result(
            None,
            paymentId=made["alipay"].payment_id,
            refundRequestId="dashboard-refund",
            refundId="antom-dashboard-refund",
            refundAmount={"currency": "USD", "value": "1500"},
        ),
        client_id=simulator.client_id,
    )
    async with httpx.AsyncClient(base_url=live_server) as antom_side:
        assert (await antom_side.post("/webhooks/antom", content=body, headers=headers)).is_success
    await expect(refunds.get_by_role("button", name=re.compile("1 new refund"))).to_be_visible(
        timeout=DEADLINE_MS
    )
    await shot(refunds, size, "09-refunds-new-bar")
    await refunds.locator("#refunds-results tbody tr").first.locator("a").first.click()
    await expect(refunds.locator("ol.timeline li").first).to_be_visible()
    await shot(refunds, size, "10-refund-page")

    await lists.reload()
    await shot(lists, size, "11-payments-after")
    await lists.goto(f"{live_server}/account")
    await shot(lists, size, "12-account-time-zone")
    assert not errors, errors
    await context.close()


@pytest.mark.parametrize("size", list(SIZES))
async def test_the_leads_worklists_in_pictures(
    size: str,
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    made = await _seed(engine, simulator)
    async with session_scope(engine) as session:
        session.add(
            Alert(
                dedupe_key="stuck:screens",
                kind=AlertKind.STUCK,
                payment_pk=made["gcash"].id,
                message="A refund has been processing for 3 h; Antom still says it is in process",
                created_at=utcnow() - timedelta(hours=3),
            )
        )
    lead = await make_user(role="lead", name="Lee Lead")
    context = await signed_in_context(browser, live_server, lead, viewport=SIZES[size])
    page = await context.new_page()
    errors: list[str] = []
    watch_errors(page, errors)
    await page.goto(f"{live_server}/worklists")
    await expect_live(page)
    await expect(page.locator("#worklists-count")).to_contain_text("1")
    await expect(page.locator('[data-queue="overdue"] .queue-count')).to_have_text("1")
    body, headers = signed(
        refund_result(
            None,
            paymentId=made["alipay"].payment_id,
            refundRequestId="made-in-dashboard",
            refundId="antom-dash-9",
            refundAmount={"currency": "USD", "value": "1000"},
        ),
        client_id=simulator.client_id,
    )
    async with httpx.AsyncClient(base_url=live_server) as antom_side:
        assert (await antom_side.post("/webhooks/antom", content=body, headers=headers)).is_success
    # The navigation and the queue's tab count the new item by themselves.
    await expect(page.locator("#worklists-count")).to_contain_text("2", timeout=DEADLINE_MS)
    await expect(page.locator('[data-queue="external"] .queue-count')).to_have_text("1")
    await page.reload()
    await expect(page.locator("#worklists-count")).to_contain_text("2")
    await shot(page, size, "13-worklists")
    # One item: assigned to oneself and commented on, in place; the thread says who.
    await page.get_by_role("link", name=re.compile("Open item")).click()
    await page.get_by_label("Assign to").select_option(label="Lee Lead (you)")
    await page.get_by_role("button", name="Assign").click()
    await expect(page.locator("[data-assignee]")).to_contain_text("Lee Lead")
    await page.get_by_label("Add a comment").fill("Asked Antom support about it")
    await page.get_by_role("button", name="Comment").click()
    await expect(page.locator('[data-note-kind="comment"]')).to_contain_text("Lee Lead")
    await shot(page, size, "14-worklist-item")
    assert not errors, errors
    await context.close()
