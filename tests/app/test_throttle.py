"""Sign-in throttling per account and per client address, kept in the database.

Two app instances on one database (like two workers or two machines behind a router)
must share the count: a process-local counter would give an attacker a fresh budget on
every instance. The client address is what uvicorn puts in the scope; behind the PaaS
router that comes from ``X-Forwarded-For`` (``--proxy-headers``), which the test server
trusts from 127.0.0.1 exactly as production trusts it from the router.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.support.fixtures_app import (
    DEFAULT_PASSWORD,
    ServerThread,
    csrf_token_from,
    only_postgres,
)
from tests.support.net import bound_socket, free_port, serving_process
from web.app import create_app
from web.db import session_scope
from web.models import SignInFailure, utcnow
from web.services import throttle
from web.settings import Settings

NewClient = Callable[[], Awaitable[httpx.AsyncClient]]
ACCOUNT_LOCKED = "Too many failed sign-ins for this account"
ADDRESS_LOCKED = "Too many failed sign-ins from your network"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
def second_instance(settings: Settings) -> Iterator[str]:
    """A second ``create_app(settings)`` on the same database, on its own port."""
    sock = bound_socket()
    server = ServerThread(create_app(settings), sock)
    server.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.stop()
        sock.close()


@pytest.fixture
def other_process(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A desk in its own OS process, started as the Procfile's web line starts one."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTOM_", "REFUND_DESK_"))}
    env |= {
        "APP_ENV": "test",
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key,
        "PUBLIC_BASE_URL": base,
        "REFUND_DESK_POLLER": "off",
        "REFUND_DESK_DATA_DIR": str(tmp_path / "other"),
    }
    command = [sys.executable, "-m", "uvicorn", "web.asgi:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    command += ["--no-access-log", "--timeout-graceful-shutdown", "2"]
    with serving_process(command, env, f"{base}/healthz"):
        yield base


async def _attempt(
    client: httpx.AsyncClient, email: str, password: str, ip: str = "198.51.100.1"
) -> httpx.Response:
    page = await client.get("/login", headers={"X-Forwarded-For": ip})
    token = csrf_token_from(page.text)
    return await client.post(
        "/login",
        data={"_csrf_token": token, "email": email, "password": password},
        headers={"X-Forwarded-For": ip},
    )


async def test_failures_on_one_instance_lock_the_account_on_the_other(
    new_client: NewClient, make_user, second_instance: str
) -> None:
    user = await make_user()
    on_a = await new_client()
    for _ in range(throttle.ACCOUNT_POLICY.max_failures):
        assert (await _attempt(on_a, user.email, "wrong guess 123")).status_code == 400
    async with httpx.AsyncClient(base_url=second_instance, timeout=30.0) as on_b:
        locked = await _attempt(on_b, user.email, DEFAULT_PASSWORD)
    assert locked.status_code == 429
    assert f"{ACCOUNT_LOCKED}; try again in 15 minutes." in locked.text


async def test_failures_split_across_instances_add_up(
    new_client: NewClient, make_user, second_instance: str
) -> None:
    user = await make_user()
    on_a = await new_client()
    async with httpx.AsyncClient(base_url=second_instance, timeout=30.0) as on_b:
        for n in range(throttle.ACCOUNT_POLICY.max_failures):
            answer = await _attempt(on_a if n % 2 else on_b, user.email, "wrong guess 123")
            assert answer.status_code == 400
        assert (await _attempt(on_b, user.email, DEFAULT_PASSWORD)).status_code == 429
    assert (await _attempt(on_a, user.email, DEFAULT_PASSWORD)).status_code == 429


@only_postgres  # several processes need PostgreSQL (the desk refuses SQLite for them)
async def test_two_os_processes_share_the_account_and_address_counts(
    new_client: NewClient, make_user, other_process: str
) -> None:
    user = await make_user()
    here = await new_client()
    async with httpx.AsyncClient(base_url=other_process, timeout=30.0) as there:
        for _ in range(throttle.ACCOUNT_POLICY.max_failures):
            assert (await _attempt(there, user.email, "wrong guess 123")).status_code == 400
        assert (await _attempt(here, user.email, DEFAULT_PASSWORD)).status_code == 429
        attacker = "203.0.113.50"
        for n in range(throttle.ADDRESS_POLICY.max_failures):
            client = here if n % 2 else there
            await _attempt(client, f"spray{n}@desk.test", "Summer2026!!!", attacker)
        other = await make_user()
        refused = await _attempt(there, other.email, DEFAULT_PASSWORD, attacker)
        assert refused.status_code == 429 and ADDRESS_LOCKED in refused.text


async def test_an_unknown_email_locks_with_the_same_message(
    client: httpx.AsyncClient, make_user
) -> None:
    """The answers never tell an attacker which emails have accounts."""
    user = await make_user()
    answers = {}
    for email in (user.email, "nobody@desk.test"):
        for _ in range(throttle.ACCOUNT_POLICY.max_failures):
            assert (await _attempt(client, email, "wrong guess 123")).status_code == 400
        answers[email] = await _attempt(client, email, "wrong guess 123")
    known, unknown = answers[user.email], answers["nobody@desk.test"]
    assert known.status_code == unknown.status_code == 429
    assert known.text.replace(user.email, "EMAIL") == unknown.text.replace(
        "nobody@desk.test", "EMAIL"
    )


async def test_success_resets_the_account_count(client: httpx.AsyncClient, make_user) -> None:
    user = await make_user()
    almost = throttle.ACCOUNT_POLICY.max_failures - 1
    for _ in range(2):
        for _ in range(almost):
            assert (await _attempt(client, user.email, "wrong guess 123")).status_code == 400
        assert (await _attempt(client, user.email, DEFAULT_PASSWORD)).status_code == 303


async def test_many_accounts_from_one_address_lock_that_address_only(
    new_client: NewClient, make_user, second_instance: str
) -> None:
    """Password spraying: one guess per account, many accounts, from one address."""
    user = await make_user()
    on_a = await new_client()
    attacker = "203.0.113.7"
    async with httpx.AsyncClient(base_url=second_instance, timeout=30.0) as on_b:
        for n in range(throttle.ADDRESS_POLICY.max_failures):
            email = f"target{n}@desk.test"
            answer = await _attempt(on_a if n % 2 else on_b, email, "Summer2026!!!", attacker)
            assert answer.status_code == 400
        refused = await _attempt(on_a, user.email, DEFAULT_PASSWORD, attacker)
        assert refused.status_code == 429
        assert f"{ADDRESS_LOCKED}; try again in 15 minutes." in refused.text
        # Another address signs the same account in: the account itself is not locked.
        assert (
            await _attempt(on_b, user.email, DEFAULT_PASSWORD, "203.0.113.8")
        ).status_code == 303


async def test_a_success_does_not_reset_the_address_count(
    client: httpx.AsyncClient, make_user
) -> None:
    """Else an attacker with one valid account could clear their address's count."""
    own = await make_user()
    attacker = "203.0.113.9"
    for n in range(throttle.ADDRESS_POLICY.max_failures - 1):
        await _attempt(client, f"target{n}@desk.test", "Summer2026!!!", attacker)
    assert (await _attempt(client, own.email, DEFAULT_PASSWORD, attacker)).status_code == 303
    await _attempt(client, "one-more@desk.test", "Summer2026!!!", attacker)
    assert (await _attempt(client, own.email, DEFAULT_PASSWORD, attacker)).status_code == 429


async def _age_failures(engine: AsyncEngine, by: timedelta) -> None:
    """Move every stored failure ``by`` into the past: time passes without waiting."""
    async with session_scope(engine) as db:
        for row in (await db.exec(select(SignInFailure))).all():
            await db.exec(
                update(SignInFailure)
                .where(col(SignInFailure.id) == row.id)
                .values(failed_at=row.failed_at - by)
            )


async def test_the_lock_ends_when_the_failures_age_out(
    client: httpx.AsyncClient, make_user, engine: AsyncEngine
) -> None:
    user = await make_user()
    for _ in range(throttle.ACCOUNT_POLICY.max_failures):
        await _attempt(client, user.email, "wrong guess 123")
    assert (await _attempt(client, user.email, DEFAULT_PASSWORD)).status_code == 429
    # 10 minutes on: the message counts down with the stored failures' age.
    await _age_failures(engine, timedelta(minutes=10))
    waiting = await _attempt(client, user.email, DEFAULT_PASSWORD)
    assert f"{ACCOUNT_LOCKED}; try again in 5 minutes." in waiting.text
    await _age_failures(engine, timedelta(minutes=6))
    assert (await _attempt(client, user.email, DEFAULT_PASSWORD)).status_code == 303


# ---------------------------------------------------------------- the service, clock injected


async def test_service_sliding_window_with_an_injected_clock(engine: AsyncEngine) -> None:
    t0 = utcnow()
    policy = throttle.ACCOUNT_POLICY
    async with session_scope(engine) as db:
        for n in range(policy.max_failures):
            assert await throttle.refusal(db, "A@x.test", "192.0.2.1", now=t0) is None
            await throttle.record_failure(
                db, " a@X.test", "192.0.2.1", now=t0 + timedelta(seconds=n)
            )
        refused = await throttle.refusal(db, "a@x.test", "192.0.2.2", now=t0 + timedelta(minutes=1))
        assert refused is not None
        assert refused.scope is throttle.Scope.ACCOUNT
        assert refused.minutes == 14
        assert await throttle.refusal(db, "b@x.test", "192.0.2.1", now=t0) is None
        later = t0 + policy.window + timedelta(seconds=1)
        assert await throttle.refusal(db, "a@x.test", "192.0.2.1", now=later) is None
        await throttle.record_success(db, "a@x.test")
        assert await throttle.refusal(db, "a@x.test", "192.0.2.1", now=t0) is None


async def test_service_prunes_failures_older_than_the_window(engine: AsyncEngine) -> None:
    t0 = utcnow() - timedelta(days=1)
    async with session_scope(engine) as db:
        for n in range(30):
            await throttle.record_failure(db, f"spray{n}@x.test", "192.0.2.3", now=t0)
        await throttle.record_failure(db, "now@x.test", "192.0.2.3", now=utcnow())
        left = await throttle.count_rows(db)
    # The fresh failure's two rows (account and address) are all that remain.
    assert left == 2
