"""Every open page stays true (issue 8): what a page shows about a payment or a refund is
re-rendered from the database when it changes, whoever changed it.

Each test reproduces one contradiction seen on an open page — a refund made in another
tab, by Antom's notification, by the poller, or outside the desk — and checks that the
rows, the totals, the result banner and the form's hint agree with the database.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.support import (
    DEADLINE_MS,
    expect_agrees,
    expect_live,
    payment_page,
    signed_in_context,
    watch_errors,
)
from tests.status.conftest import desk_payment, make_refund, refund_result, signed
from tests.support.browser import screenshot
from tests.support.simulator import SimHandle
from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.antom.messages import RefundRequest
from web.antom.money import Money
from web.models import User
from web.settings import PollerConfig

pytestmark = pytest.mark.browser

FAST_POLLER = PollerConfig(base_delay_s=0.0, max_delay_s=0.0, pending_grace_s=0.0, idle_s=0.05)


@pytest.fixture
async def antom(simulator: SimHandle) -> AsyncIterator[AntomClient]:
    """Antom's API as the desk's own client sees it, for refunds made behind the desk's back."""
    client = AntomClient(
        gateway_url=simulator.base_url,
        client_id=simulator.client_id,
        merchant_private_key=load_private_key(simulator.merchant_private_key_pem),
        antom_public_keys=[load_public_key(simulator.antom_public_key_pem)],
        timeout=5.0,
    )
    try:
        yield client
    finally:
        await client.aclose()


async def refund_in_form(page: Page, amount: str, reason: str = "customer_request") -> None:
    await page.get_by_label("Amount").fill(amount)
    await page.get_by_label("Reason").select_option(reason)
    submit = page.locator("#refund-submit")
    await expect(submit).to_have_text(re.compile(r"^Refund "))
    await submit.click()
    await expect(page.locator("#refund-result")).to_be_visible()


async def test_a_refund_made_in_another_tab_appears_on_every_open_page(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """Seen: "Refunded $120.50" above rows adding up to $110.50, and the form offering
    "Up to $375.00" under "Still refundable $365.00"."""
    agent = await make_user(role="agent", limits={"USD": 1_000_000})
    payment = await desk_payment(engine, simulator, currency="USD", amount_minor=50_000)
    context = await signed_in_context(browser, live_server, agent)
    errors: list[str] = []
    acting, untouched, edited = [
        await payment_page(context, live_server, payment.id or 0) for _ in range(3)
    ]
    for page in (acting, untouched, edited):
        watch_errors(page, errors)
    # One agent has started typing an amount of her own on the third page.
    await edited.get_by_label("Amount").fill("495.00")
    await expect(edited.locator("#refund-submit")).to_have_text(re.compile("495"))

    await refund_in_form(acting, "10.00")

    for page in (untouched, edited):
        db = await expect_agrees(page, engine, payment.id or 0)
        assert db.refund_amounts == ["$10.00"] and db.refundable == "$490.00"
    # Nobody had typed on this one: it now offers what is refundable now.
    await expect(untouched.get_by_label("Amount")).to_have_value("490.00")
    # What the agent typed is kept, judged against the new amount, and she is told why.
    await expect(edited.get_by_label("Amount")).to_have_value("495.00")
    await expect(edited.locator("#refund-amount-errors")).to_contain_text("$490.00")
    await expect(edited.locator("#refund-form")).to_contain_text("$490.00 is now refundable")
    await screenshot(edited, "desk-live-other-tab")
    assert not errors, errors
    await context.close()


@pytest.mark.desk(poller_enabled=True, poller=FAST_POLLER)  # only an inquiry confirms a failure
async def test_an_async_failure_rewrites_the_result_banner(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """Seen: a *Failed* badge beside "is processing at Antom. Do not refund again"."""
    agent = await make_user(role="agent", limits={"PHP": 10_000_000})
    payment = await desk_payment(
        engine, simulator, method="GCASH", currency="PHP", amount_minor=250_000
    )
    context = await signed_in_context(browser, live_server, agent)
    page = await payment_page(context, live_server, payment.id or 0)
    await refund_in_form(page, "500.00")
    result = page.locator("#refund-result")
    await expect(result).to_contain_text("is processing at Antom")

    (at_antom,) = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
    simulator.settle(at_antom["refundId"], "FAIL")

    await expect(result.locator("[data-status]").first).to_have_attribute(
        "data-status", "failed", timeout=DEADLINE_MS
    )
    await expect(result).not_to_contain_text("processing")
    await expect(result).not_to_contain_text("Do not refund again")
    await expect(result).to_contain_text("failed")
    await expect_agrees(page, engine, payment.id or 0)
    await screenshot(page, "desk-live-async-failure")
    await context.close()


async def test_an_external_refund_notified_by_antom_adds_its_row(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """Seen: "€30.00 refunded" beside "No refunds yet" after a refund made in the Dashboard."""
    agent = await make_user(role="agent", limits={"EUR": 1_000_000})
    payment = await desk_payment(engine, simulator, currency="EUR", amount_minor=10_000)
    context = await signed_in_context(browser, live_server, agent)
    page = await payment_page(context, live_server, payment.id or 0)
    await expect(page.locator("#payment-refunds")).to_contain_text("No refunds yet")

    body, headers = signed(
        refund_result(
            None,
            paymentId=payment.payment_id,
            refundRequestId="made-in-the-dashboard",
            refundId="antom-dashboard-1",
            refundAmount={"currency": "EUR", "value": "3000"},
        ),
        client_id=simulator.client_id,
    )
    async with httpx.AsyncClient(base_url=live_server) as antom_side:
        answer = await antom_side.post("/webhooks/antom", content=body, headers=headers)
    assert answer.status_code == 200, answer.text

    db = await expect_agrees(page, engine, payment.id or 0)
    assert db.refund_amounts == ["€30.00"]
    await expect(page.locator("#payment-refunds")).to_contain_text("External")
    await expect(page.locator("#payment-refunds")).not_to_contain_text("No refunds yet")
    await context.close()


@pytest.mark.desk(poller_enabled=True, poller=FAST_POLLER)
async def test_a_poller_result_updates_the_open_page(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    antom: AntomClient,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """Antom sends no notification for this refund: the desk's poller learns that it
    failed, and the money it held is refundable again — on the open page too."""
    agent = await make_user(role="agent", limits={"PHP": 10_000_000})
    payment = await desk_payment(
        engine, simulator, method="GCASH", currency="PHP", amount_minor=90_000
    )
    refund = await make_refund(engine, payment, amount_minor=20_000)
    answer = await antom.refund(
        RefundRequest(
            refund_request_id=refund.refund_request_id,
            payment_id=payment.payment_id,
            amount=Money(20_000, "PHP"),
        )
    )
    assert answer.result_code == "REFUND_IN_PROCESS" and answer.refund_id
    context = await signed_in_context(browser, live_server, agent)
    page = await payment_page(context, live_server, payment.id or 0)

    await expect(page.locator("#refund-amount-hint")).to_contain_text("Up to ₱700.00")

    simulator.settle(answer.refund_id, "FAIL")

    row_status = page.locator("#payment-refunds tbody tr [data-status]").first
    await expect(row_status).to_have_attribute("data-status", "failed", timeout=DEADLINE_MS)
    db = await expect_agrees(page, engine, payment.id or 0)
    assert db.refundable == "₱900.00" and db.in_flight == "₱0.00"
    await expect(page.get_by_label("Amount")).to_have_value("900.00")
    await context.close()


async def test_the_refunds_list_offers_rows_that_arrived(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """Seen: /refunds never gains new rows without a reload."""
    lead = await make_user(role="lead")
    payment = await desk_payment(engine, simulator, currency="USD", amount_minor=10_000)
    await make_refund(engine, payment, amount_minor=1_000)
    context = await signed_in_context(browser, live_server, lead)
    page = await context.new_page()
    await page.goto(f"{live_server}/refunds?currency=USD")
    await expect_live(page)
    rows = page.locator("#refunds-results tbody tr")
    await expect(rows).to_have_count(1)

    body, headers = signed(
        refund_result(
            None,
            paymentId=payment.payment_id,
            refundRequestId="dashboard-refund-2",
            refundId="antom-dashboard-2",
            refundAmount={"currency": "USD", "value": "700"},
        ),
        client_id=simulator.client_id,
    )
    async with httpx.AsyncClient(base_url=live_server) as antom_side:
        assert (await antom_side.post("/webhooks/antom", content=body, headers=headers)).is_success

    show = page.get_by_role("button", name=re.compile(r"1 new refund"))
    await expect(show).to_be_visible(timeout=DEADLINE_MS)
    await expect(rows).to_have_count(1)  # nothing moves under the reader until asked
    await screenshot(page, "desk-live-new-refunds-bar")
    await show.click()
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("$7.00")
    await expect(page).to_have_url(re.compile(r"currency=USD"))  # the filter is kept
    await expect(show).to_have_count(0)
    await context.close()


async def test_the_payments_list_offers_payments_that_arrived(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """A payment Antom tells the desk about (PAYMENT_RESULT) while the list is open."""
    agent = await make_user(role="agent")
    await desk_payment(engine, simulator, currency="USD", amount_minor=10_000)
    context = await signed_in_context(browser, live_server, agent)
    page = await context.new_page()
    await page.goto(f"{live_server}/payments?currency=USD")
    await expect_live(page)
    rows = page.locator("#payments-results tbody tr")
    await expect(rows).to_have_count(1)

    body, headers = signed(
        {
            "notifyType": "PAYMENT_RESULT",
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
            "paymentId": "pay-arrived-1",
            "paymentRequestId": "order-arrived-1",
            "paymentAmount": {"currency": "USD", "value": "2500"},
            "paymentMethodType": "ALIPAY_CN",
            "paymentCreateTime": "2026-11-25T10:00:00+00:00",
            "paymentTime": "2026-11-25T10:00:05+00:00",
        },
        client_id=simulator.client_id,
    )
    async with httpx.AsyncClient(base_url=live_server) as antom_side:
        assert (await antom_side.post("/webhooks/antom", content=body, headers=headers)).is_success

    show = page.get_by_role("button", name=re.compile(r"1 new payment"))
    await expect(show).to_be_visible(timeout=DEADLINE_MS)
    await expect(rows).to_have_count(1)
    await show.click()
    await expect(rows).to_have_count(2)
    await expect(page.locator("#payments-results")).to_contain_text("pay-arrived-1")
    await expect(page).to_have_url(re.compile(r"currency=USD"))
    await context.close()
