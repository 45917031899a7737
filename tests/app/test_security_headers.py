"""Security headers on every kind of response the desk sends, over real HTTP.

Pages, htmx fragments, redirects, every error path (404, 405, 403 CSRF, 413, 500),
static files, the SSE stream's first bytes, health, metrics and webhook refusals: a
header set only on "normal" pages leaves exactly the odd responses unprotected.
HSTS is checked on an https desk (in-process, since the test server speaks http).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from tests.support.keys import ANTOM_PUBLIC_PEM, MERCHANT_PRIVATE_PEM
from web.app import create_app
from web.settings import ROOT, Settings

HTMX = {"HX-Request": "true"}


@get("/t/crash")
async def crash() -> str:
    raise RuntimeError("unexpected")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # Antom configured (nothing listens there), so the webhook verifies and refuses.
    return make_settings(
        antom_gateway_url="http://127.0.0.1:9",
        antom_client_id="TEST_CLIENT",
        antom_merchant_private_key=MERCHANT_PRIVATE_PEM,
        antom_public_keys=(ANTOM_PUBLIC_PEM,),
    )


@pytest.fixture
def app(settings: Settings) -> Litestar:
    app = create_app(settings)
    app.register(crash)
    return app


def assert_secure(response: httpx.Response, *, https: bool = False) -> None:
    what = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    headers = response.headers
    csp = headers.get("content-security-policy", "")
    directives = dict((*d.strip().split(" ", 1), "")[:2] for d in csp.split(";") if d.strip())
    assert directives.get("default-src") == "'self'", what
    assert directives.get("script-src") == "'self'", what
    assert directives.get("style-src") == "'self'", what
    assert directives.get("object-src") == "'none'", what
    assert directives.get("base-uri") == "'none'", what
    assert directives.get("frame-ancestors") == "'none'", what
    assert directives.get("form-action") == "'self'", what
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
    assert headers.get("x-content-type-options") == "nosniff", what
    assert headers.get("referrer-policy") == "same-origin", what
    assert headers.get("x-frame-options") == "DENY", what
    if https:
        hsts = headers.get("strict-transport-security", "")
        assert re.fullmatch(r"max-age=(\d+); includeSubDomains", hsts), what
        assert int(hsts.split(";")[0].split("=")[1]) >= 31_536_000, what
    else:
        # Over plain http HSTS is meaningless and browsers ignore it; none is sent.
        assert "strict-transport-security" not in headers, what


async def test_every_kind_of_response_carries_the_headers(
    agent_client: httpx.AsyncClient, new_client: Callable[[], Awaitable[httpx.AsyncClient]]
) -> None:
    client = await new_client()  # signed out
    anonymous = await client.get("/healthz")  # gets a CSRF cookie, as a browser would
    responses = [
        anonymous,
        await client.get("/login"),  # page, signed out
        await client.get("/payments"),  # redirect to sign-in
        await client.get("/payments", headers=HTMX),  # 401 + HX-Redirect
        await client.get("/metrics"),
        await client.get("/static/app.js"),
        await client.get("/static/no-such-file.js"),  # 404 from the static router
        await client.post("/webhooks/antom", content=b"{}"),  # unsigned: refused
        await client.post("/login", data={"email": "a@b.c"}),  # no CSRF token: 403
        await agent_client.get("/payments"),  # page, signed in
        await agent_client.get("/payments", headers=HTMX),  # htmx fragment
        await agent_client.get("/no/such/page"),  # 404 page
        await agent_client.get("/no/such/page", headers=HTMX),  # 404 toast fragment
        await agent_client.put("/healthz"),  # 405
        await agent_client.get("/t/crash"),  # 500 page
        await agent_client.get("/t/crash", headers=HTMX),  # 500 toast fragment
        await client.post(  # 413, too large
            "/login",
            content=b"x" * 300_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
    ]
    statuses = {r.status_code for r in responses}
    assert {200, 303, 401, 403, 404, 405, 413, 500} <= statuses, statuses
    assert responses[7].status_code == 401, responses[7].text
    for response in responses:
        assert_secure(response)
    async with agent_client.stream("GET", "/events?refunds=1") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert_secure(stream)


async def test_an_https_desk_adds_hsts_everywhere(make_settings) -> None:
    settings = make_settings(public_base_url="https://desk.example.com")
    app = create_app(settings)
    app.register(crash)
    async with AsyncTestClient(app, base_url="https://desk.example.com") as c:
        for response in [
            await c.get("/login"),
            await c.get("/payments"),
            await c.get("/payments", headers=HTMX),
            await c.get("/healthz"),
            await c.get("/static/app.js"),
            await c.get("/no/such/page"),
            await c.put("/healthz"),
            await c.post("/webhooks/antom", content=b"{}"),
        ]:
            assert_secure(response, https=True)


# ---------------------------------------------------------------- htmx under this CSP


def _templates() -> list[Path]:
    return sorted((ROOT / "templates").rglob("*.html"))


def test_templates_need_nothing_the_csp_forbids() -> None:
    """No inline script or style, no inline handlers, no hx-on (it needs eval)."""
    forbidden = re.compile(
        r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|hx-on[:-]|javascript:",
        re.I,
    )
    comments = re.compile(r"\{#.*?#\}|<!--.*?-->", re.S)  # words about the rule are fine
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _templates()
        for match in forbidden.finditer(comments.sub("", path.read_text()))
    ]
    assert offenders == []


def test_htmx_is_configured_for_a_csp_without_eval_or_inline_styles() -> None:
    base = (ROOT / "templates" / "base.html").read_text()
    config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'", base)
    assert config, "base.html configures htmx with a meta tag"
    values = json.loads(config.group(1))
    # allowEval=false: hx-on, js: values and trigger filters would need 'unsafe-eval';
    # includeIndicatorStyles=false: htmx would otherwise inject an inline <style>.
    assert values["allowEval"] is False
    assert values["includeIndicatorStyles"] is False
    assert values["allowScriptTags"] is False
