"""Live pages in real Chromium: two pages on one payment follow a change without a reload."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.status.conftest import make_payment, make_refund, refund_result, settle, signed
from tests.support.browser import launched_browser, screenshot
from tests.support.fixtures_app import DEFAULT_PASSWORD, ServerThread, only_postgres, only_sqlite
from tests.support.net import free_port, serving_process
from tests.support.waiting import DEADLINE_S
from web.app import create_app
from web.models import User
from web.settings import Settings

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launched_browser() as launched:
        yield launched


DEADLINE_MS = int(DEADLINE_S * 1000)  # a condition that never holds: only a hang gets here


def requests_of(page: Page) -> list[str]:
    """Every request ``page`` makes from now on, but its event stream."""
    made: list[str] = []
    page.on("request", lambda r: None if "/events?" in r.url else made.append(r.url))
    return made


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


async def open_live(
    context: BrowserContext, url: str, errors: list[str], streams: list[str] | None = None
) -> Page:
    """Open ``url`` and wait until its stream is subscribed: the server says "ready" once
    it listens, and static/app.js then marks the page live."""
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    if streams is not None:
        page.on("request", lambda r: streams.append(r.url) if "/events?" in r.url else None)
    await page.goto(url)
    await expect(page.locator("#live-status")).to_have_attribute(
        "data-live", "on", timeout=DEADLINE_MS
    )
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
    streams: list[str] = []
    pages = [await open_live(context, url, errors, streams) for _ in range(2)]
    # One stream per page, for the payment and its refund at the versions on show.
    assert len(streams) == 2 and len(set(streams)) == 1, streams
    assert f"payment={payment.id}." in streams[0] and f"refund={refund.id}.processing" in streams[0]
    badges = [p.locator(f"#refund-status-{refund.id} [data-status]") for p in pages]
    for page, badge in zip(pages, badges, strict=True):
        await expect(badge).to_have_attribute("data-status", "processing")
        await expect(page.get_by_role("button", name="Check now")).to_be_visible()
        await expect(page.get_by_role("link", name="Worklists")).to_have_count(0)  # agents

    body, headers = signed(refund_result(refund))
    made = [requests_of(page) for page in pages]
    assert (await client.post("/webhooks/antom", content=body, headers=headers)).status_code == 200
    for badge in badges:
        await expect(badge).to_have_attribute("data-status", "succeeded", timeout=DEADLINE_MS)
    for page, asked in zip(pages, made, strict=True):
        # Settled: nothing left to check.
        await expect(page.get_by_role("button", name="Check now")).to_be_hidden()
        await expect(page.get_by_test_id("refundable")).to_have_text("$75.00")
        await expect(page.get_by_test_id("refunded")).to_have_text("$25.00")
        assert page.url == url  # no reload, no navigation
        # Hinted, then fetched: the page asked for its fragments, rendered from the database.
        assert f"{live_server}/payments/{payment.id}/live" in asked, asked
    await screenshot(pages[0], "status-live-badge")
    assert not [e for e in errors if "events" not in e], errors
    await context.close()

    lead = await make_user(role="lead")
    lead_context = await signed_in_context(browser, live_server, lead)
    work = await lead_context.new_page()
    await work.goto(f"{live_server}/payments")
    await work.get_by_role("link", name="Worklists").click()
    await expect(work).to_have_url(re.compile(rf"{live_server}/worklists"))
    await expect(work.get_by_role("link", name="Worklists")).to_have_attribute(
        "aria-current", "page"
    )
    # The first queue with something open: the external refund.
    await expect(work.locator('.queue-tabs a[aria-current="page"]')).to_have_attribute(
        "data-queue", "external"
    )
    await expect(work.get_by_text("made-elsewhere")).to_be_visible()
    await expect(work.locator("#worklists-count")).to_have_text(re.compile(r"1"))
    await screenshot(work, "status-worklists")
    await work.get_by_role("link", name=re.compile("Open item")).click()
    await work.get_by_label("What was done").fill("Booked by finance, no action needed")
    await work.get_by_role("button", name="Close item").click()
    await expect(work.locator("#worklist-item")).to_have_attribute("data-state", "closed")
    await expect(work.get_by_text("Booked by finance")).to_be_visible()
    # The navigation's count follows: nothing is open any more.
    await expect(work.locator("#worklists-count")).to_be_hidden(timeout=DEADLINE_MS)
    await lead_context.close()


@pytest.fixture(name="instance_b")
def fx_instance_b(settings: Settings) -> Iterator[str]:
    """A second desk in its own OS process, started as the Procfile starts one."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTOM_", "REFUND_DESK_"))}
    env |= {
        "APP_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "PUBLIC_BASE_URL": base,
        "ANTOM_GATEWAY_URL": settings.antom_gateway_url,
        "ANTOM_CLIENT_ID": settings.antom_client_id,
        "ANTOM_MERCHANT_PRIVATE_KEY": settings.antom_merchant_private_key,
        "ANTOM_PUBLIC_KEY": settings.antom_public_keys[0],
        "REFUND_DESK_POLLER": "off",
    }
    command = [sys.executable, "-m", "uvicorn", "web.asgi:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--timeout-graceful-shutdown", "2"]
    with serving_process(command, env, f"{base}/healthz"):
        yield base


@only_postgres  # processes share changes through PostgreSQL LISTEN/NOTIFY
async def test_page_on_one_process_sees_a_change_ingested_by_another(
    browser: Browser,
    live_server: str,
    instance_b: str,
    engine: AsyncEngine,
    agent: User,
) -> None:
    """Two desk processes on one PostgreSQL database: the page is served by A (this test's
    server), Antom's notification lands on B (a separate process), A's badge flips."""
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, amount_minor=4_000)
    context = await signed_in_context(browser, live_server, agent)
    errors: list[str] = []
    page = await open_live(context, f"{live_server}/payments/{payment.id}", errors)
    badge = page.locator(f"#refund-status-{refund.id} [data-status]")
    await expect(badge).to_have_attribute("data-status", "processing")

    body, headers = signed(refund_result(refund, status="SUCCESS"))
    async with httpx.AsyncClient(base_url=instance_b) as to_b:
        answer = await to_b.post("/webhooks/antom", content=body, headers=headers)
    assert answer.status_code == 200, answer.text

    await expect(badge).to_have_attribute("data-status", "succeeded", timeout=DEADLINE_MS)
    await expect(page.get_by_test_id("refundable")).to_have_text("$60.00")
    await screenshot(page, "status-two-processes")
    assert not errors, errors
    await context.close()


@only_sqlite  # reconnection does not depend on the database
async def test_page_catches_up_after_its_stream_drops(
    browser: Browser,
    engine: AsyncEngine,
    agent: User,
    settings: Settings,
) -> None:
    """The server goes away; the refund settles meanwhile (no event reaches the page);
    the server comes back on the same address: the page reconnects and shows the truth."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", free_port()))  # not an ephemeral one: it is bound again below
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = ServerThread(create_app(settings.replace(public_base_url=base)), sock)
    server.start()
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, amount_minor=1_000)
    context = await signed_in_context(browser, base, agent)
    page = await open_live(context, f"{base}/payments/{payment.id}", [])
    badge = page.locator(f"#refund-status-{refund.id} [data-status]")
    await expect(badge).to_have_attribute("data-status", "processing")

    # An abrupt end (crash, deploy): open streams are cut, not drained.
    server.server.should_exit = server.server.force_exit = True
    server.thread.join(timeout=15)
    sock.close()
    await settle(engine, refund)
    # The page has seen its stream fail (and says so), and nobody told it about the change.
    await expect(page.locator("#live-status")).to_have_attribute(
        "data-live", "off", timeout=DEADLINE_MS
    )
    await expect(badge).to_have_attribute("data-status", "processing")

    again = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    again.bind(("127.0.0.1", port))
    restarted = ServerThread(create_app(settings.replace(public_base_url=base)), again)
    restarted.start()
    try:
        await expect(badge).to_have_attribute("data-status", "succeeded", timeout=DEADLINE_MS)
        await expect(page.locator("#live-status")).to_have_attribute("data-live", "on")
        assert page.url == f"{base}/payments/{payment.id}"
    finally:
        await context.close()
        restarted.stop()
        again.close()
