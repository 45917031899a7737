"""Behind https (PUBLIC_BASE_URL), cookies are Secure with the __Host- prefix, plus HSTS."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from web.app import create_app
from web.settings import Settings


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings(public_base_url="https://desk.example.com")


async def test_https_desk_sets_host_prefixed_secure_cookies_and_hsts(settings: Settings) -> None:
    # The real server speaks plain http here, so the https origin is simulated in-process.
    async with AsyncTestClient(create_app(settings), base_url="https://desk.example.com") as c:
        response = await c.get("/login")
    cookie = next(v for v in response.headers.get_list("set-cookie") if "csrf" in v)
    assert cookie.startswith("__Host-rd_csrf=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
