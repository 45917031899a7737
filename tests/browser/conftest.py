"""Browser tests: real Chromium against the real app (uvicorn) and a real simulator.

``settings`` points the desk at the ``simulator``; a test can change it with
``@pytest.mark.desk(poller_enabled=True, ...)`` (any ``Settings`` field).
Asynchronous refunds stay PROCESSING at the simulator until a test settles them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from playwright.async_api import Browser

from tests.support.browser import launched_browser
from tests.support.simulator import SimHandle
from web.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "desk(**settings): Settings overrides for this test")


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    return {"refund_delay_s": 10**9}


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], simulator: SimHandle, request: pytest.FixtureRequest
) -> Settings:
    marker = request.node.get_closest_marker("desk")
    return make_settings(simulator=simulator, **(marker.kwargs if marker else {}))


@pytest.fixture(name="browser")
async def fx_browser() -> AsyncIterator[Browser]:
    async with launched_browser() as browser:
        yield browser
