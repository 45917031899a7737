"""Live badges in real Chromium: two pages on one payment flip without a reload."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.status.conftest import make_payment, make_refund, refund_result, signed
from tests.support.fixtures_app import DEFAULT_PASSWORD, ServerThread
from web.app import create_app
from web.db import session_scope
from web.models import EventSource, Refund, RefundStatus, User
from web.services.refunds import apply_antom_status
from web.settings import Settings

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(name="browser")
async def fx_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def signed_in_context(browser: Browser, base: str, user: User) -> BrowserContext:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/login")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).not_to_have_url(re.compile(r"/login"))
    await page.close()
    return context


async def open_live(context: BrowserContext, url: str, errors: list[str]) -> Page:
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    async with page.expect_response(re.compile(r"/events\?")):
        await page.goto(url)
    return page


async def test_two_pages_flip_without_reload(
    browser: Browser,
    live_server: str,
    engine: AsyncEngine,
    agent: User,
    client: httpx.AsyncClient,
    make_user: Any,
) -> None:
    payment = await make_payment(engine, amount_minor=10_000)
    refund = await make_refund(engine, payment, amount_minor=2_500)
    # Something for the leads' page too (screenshot below): a refund nobody issued.
    orphan = refund_result(
        None, refundRequestId="made-elsewhere", refundAmount={"currency": "USD", "value": "1"}
    )
    await client.post("/webhooks/antom", content=(o := signed(orphan))[0], headers=o[1])
    context = await signed_in_context(browser, live_server, agent)
    errors: list[str] = []
    url = f"{live_server}/payments/{payment.id}"
    pages = [await open_live(context, url, errors) for _ in range(2)]
    badges = [p.locator(f"#refund-badge-{refund.id} [data-status]") for p in pages]
    for badge in badges:
        await expect(badge).to_have_attribute("data-status", "processing")
    # The streams are open once each page has received its first state.
    for page in pages:
        await page.wait_for_timeout(300)

    body, headers = signed(refund_result(refund))
    started = time.monotonic()
    assert (await client.post("/webhooks/antom", content=body, headers=headers)).status_code == 200
    for badge in badges:
        await expect(badge).to_have_attribute("data-status", "succeeded", timeout=1_000)
    assert time.monotonic() - started < 1.5
    for page in pages:
        await expect(page.get_by_test_id("refundable")).to_have_text("$75.00")
        await expect(page.locator(f'[sse-swap="payment-{payment.id}-refunded"]')).to_have_text(
            "$25.00"
        )
        assert page.url == url  # no reload, no navigation
    ARTIFACTS.mkdir(exist_ok=True)
    await pages[0].screenshot(path=str(ARTIFACTS / "status-live-badge.png"), full_page=True)
    assert not [e for e in errors if "events" not in e], errors
    await context.close()

    lead = await make_user(role="lead")
    lead_context = await signed_in_context(browser, live_server, lead)
    alerts = await lead_context.new_page()
    await alerts.goto(f"{live_server}/alerts")
    await expect(alerts.get_by_text("made-elsewhere")).to_be_visible()
    await alerts.screenshot(path=str(ARTIFACTS / "status-alerts.png"), full_page=True)
    await alerts.get_by_role("button", name="Mark resolved").click()
    await expect(alerts.get_by_text("Resolved")).to_be_visible()
    await lead_context.close()


@pytest.mark.postgres
async def test_page_on_one_instance_sees_a_change_ingested_by_another(
    browser: Browser,
    live_server: str,
    engine: AsyncEngine,
    agent: User,
    settings: Settings,
) -> None:
    """Two app instances on one PostgreSQL database: the page is served by A, Antom's
    notification lands on B, the badge on A's page flips (LISTEN/NOTIFY in between)."""
    if settings.is_sqlite:
        pytest.skip("instances share changes through PostgreSQL LISTEN/NOTIFY")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url_b = f"http://127.0.0.1:{sock.getsockname()[1]}"
    instance_b = ServerThread(create_app(settings.replace(public_base_url=url_b)), sock)
    instance_b.start()
    try:
        payment = await make_payment(engine)
        refund = await make_refund(engine, payment, amount_minor=4_000)
        context = await signed_in_context(browser, live_server, agent)
        errors: list[str] = []
        page = await open_live(context, f"{live_server}/payments/{payment.id}", errors)
        badge = page.locator(f"#refund-badge-{refund.id} [data-status]")
        await expect(badge).to_have_attribute("data-status", "processing")
        await page.wait_for_timeout(300)

        body, headers = signed(refund_result(refund, status="FAIL"))
        async with httpx.AsyncClient(base_url=url_b) as to_b:
            answer = await to_b.post("/webhooks/antom", content=body, headers=headers)
        assert answer.status_code == 200

        await expect(badge).to_have_attribute("data-status", "failed", timeout=1_000)
        await expect(page.get_by_test_id("refundable")).to_have_text("$100.00")
        await context.close()
    finally:
        instance_b.stop()
        sock.close()


async def test_page_catches_up_after_its_stream_drops(
    browser: Browser,
    app: Any,
    engine: AsyncEngine,
    agent: User,
    settings: Settings,
) -> None:
    """The server goes away; the refund settles meanwhile (no event reaches the page);
    the server comes back on the same address: the page reconnects and shows the truth."""
    if not settings.is_sqlite:
        pytest.skip("reconnection does not depend on the database")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = ServerThread(create_app(settings.replace(public_base_url=base)), sock)
    server.start()
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, amount_minor=1_000)
    context = await signed_in_context(browser, base, agent)
    page = await open_live(context, f"{base}/payments/{payment.id}", [])
    badge = page.locator(f"#refund-badge-{refund.id} [data-status]")
    await expect(badge).to_have_attribute("data-status", "processing")

    # An abrupt end (crash, deploy): open streams are cut, not drained.
    server.server.should_exit = server.server.force_exit = True
    server.thread.join(timeout=15)
    sock.close()
    async with session_scope(engine) as session:
        row = await session.get(Refund, refund.id)
        assert row is not None
        await apply_antom_status(
            session, row, RefundStatus.SUCCEEDED, source=EventSource.POLLER, summary="test"
        )
    await page.wait_for_timeout(500)
    await expect(badge).to_have_attribute("data-status", "processing")  # nobody told it

    again = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    again.bind(("127.0.0.1", port))
    restarted = ServerThread(create_app(settings.replace(public_base_url=base)), again)
    restarted.start()
    try:
        await expect(badge).to_have_attribute("data-status", "succeeded", timeout=15_000)
        assert page.url == f"{base}/payments/{payment.id}"
    finally:
        await context.close()
        restarted.stop()
        again.close()
