"""Bulk refunds in the browser, under the real CSP (issue 12).

A lead uploads a file and reads the preview (a duplicate row caught), keeps the batch's
page open; another lead approves it in a second browser; the first lead's page shows the
run's progress by itself, then the result file downloads. Screenshots go to
``test-artifacts/``; no page reports a CSP violation or a console error.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.support import (
    DEADLINE_MS,
    expect_live,
    human_click,
    signed_in_context,
    watch_errors,
)
from tests.browser.test_approvals import csp_watched, violations
from tests.status.conftest import desk_payment
from tests.support.browser import screenshot
from tests.support.simulator import SimHandle
from web.models import User

pytestmark = pytest.mark.browser


async def test_upload_preview_approve_in_a_second_browser_live_progress_result_file(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
    tmp_path: Path,
) -> None:
    lead = await make_user(role="lead", name="Lee Lead")
    other = await make_user(role="lead", name="Olu Other")
    payments = [await desk_payment(engine, simulator, amount_minor=1_500 + i) for i in range(4)]
    file = tmp_path / "refunds.csv"
    lines = ["paymentId,amount,reason,note"] + [
        f"{p.payment_id},full,duplicate_charge,charged twice" for p in payments
    ]
    lines.append(f"{payments[0].payment_id},5.00,duplicate_charge,again")  # a repeat
    file.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    errors: list[str] = []

    mine = await csp_watched(await signed_in_context(browser, live_server, lead))
    page = await mine.new_page()
    watch_errors(page, errors)
    await page.goto(f"{live_server}/bulk/")
    await page.locator("#file").set_input_files(str(file))
    await human_click(page, page.locator("#upload-button"))
    await expect(page).to_have_url(re.compile(r"/bulk/\d+$"))
    state = page.locator("#bulk-state")
    await expect(state).to_have_attribute("data-status", "awaiting")
    await expect(page.locator("#bulk-rows")).to_contain_text("Line 2 refunds this payment too")
    await expect(page.locator("#approve-button")).to_have_count(0)  # never one's own
    await expect(page.locator("#bulk-totals")).to_contain_text("$60.06")
    await expect_live(page)
    await screenshot(page, "bulk-1-preview")
    batch_url = page.url

    theirs = await csp_watched(await signed_in_context(browser, live_server, other))
    review = await theirs.new_page()
    watch_errors(review, errors)
    await review.goto(batch_url)
    await expect(review.locator("#bulk-rows")).to_contain_text("Line 2 refunds this payment too")
    await review.get_by_label("Comment").first.fill("Refund run of 25 Nov")
    await screenshot(review, "bulk-2-approver-review")
    await human_click(review, review.locator("#approve-button"))
    await expect(review.locator(".flashes")).to_contain_text("Approved")

    # The requester's page follows the run by itself, without a reload.
    await expect(state).to_have_attribute("data-status", "finished", timeout=DEADLINE_MS)
    await expect(page.locator('#bulk-progress [data-count="done"]')).to_have_text(
        "4", timeout=DEADLINE_MS
    )
    await expect(page.locator("#bulk-rate")).to_contain_text("4 of 4 rows sent")
    # Approved: the rows on the requester's open page lose their edit controls too.
    await expect(page.locator("#bulk-rows").get_by_role("button", name="Exclude")).to_have_count(0)
    await expect(page.locator("#bulk-rows")).to_contain_text("Duplicate charge")  # the label
    await screenshot(page, "bulk-3-progress")

    async with page.expect_download() as downloading:
        await human_click(page, page.locator("#results-link"))
    download = await downloading.value
    saved = tmp_path / "results.csv"
    await download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert [r["outcome"] for r in rows] == ["succeeded"] * 4 + ["refused"]
    assert all(r["refundRequestId"].startswith("rd_") for r in rows[:4])

    for opened in (page, review):
        assert await violations(opened) == [], opened.url
    assert errors == []
    await mine.close()
    await theirs.close()
