"""A lead imports Antom's settlement report with a reversal and sees the refund flip to
*reversed* live on a payment page she has open, then makes the amount refundable again."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.browser.support import DEADLINE_MS, payment_page, signed_in_context, watch_errors
from tests.status.conftest import desk_payment
from tests.support.browser import screenshot
from tests.support.simulator import SimHandle
from web.db import session_scope
from web.models import Payment, Refund, User

pytestmark = pytest.mark.browser


async def test_a_reversal_in_the_settlement_report_flips_an_open_payment_page(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
    tmp_path: Path,
) -> None:
    lead = await make_user(role="lead", limits={"USD": 1_000_000})
    payment = await desk_payment(engine, simulator, currency="USD", amount_minor=40_000)
    assert payment.id is not None
    context = await signed_in_context(browser, live_server, lead)
    errors: list[str] = []
    page = await payment_page(context, live_server, payment.id)
    watch_errors(page, errors)

    # the lead refunds $150.00 (ALIPAY_CN answers at once)
    await page.get_by_label("Amount").fill("150.00")
    await page.get_by_label("Reason").select_option("customer_request")
    submit = page.locator("#refund-submit")
    await expect(submit).to_have_text(re.compile(r"^Refund "))
    await submit.click()
    badges = page.locator("#payment-refunds [data-status]")
    await expect(badges).to_have_attribute("data-status", "succeeded", timeout=DEADLINE_MS)
    async with session_scope(engine) as session:
        refund = (
            await session.exec(select(Refund).where(col(Refund.payment_pk) == payment.id))
        ).one()
    assert refund.refund_id

    # the buyer's bank sends it back; Antom's settlement report says so
    simulator.admin_post(f"refunds/{refund.refund_id}/reverse")
    report = tmp_path / f"{simulator.client_id}_settle_20261125_SIM202611250001.csv"
    report.write_text(simulator.settlement_csv())

    upload = await context.new_page()
    watch_errors(upload, errors)
    await upload.goto(f"{live_server}/settlement/import")
    await upload.get_by_label(re.compile("Settlement file")).set_input_files(report)
    await upload.get_by_role("button", name="Upload and import").click()
    result = upload.locator("#import-result .import")
    await expect(result).to_have_attribute("data-status", "done", timeout=DEADLINE_MS)
    await expect(result).to_contain_text("1 refund reversed")
    await screenshot(upload, "settlement-import-report")

    # the payment page, untouched since, shows the reversal by itself
    await expect(badges).to_have_attribute("data-status", "reversed", timeout=DEADLINE_MS)
    reversal = page.locator(f"#reversal-{refund.id}")
    await expect(reversal).to_contain_text("$150.00 came back to the merchant")
    await expect(reversal).to_contain_text("Not refundable again until a team lead decides.")
    await expect(page.get_by_test_id("refundable")).to_have_text("$250.00")
    await screenshot(page, "payment-page-refund-reversed")

    # the lead decides: refundable again, with why
    await reversal.get_by_placeholder("Why it may be refunded again").fill(
        "Buyer's account closed; refund to a new card"
    )
    await reversal.get_by_role("button", name="Make refundable again").click()
    await expect(page.locator(f"#reversal-{refund.id}")).to_contain_text(
        "Made refundable again", timeout=DEADLINE_MS
    )
    await expect(page.get_by_test_id("refundable")).to_have_text("$400.00")
    async with session_scope(engine) as session:
        after = await session.get(Payment, payment.id)
        assert after is not None and after.refunded_minor == 0
    assert errors == []
    await context.close()
