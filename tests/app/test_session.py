"""Sign-in, sign-out, session revocation and the sign-in redirect, over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.support.fixtures_app import (
    DEFAULT_PASSWORD,
    ServerThread,
    csrf_token_from,
    login,
    only_postgres,
)
from tests.support.net import bound_socket
from web.app import create_app
from web.auth import retrieve_user
from web.db import session_scope
from web.models import User, UserSession, utcnow
from web.services.users import (
    ABSOLUTE_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    TOUCH_EVERY_S,
    deactivate,
    end_session,
    get_signed_in_user,
    revoke_sessions,
    start_session,
)
from web.settings import Settings

NewClient = Callable[[], Awaitable[httpx.AsyncClient]]


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


async def test_a_password_typed_into_the_email_field_is_not_sent_back(
    client: httpx.AsyncClient,
) -> None:
    token = csrf_token_from((await client.get("/login")).text)
    typo = await client.post(
        "/login",
        data={"_csrf_token": token, "email": "my secret pass 42", "password": "x" * 12},
    )
    assert typo.status_code == 400
    assert "my secret pass 42" not in typo.text
    kept = await client.post(
        "/login", data={"_csrf_token": token, "email": "ada@desk.test", "password": "x" * 12}
    )
    assert 'value="ada@desk.test"' in kept.text  # a real email is kept, to fix the password


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
    assert "Too many failed sign-ins for this account" in locked.text


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


# ---------------------------------------------------------------- server-side revocation
#
# Issue 7, defect 5: the session cookie used to be the whole session, so a copy taken
# before POST /logout kept reading pages until its idle timeout. Sign-out now revokes
# the session in the database, which every instance consults on every request.


async def _signed_out_copy(new_client: NewClient, user: User) -> dict[str, str]:
    """Sign a browser in, copy its cookies, sign it out; return the copy."""
    browser = await new_client()
    await login(browser, user)
    assert (await browser.get("/account")).status_code == 200
    copied = dict(browser.cookies)
    response = await browser.post("/logout")
    assert response.status_code == 303
    return copied


async def test_cookie_copied_before_sign_out_is_refused_after_it(
    new_client: NewClient, make_user
) -> None:
    user = await make_user()
    copied = await _signed_out_copy(new_client, user)
    replay = await new_client()
    replay.cookies.update(copied)
    for path in ("/account", "/payments", "/refunds"):
        response = await replay.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login"), path
    htmx = await replay.get("/payments", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")


async def test_a_revoked_session_cannot_be_revived(new_client: NewClient, make_user) -> None:
    user = await make_user()
    copied = await _signed_out_copy(new_client, user)
    replay = await new_client()
    replay.cookies.update(copied)
    assert (await replay.get("/account")).status_code == 303
    # Signing in again (same user, same browser or another) starts a new session; the
    # revoked one stays dead, however often it is replayed.
    again = await new_client()
    again.cookies.update(copied)
    await login(again, user)
    assert (await again.get("/account")).status_code == 200
    for _ in range(3):
        stale = await new_client()
        stale.cookies.update(copied)
        assert (await stale.get("/account")).status_code == 303
    # Signing out the new session does not touch other browsers' sessions.
    other = await new_client()
    await login(other, user)
    assert (await again.post("/logout")).status_code == 303
    assert (await other.get("/account")).status_code == 200


class TestAcrossInstances:
    """Two app instances on one PostgreSQL database, like two workers behind a router."""

    @pytest.fixture
    def settings(self, make_settings: Callable[..., Settings], db_url: str) -> Settings:
        return make_settings(database_url=db_url)

    @pytest.fixture
    def second_instance(self, settings: Settings) -> Iterator[str]:
        sock = bound_socket()
        server = ServerThread(create_app(settings), sock)
        server.start()
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.stop()
            sock.close()

    @only_postgres
    async def test_sign_out_on_one_instance_ends_the_session_on_the_other(
        self, new_client: NewClient, make_user, second_instance: str, db_url: str
    ) -> None:
        user = await make_user()
        on_a = await new_client()
        await login(on_a, user)
        async with httpx.AsyncClient(base_url=second_instance, timeout=30.0) as on_b:
            on_b.cookies.update(dict(on_a.cookies))
            assert (await on_b.get("/account")).status_code == 200
            assert (await on_a.post("/logout")).status_code == 303
            refused = await on_b.get("/account")
            assert refused.status_code == 303
            assert refused.headers["location"].startswith("/login")

    @only_postgres
    async def test_sign_out_everywhere_on_one_instance_reaches_the_other(
        self, new_client: NewClient, make_user, second_instance: str, db_url: str
    ) -> None:
        user = await make_user()
        laptop = await new_client()
        await login(laptop, user)
        async with httpx.AsyncClient(base_url=second_instance, timeout=30.0) as phone:
            await login(phone, user)
            assert (await laptop.get("/account")).status_code == 200
            assert (await phone.post("/account/sign-out-everywhere")).status_code == 303
            assert (await laptop.get("/account")).status_code == 303


async def test_signing_in_again_ends_the_session_the_browser_carried(
    new_client: NewClient, make_user
) -> None:
    first, second = await make_user(), await make_user()
    browser = await new_client()
    await login(browser, first)
    before = dict(browser.cookies)
    await login(browser, second)  # e.g. a shared desk computer
    assert "Agent 2" in (await browser.get("/account")).text
    replay = await new_client()
    replay.cookies.update(before)
    assert (await replay.get("/account")).status_code == 303


async def test_sign_in_records_the_session_and_sign_out_revokes_it(
    new_client: NewClient, make_user, engine: AsyncEngine
) -> None:
    user = await make_user()
    browser = await new_client()
    await login(browser, user)
    async with session_scope(engine) as db:
        row = (await db.exec(select(UserSession).where(UserSession.user_id == user.id))).one()
    assert row.revoked_at is None and row.session_version == user.session_version
    assert row.ip == "127.0.0.1"
    assert row.user_agent and row.user_agent.startswith("python-httpx/")
    assert (await browser.post("/logout")).status_code == 303
    async with session_scope(engine) as db:
        ended = await db.get(UserSession, row.id)
    assert ended is not None and ended.revoked_at is not None


async def test_sign_out_everywhere_and_deactivation_revoke_every_session_row(
    new_client: NewClient, make_user, engine: AsyncEngine
) -> None:
    user = await make_user()
    browsers = [await new_client() for _ in range(3)]
    for browser in browsers:
        await login(browser, user)
    assert (await browsers[0].post("/account/sign-out-everywhere")).status_code == 303
    async with session_scope(engine) as db:
        rows = (await db.exec(select(UserSession).where(UserSession.user_id == user.id))).all()
    assert len(rows) == 3 and all(r.revoked_at is not None for r in rows)
    for browser in browsers[1:]:
        assert (await browser.get("/account")).status_code == 303

    await login(browsers[1], user)
    async with session_scope(engine) as db:
        await deactivate(db, user.email)
    assert (await browsers[1].get("/account")).status_code == 303
    async with session_scope(engine) as db:
        rows = (await db.exec(select(UserSession).where(UserSession.user_id == user.id))).all()
    assert all(r.revoked_at is not None for r in rows)


# ---------------------------------------------------------------- the session service


async def test_only_a_hash_of_the_token_is_stored(engine: AsyncEngine, make_user) -> None:
    user = await make_user()
    async with session_scope(engine) as db:
        token = await start_session(db, user, ip="10.0.0.1", user_agent="x" * 1000)
    async with session_scope(engine) as db:
        row = (await db.exec(select(UserSession).where(UserSession.user_id == user.id))).one()
    assert len(token) >= 43  # 256 random bits
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(row.model_dump())
    assert row.ip == "10.0.0.1" and row.user_agent == "x" * 256


async def test_sign_in_prunes_the_users_long_dead_sessions(engine: AsyncEngine, make_user) -> None:
    user, other = await make_user(), await make_user()
    long_ago = utcnow() - timedelta(days=31)
    async with session_scope(engine) as db:
        await start_session(db, user, now=long_ago)
        await start_session(db, other, now=long_ago)
        recent = await start_session(db, user, now=utcnow() - timedelta(days=2))
    async with session_scope(engine) as db:
        await start_session(db, user)
    async with session_scope(engine) as db:
        rows = (await db.exec(select(UserSession).order_by(UserSession.id))).all()
    hashes = {r.token_hash for r in rows}
    assert len(rows) == 3 and hashlib.sha256(recent.encode()).hexdigest() in hashes
    assert [r.user_id for r in rows].count(other.id) == 1  # only this user's are pruned


async def test_sessions_expire_when_idle_and_after_the_absolute_limit(
    engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    start = utcnow()
    async with session_scope(engine) as db:
        idle_token = await start_session(db, user, now=start)
        busy_token = await start_session(db, user, now=start)
    async with session_scope(engine) as db:
        late = start + timedelta(seconds=IDLE_TIMEOUT_S + 1)
        assert await get_signed_in_user(db, idle_token, now=late) is None
    # A request every 25 minutes keeps a session alive, but only up to the absolute limit.
    now, step = start, timedelta(minutes=25)
    while now + step <= start + timedelta(seconds=ABSOLUTE_TIMEOUT_S):
        now += step
        async with session_scope(engine) as db:
            assert await get_signed_in_user(db, busy_token, now=now) is not None, now - start
    async with session_scope(engine) as db:
        end = start + timedelta(seconds=ABSOLUTE_TIMEOUT_S + 1)
        assert await get_signed_in_user(db, busy_token, now=end) is None


async def test_a_request_is_one_query_and_the_idle_clock_moves_once_a_minute(
    engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    start = utcnow()
    async with session_scope(engine) as db:
        token = await start_session(db, user, now=start)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "UPDATE", "INSERT", "DELETE"):
            statements.append(verb)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with session_scope(engine) as db:
            assert await get_signed_in_user(db, token, now=start + timedelta(seconds=5))
        assert statements == ["SELECT"]
        statements.clear()
        later = start + timedelta(seconds=TOUCH_EVERY_S + 1)
        async with session_scope(engine) as db:
            assert await get_signed_in_user(db, token, now=later)
        assert statements == ["SELECT", "UPDATE"]
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
    async with session_scope(engine) as db:
        row = (await db.exec(select(UserSession))).one()
    assert row.last_seen_at == later


async def test_revoked_or_outdated_sessions_stay_refused(engine: AsyncEngine, make_user) -> None:
    user = await make_user()
    assert user.id is not None
    async with session_scope(engine) as db:
        ended, kept = await start_session(db, user), await start_session(db, user)
    async with session_scope(engine) as db:
        await end_session(db, ended)
    async with session_scope(engine) as db:
        assert await get_signed_in_user(db, ended) is None
        assert await get_signed_in_user(db, kept) is not None
        assert await get_signed_in_user(db, "no-such-token") is None
    # Activity long after the revocation neither revives it nor un-revokes the row.
    async with session_scope(engine) as db:
        later = utcnow() + timedelta(seconds=TOUCH_EVERY_S * 5)
        assert await get_signed_in_user(db, ended, now=later) is None
    async with session_scope(engine) as db:
        await revoke_sessions(db, user.id)
    async with session_scope(engine) as db:
        assert await get_signed_in_user(db, kept) is None
        # Even with the version put back, the revoked rows stay revoked.
        await db.exec(update(User).where(User.id == user.id).values(session_version=1))
    async with session_scope(engine) as db:
        assert await get_signed_in_user(db, kept) is None
        assert await get_signed_in_user(db, ended) is None


@pytest.mark.parametrize(
    "cookie",
    [
        {},
        {"uid": 1, "sv": 1, "iat": 0, "seen": 0},  # the cookie format before issue 7
        {"sid": 12345},
        {"sid": ""},
        {"sid": "x" * 1000},
        {"sid": "made-up-token"},
    ],
)
async def test_cookies_without_a_live_session_token_are_refused(
    engine: AsyncEngine, make_user, cookie: dict[str, Any]
) -> None:
    user = await make_user()
    assert user.id == 1
    connection: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine)))
    assert await retrieve_user(cookie, connection) is None
    async with session_scope(engine) as db:
        token = await start_session(db, user)
    assert await retrieve_user({"sid": token}, connection) is not None
