"""Role guards, CSRF, page-vs-fragment, error pages and security headers, over real HTTP.

A few throwaway routes are registered on the real app (``app`` is overridden below) so
the foundation's pieces are exercised exactly as feature routes will use them.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency
from litestar.response import Template

from tests.support.fixtures_app import csrf_token_from
from web.antom.client import AntomClient
from web.app import create_app
from web.auth import requires
from web.htmx import page_or_fragment
from web.rules.access import Permission
from web.settings import Settings

CANARY = "canary-9f8e7d6c5b4a"


@get("/t/leads-only", guards=[requires(Permission.VIEW_ALERTS)])
async def leads_only() -> str:
    return "lead area"


@post("/t/echo", status_code=200)
async def echo() -> str:
    return "accepted"


@get("/t/both")
async def both(request: Request[Any, Any, Any]) -> Template:
    context = {"status_code": 200, "title": "Both ways", "message": "one URL, two shapes"}
    return page_or_fragment(
        request, page="errors/error.html", fragment="errors/_error.html", context=context
    )


@get("/t/boom")
async def boom() -> str:
    raise RuntimeError(f"database password is {CANARY}")


@get("/t/needs-antom")
async def needs_antom(antom: NamedDependency[AntomClient]) -> str:
    return "unreachable without Antom settings"


@pytest.fixture
def app(settings: Settings) -> Litestar:
    app = create_app(settings)
    for handler in (leads_only, echo, both, boom, needs_antom):
        app.register(handler)
    return app


HTMX = {"HX-Request": "true", "HX-Current-URL": "http://127.0.0.1/t/both"}


@pytest.fixture
def in_process() -> bool:
    return True  # requests and answers only: no socket needed


# ------------------------------------------------------------------ guards


async def test_agent_is_refused_a_lead_route_with_a_403_page(
    agent_client: httpx.AsyncClient,
) -> None:
    response = await agent_client.get("/t/leads-only")
    assert response.status_code == 403
    assert "You do not have the permission this needs (view_alerts)" in response.text
    assert "<html" in response.text


@pytest.mark.parametrize("role", ["lead", "admin"])
async def test_lead_and_admin_pass_the_guard(signed_in, role: str) -> None:
    client, _ = await signed_in(role=role)
    response = await client.get("/t/leads-only")
    assert response.status_code == 200
    assert response.text == "lead area"


# ------------------------------------------------------------------ CSRF


async def test_htmx_post_without_csrf_header_is_refused(agent_client: httpx.AsyncClient) -> None:
    token = agent_client.headers.pop("x-csrftoken")
    response = await agent_client.post("/t/echo", headers=HTMX)
    assert response.status_code == 403
    assert response.headers["HX-Retarget"] == "#toasts"
    assert "This form has expired" in response.text
    agent_client.headers["x-csrftoken"] = token


async def test_htmx_post_with_a_forged_csrf_header_is_refused(
    agent_client: httpx.AsyncClient,
) -> None:
    response = await agent_client.post("/t/echo", headers={**HTMX, "x-csrftoken": "0" * 128})
    assert response.status_code == 403


async def test_htmx_post_with_the_page_csrf_header_passes(agent_client: httpx.AsyncClient) -> None:
    page = await agent_client.get("/account")
    assert f'hx-headers=\'{{"x-csrftoken": "{agent_client.headers["x-csrftoken"]}"}}\'' in page.text
    response = await agent_client.post("/t/echo", headers=HTMX)
    assert response.status_code == 200
    assert response.text == "accepted"


async def test_plain_form_post_uses_the_hidden_csrf_input(agent_client: httpx.AsyncClient) -> None:
    token = agent_client.headers.pop("x-csrftoken")
    form_token = csrf_token_from((await agent_client.get("/account")).text)
    assert (await agent_client.post("/t/echo", data={"_csrf_token": form_token})).status_code == 200
    assert (await agent_client.post("/t/echo", data={"x": "1"})).status_code == 403
    agent_client.headers["x-csrftoken"] = token


async def test_sign_in_itself_needs_the_csrf_token(client: httpx.AsyncClient, make_user) -> None:
    user = await make_user()
    await client.get("/login")
    response = await client.post("/login", data={"email": user.email, "password": "x" * 20})
    assert response.status_code == 403


async def test_webhook_paths_skip_csrf_and_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.post("/webhooks/not-a-real-hook", content=b"{}")
    # No route here yet: it must reach routing (404), not be stopped by CSRF (403) or auth.
    assert response.status_code == 404


# ------------------------------------------------------------------ page or fragment


async def test_plain_request_gets_the_full_page(agent_client: httpx.AsyncClient) -> None:
    response = await agent_client.get("/t/both")
    assert response.status_code == 200
    assert response.text.lstrip().startswith("<!doctype html>")
    assert response.headers["vary"] == "HX-Request"


async def test_htmx_request_gets_the_fragment(agent_client: httpx.AsyncClient) -> None:
    response = await agent_client.get("/t/both", headers=HTMX)
    assert "<html" not in response.text
    assert 'class="toast' in response.text
    assert response.headers["vary"] == "HX-Request"


@pytest.mark.parametrize("header", ["HX-Boosted", "HX-History-Restore-Request"])
async def test_boosted_and_history_restore_get_the_full_page(
    agent_client: httpx.AsyncClient, header: str
) -> None:
    response = await agent_client.get("/t/both", headers={**HTMX, header: "true"})
    assert response.text.lstrip().startswith("<!doctype html>")


# ------------------------------------------------------------------ errors


async def test_unknown_page_gets_a_404_page(agent_client: httpx.AsyncClient) -> None:
    response = await agent_client.get("/no/such/page")
    assert response.status_code == 404
    assert "There is nothing at this address." in response.text
    assert "<html" in response.text


async def test_crash_shows_a_generic_page_without_trace_or_secret(
    agent_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await agent_client.get("/t/boom")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert CANARY not in response.text
    assert "Traceback" not in response.text and "RuntimeError" not in response.text


async def test_crash_under_htmx_gets_an_error_toast(agent_client: httpx.AsyncClient) -> None:
    response = await agent_client.get("/t/boom", headers=HTMX)
    assert response.status_code == 500
    assert response.headers["HX-Retarget"] == "#toasts"
    assert response.headers["HX-Reswap"] == "beforeend"
    assert "<html" not in response.text
    assert CANARY not in response.text


# ------------------------------------------------------------------ headers and cookies


@pytest.mark.parametrize("path", ["/login", "/no/such/page", "/healthz"])
async def test_every_response_carries_security_headers(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    csp = response.headers["content-security-policy"]
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"


async def test_static_files_are_cacheable(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/vendor/htmx-2.0.11.min.js")
    assert response.status_code == 200
    assert "no-store" not in response.headers["cache-control"]


async def test_session_cookie_is_httponly_and_lax(client: httpx.AsyncClient, make_user) -> None:
    user = await make_user()
    token = csrf_token_from((await client.get("/login")).text)
    response = await client.post(
        "/login",
        data={
            "_csrf_token": token,
            "email": user.email,
            "password": "correct horse battery staple",
        },
    )
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("rd_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie


async def test_refund_paths_explain_when_antom_is_not_configured(
    agent_client: httpx.AsyncClient,
) -> None:
    response = await agent_client.get("/t/needs-antom")
    assert response.status_code == 503
    assert "Antom is not configured on this desk" in response.text


class TestWithAntomConfigured:
    @pytest.fixture
    def settings(self, make_settings, simulator) -> Settings:
        return make_settings(simulator=simulator)

    async def test_the_antom_client_is_provided(
        self, app: Litestar, agent_client: httpx.AsyncClient
    ) -> None:
        response = await agent_client.get("/t/needs-antom")
        assert response.status_code == 200
        assert isinstance(app.state.antom, AntomClient)
        assert app.state.antom.client_id == app.state.settings.antom_client_id
