"""The one way tests launch Chromium and keep screenshots.

Chromium is the system one (Playwright's own browsers are never downloaded here); as
root it needs ``--no-sandbox``, and the network is closed, so the background services
that would reach out are switched off.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.waiting import DEADLINE_S

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def launch_options() -> dict[str, Any]:
    """Keyword arguments for ``chromium.launch`` (async or sync Playwright API)."""
    return {"executable_path": CHROMIUM, "args": list(CHROMIUM_ARGS)}


@asynccontextmanager
async def launched_browser() -> AsyncIterator[Browser]:
    # Assertions wait for their condition as long as every other wait here does: the 5 s
    # Playwright default is a wall-clock bound a busy machine can reach (a click's
    # navigation under a CPU-heavy neighbour).
    expect.set_options(timeout=DEADLINE_S * 1000)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(**launch_options())
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot in ``test-artifacts/NAME.png``, for people to look at.

    Written whole and renamed into place: parallel tests (a test run on SQLite and on
    PostgreSQL at once) may save the same name, and the last one wins, unmangled."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    partial = path.with_name(f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.png")
    partial.write_bytes(await page.screenshot(full_page=True))
    os.replace(partial, path)
    return path
