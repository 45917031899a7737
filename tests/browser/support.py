"""Helpers for the agent's-desk browser tests: signed-in contexts, human-speed clicks,
and reading a payment page next to the database it should agree with.

Waits are Playwright ``expect`` assertions under the suite's generous deadline
(``tests/support/waiting.DEADLINE_S``): they end as soon as the page is right, and
only a real hang reaches the deadline. Nothing here sleeps to synchronise; the one
``wait_for_timeout`` is how long a person holds the mouse button down.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from playwright.async_api import Browser, BrowserContext, Locator, Page, expect
from playwright.async_api import Error as PlaywrightError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.support.fixtures_app import DEFAULT_PASSWORD
from tests.support.waiting import DEADLINE_S
from web.antom.money import format_minor
from web.db import session_scope
from web.models import Payment, Refund, User

DEADLINE_MS = int(DEADLINE_S * 1000)
HOLD_MS = 80  # a person's click: the button is held down this long (30–120 ms observed)


async def signed_in_context(
    browser: Browser,
    base: str,
    user: User,
    *,
    viewport: tuple[int, int] = (1366, 768),
    timezone_id: str | None = None,
) -> BrowserContext:
    options: dict[str, object] = {"viewport": {"width": viewport[0], "height": viewport[1]}}
    if timezone_id:
        options["timezone_id"] = timezone_id
    context = await browser.new_context(**options)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{base}/login")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).not_to_have_url(re.compile(r"/login"))
    await page.close()
    return context


# Chromium logs every non-2xx response on the console; a refused form answers 422 by
# design (its messages are the answer), which is no error of the page.
REFUSED_FORM = "the server responded with a status of 422"


def watch_errors(page: Page, errors: list[str]) -> None:
    """Collect script errors and console errors (a CSP violation is one)."""
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{page.url}: {msg.text}")
            if msg.type == "error" and REFUSED_FORM not in msg.text
            else None
        ),
    )


async def human_click(page: Page, target: Locator) -> None:
    """Press and release the mouse on ``target`` the way a person does, not instantly."""
    # A live page may re-render the part the target is in just as it is measured: aim
    # again at the element now on the page, as a person would (a locator re-queries).
    box = None
    for _ in range(20):
        await expect(target).to_be_visible(timeout=DEADLINE_MS)
        try:
            await target.scroll_into_view_if_needed()
        except PlaywrightError as error:
            # Swapped out between being found and being scrolled to: aim again.
            if "not attached to the DOM" not in error.message:
                raise
            continue
        box = await target.bounding_box()
        if box is not None:
            break
    assert box is not None, "the target is not on the page"
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await page.wait_for_timeout(HOLD_MS)  # the hold itself, not a wait for anything
    await page.mouse.up()


async def payment_page(context: BrowserContext, base: str, payment_pk: int) -> Page:
    """Open a payment page and wait until its live stream is listening."""
    page = await context.new_page()
    await page.goto(f"{base}/payments/{payment_pk}")
    await expect_live(page)
    return page


async def expect_live(page: Page) -> None:
    """The page's event stream is subscribed: ``static/app.js`` marks ``#live-status``
    ``data-live="on"`` once the server says it is listening."""
    await expect(page.locator("#live-status")).to_have_attribute(
        "data-live", "on", timeout=DEADLINE_MS
    )


@dataclass(frozen=True)
class Truth:
    """What the database says about a payment, in the words the page uses."""

    refunded: str
    in_flight: str
    refundable: str
    refund_amounts: list[str]  # newest first, as the page lists them
    refund_statuses: list[str]  # the badges' data-status


async def truth(engine: AsyncEngine, payment_pk: int) -> Truth:
    async with session_scope(engine) as session:
        payment = await session.get(Payment, payment_pk)
        assert payment is not None
        refunds = (
            await session.exec(
                select(Refund)
                .where(col(Refund.payment_pk) == payment_pk)
                .order_by(col(Refund.created_at).desc(), col(Refund.id).desc())
            )
        ).all()
    money: Callable[[int], str] = lambda minor: format_minor(minor, payment.currency)  # noqa: E731
    refundable = payment.captured_minor - payment.refunded_minor - payment.reserved_minor
    return Truth(
        refunded=money(payment.refunded_minor),
        in_flight=money(payment.reserved_minor),
        refundable=money(max(0, refundable)),
        refund_amounts=[money(r.amount_minor) for r in refunds],
        refund_statuses=[str(r.status) for r in refunds],
    )


async def expect_agrees(page: Page, engine: AsyncEngine, payment_pk: int) -> Truth:
    """The page's amounts, refund rows, badges and form hint say what the database says."""
    db = await truth(engine, payment_pk)
    rows = page.locator("#payment-refunds tbody tr")
    await expect(rows).to_have_count(len(db.refund_amounts), timeout=DEADLINE_MS)
    await expect(page.get_by_test_id("refundable")).to_have_text(db.refundable)
    await expect(page.locator("#refund-amount-hint")).to_contain_text(f"Up to {db.refundable}")
    await expect(page.get_by_test_id("refunded")).to_have_text(db.refunded)
    await expect(page.get_by_test_id("in-flight")).to_have_text(db.in_flight)
    for i, (amount, status) in enumerate(zip(db.refund_amounts, db.refund_statuses, strict=True)):
        await expect(rows.nth(i).locator("td.num").first).to_have_text(amount)
        await expect(rows.nth(i).locator("[data-status]").first).to_have_attribute(
            "data-status", status
        )
    return db
