"""Sign-in, sign-out, session revocation and the sign-in redirect, over real HTTP."""

from __future__ import annotations

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.fixtures_app import DEFAULT_PASSWORD, csrf_token_from, login
from web.db import session_scope
from web.models import User


async def test_signed_out_browser_is_sent_to_sign_in_with_next(client: httpx.AsyncClient) -> None:
    response = await client.get("/account?tab=limits")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/account%3Ftab%3Dlimits"


async def test_signed_out_htmx_request_gets_hx_redirect(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/account",
        headers={"HX-Request": "true", "HX-Current-URL": "http://127.0.0.1/payments?q=x"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/payments%3Fq%3Dx"


async def test_sign_in_page_renders_form_with_csrf(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert response.status_code == 200
    assert csrf_token_from(response.text)
    assert 'name="password"' in response.text


async def test_sign_in_then_account_page_shows_user(client: httpx.AsyncClient, make_user) -> None:
    user = await make_user(role="lead", name="Lee Lead")
    await login(client, user)
    response = await client.get("/account")
    assert response.status_code == 200
    assert "Lee Lead" in response.text
    assert user.email in response.text


async def test_sign_in_redirects_to_local_next_only(client: httpx.AsyncClient, make_user) -> None:
    user = await make_user()
    token = csrf_token_from((await client.get("/login")).text)
    form = {"_csrf_token": token, "email": user.email, "password": DEFAULT_PASSWORD}
    local = await client.post("/login", data={**form, "next": "/refunds?status=failed"})
    assert local.headers["location"] == "/refunds?status=failed"
    evil = await client.post("/login", data={**form, "next": "https://evil.example/x"})
    assert evil.headers["location"] == "/"
    sneaky = await client.post("/login", data={**form, "next": "//evil.example/x"})
    assert sneaky.headers["location"] == "/"


async def test_wrong_password_and_unknown_email_get_the_same_message(
    client: httpx.AsyncClient, make_user
) -> None:
    user = await make_user()
    token = csrf_token_from((await client.get("/login")).text)
    wrong = await client.post(
        "/login", data={"_csrf_token": token, "email": user.email, "password": "not it at all"}
    )
    unknown = await client.post(
        "/login",
        data={"_csrf_token": token, "email": "nobody@desk.test", "password": "not it at all"},
    )
    assert wrong.status_code == unknown.status_code == 400
    assert "The email or password is wrong." in wrong.text
    assert "The email or password is wrong." in unknown.text
    assert (await client.get("/account")).status_code == 303


async def test_deactivated_user_cannot_sign_in(client: httpx.AsyncClient, make_user) -> None:
    user = await make_user(active=False)
    token = csrf_token_from((await client.get("/login")).text)
    response = await client.post(
        "/login", data={"_csrf_token": token, "email": user.email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 400


async def test_repeated_failures_lock_the_email_then_even_the_right_password_waits(
    client: httpx.AsyncClient, make_user
) -> None:
    user = await make_user()
    token = csrf_token_from((await client.get("/login")).text)
    for _ in range(5):
        bad = await client.post(
            "/login", data={"_csrf_token": token, "email": user.email, "password": "wrong guess 1"}
        )
        assert bad.status_code == 400
    locked = await client.post(
        "/login", data={"_csrf_token": token, "email": user.email, "password": DEFAULT_PASSWORD}
    )
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.text


async def test_sign_out_ends_the_session(agent_client: httpx.AsyncClient) -> None:
    assert (await agent_client.get("/account")).status_code == 200
    response = await agent_client.post("/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    page = await agent_client.get("/login")
    assert "You are signed out." in page.text
    assert (await agent_client.get("/account")).status_code == 303


async def test_old_cookie_replayed_after_sign_out_everywhere_is_refused(
    new_client, make_user
) -> None:
    user = await make_user()
    laptop, phone = await new_client(), await new_client()
    await login(laptop, user)
    await login(phone, user)
    stolen = dict(phone.cookies)
    response = await laptop.post("/account/sign-out-everywhere")
    assert response.status_code == 303
    assert (await phone.get("/account")).status_code == 303
    replay = await new_client()
    replay.cookies.update(stolen)
    assert (await replay.get("/account")).status_code == 303


async def test_bumping_session_version_signs_the_user_out_on_the_next_request(
    agent_client: httpx.AsyncClient, agent: User, engine: AsyncEngine
) -> None:
    assert (await agent_client.get("/account")).status_code == 200
    async with session_scope(engine) as session:
        await session.exec(
            update(User).where(User.id == agent.id).values(session_version=User.session_version + 1)
        )
    response = await agent_client.get("/account")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_deactivating_signs_the_user_out(
    agent_client: httpx.AsyncClient, agent: User, engine: AsyncEngine
) -> None:
    async with session_scope(engine) as session:
        await session.exec(update(User).where(User.id == agent.id).values(active=False))
    assert (await agent_client.get("/account")).status_code == 303
