"""Four eyes in the browser, under the real CSP (issue 9).

An agent asks for a refund over her limit (the form says so before she submits), a lead
approves it in a second browser, and the agent's open pages flip without a reload. No
page reports a Content-Security-Policy violation: each page listens for
``securitypolicyviolation`` from its first script on, and console errors are collected.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.browser.support import (
    DEADLINE_MS,
    expect_live,
    human_click,
    payment_page,
    signed_in_context,
    watch_errors,
)
from tests.status.conftest import desk_payment
from tests.support.browser import screenshot
from tests.support.simulator import SimHandle
from web.db import session_scope
from web.models import Refund, User

pytestmark = pytest.mark.browser

# Runs before any of the page's own scripts: every CSP violation is kept for the test.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


async def csp_watched(context: BrowserContext) -> BrowserContext:
    await context.add_init_script(CSP_LISTENER)
    return context


async def violations(page: Page) -> list[str]:
    found: list[str] = await page.evaluate("window.__cspViolations || []")
    return found


async def test_a_lead_approves_in_another_browser_and_the_agent_sees_it_live(
    browser: Browser,
    live_server: str,
    simulator: SimHandle,
    engine: AsyncEngine,
    make_user: Callable[..., Awaitable[User]],
) -> None:
    agent = await make_user(role="agent", limits={"USD": 5_000})  # $50.00 per refund
    lead = await make_user(role="lead")
    payment = await desk_payment(engine, simulator, currency="USD", amount_minor=20_000)
    errors: list[str] = []

    agent_ctx = await csp_watched(await signed_in_context(browser, live_server, agent))
    pay = await payment_page(agent_ctx, live_server, payment.id or 0)
    watch_errors(pay, errors)
    await pay.get_by_label("Amount").fill("60.00")
    await pay.get_by_label("Reason").select_option("customer_request")
    notice = pay.locator("#refund-approval-notice")
    await expect(notice).to_contain_text("$60.00 is over your $50.00 limit per refund")
    submit = pay.locator("#refund-submit")
    await expect(submit).to_have_text("Ask a team lead to approve $60.00")
    await screenshot(pay, "approval-1-agent-form")
    await human_click(pay, submit)
    await expect(pay.locator("#refund-result")).to_contain_text("waiting for a team lead")
    row_badge = pay.locator("#payment-refunds [data-status]").first
    await expect(row_badge).to_have_attribute("data-status", "awaiting")

    async with session_scope(engine) as session:
        refund = (await session.exec(select(Refund).where(Refund.payment_pk == payment.id))).one()
    assert refund.status == "awaiting"
    # The agent also keeps the refund's own page open.
    detail = await agent_ctx.new_page()
    watch_errors(detail, errors)
    await detail.goto(f"{live_server}/refunds/{refund.id}")
    await expect_live(detail)
    await expect(detail.locator("#approval-title")).to_have_text("Waiting for approval")
    await expect(detail.locator("#approve-button")).to_have_count(0)  # never her own

    lead_ctx = await csp_watched(await signed_in_context(browser, live_server, lead))
    queue = await lead_ctx.new_page()
    watch_errors(queue, errors)
    await queue.goto(f"{live_server}/approvals")
    await expect(queue.locator("#approvals-count")).to_contain_text("1")
    await screenshot(queue, "approval-2-lead-queue")
    await human_click(queue, queue.locator("#approvals-table").get_by_role("link", name="Review"))
    await expect(queue).to_have_url(re.compile(rf"/refunds/{refund.id}$"))
    await queue.get_by_label("Comment").fill("Loyal customer")
    await screenshot(queue, "approval-3-lead-review")
    await human_click(queue, queue.locator("#approve-button"))
    await expect(queue.locator(".flashes")).to_contain_text("Approved")

    # The agent's pages flip by themselves: the status the database now holds.
    flipped = re.compile(r"^(processing|succeeded)$")
    await expect(row_badge).to_have_attribute("data-status", flipped, timeout=DEADLINE_MS)
    await expect(detail.locator("#approval-title")).to_have_text("Approved", timeout=DEADLINE_MS)
    await expect(detail.locator("#refund-detail")).to_contain_text("Loyal customer")
    await screenshot(detail, "approval-4-agent-sees-it")

    for page in (pay, detail, queue):
        assert await violations(page) == [], page.url
    assert errors == []
    await agent_ctx.close()
    await lead_ctx.close()
