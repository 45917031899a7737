"""The /sim page drives the admin API from a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.helpers import Gateway
from tests.support.simulator import running_simulator


@pytest.mark.browser
def test_page_forms_and_buttons(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    from tests.support.browser import launch_options

    with running_simulator(tmp_path, refund_delay_s=3600, time_scale=1.0) as sim:
        gw = Gateway(sim)
        p = sim.create_payment(method="CARD", amount_minor=12000)
        made = gw.refund(p["paymentId"], 2000, "r-browser")
        gw.close()
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(**launch_options())
            page = browser.new_page()
            page.goto(sim.base_url + "/sim")
            page.select_option("select[name=method]", "GCASH")
            page.fill("form[data-api=payments] input[name=currency]", "PHP")
            page.fill("input[name=amountMinor]", "777")
            page.fill("input[name=buyerEmail]", "li@example.com")
            with page.expect_navigation():
                page.click("button:text-is('Create')")
            created = [x for x in sim.admin_get("payments") if x["method"] == "GCASH"]
            assert [(x["amountMinor"], x["currency"], x["buyerEmail"]) for x in created] == [
                (777, "PHP", "li@example.com")
            ]
            assert "₱7.77" in page.content()

            with page.expect_navigation():
                page.click("button:text-is('Settle FAIL')")
            assert sim.refund(made["refundId"])["status"] == "FAIL"

            with page.expect_navigation():
                page.click(f"tr:has-text('{p['paymentId']}') >> button:text-is('Open chargeback')")
            assert sim.admin_get(f"payments/{p['paymentId']}")["disputeOpen"] is True

            page.fill("input[name=asyncFail]", "2")  # out of range: refused, shown
            page.click("button:text-is('Save')")
            page.wait_for_selector("#message:has-text('between 0 and 1')")
            browser.close()
