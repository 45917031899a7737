"""Small pure pieces of the foundation: template filters, redirects, session timeouts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from web.auth import ABSOLUTE_TIMEOUT_S, IDLE_TIMEOUT_S, retrieve_user, session_payload
from web.htmx import login_url, safe_next
from web.templating import age, money, utc

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=10), "just now"),
        (timedelta(minutes=4), "4 min ago"),
        (timedelta(minutes=59), "1 h ago"),
        (timedelta(hours=5, minutes=10), "5 h ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=3, hours=2), "3 days ago"),
        (-timedelta(minutes=30), "in 30 min"),
    ],
)
def test_age_reads_like_a_person_would_say_it(delta: timedelta, expected: str) -> None:
    assert age(NOW - delta, now=NOW) == expected


def test_utc_and_money_filters() -> None:
    local = datetime(2026, 11, 25, 21, 5, 9, tzinfo=UTC).astimezone()
    assert utc(local) == "2026-11-25 21:05 UTC"
    assert utc(local, seconds=True) == "2026-11-25 21:05:09 UTC"
    assert utc(None) == "–"
    assert money(120000, "JPY") == "¥120,000"
    assert money(1250, "USD") == "$12.50"
    assert money(None, "USD") == "–"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/refunds?status=failed", "/refunds?status=failed"),
        ("https://evil.example/x", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/login?next=/x", "/"),
        ("", "/"),
    ],
)
def test_safe_next_only_allows_local_paths(given: str, expected: str) -> None:
    assert safe_next(given) == expected


def test_login_url_keeps_the_way_back() -> None:
    assert login_url("/") == "/login"
    assert login_url("/payments?q=a b") == "/login?next=/payments%3Fq%3Da%20b"


async def test_sessions_expire_when_idle_and_after_the_absolute_limit(
    engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    connection: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine)))
    now = time.time()
    fresh = session_payload(user, now=now)
    assert (await retrieve_user(dict(fresh), connection)) is not None
    idle = {**fresh, "seen": now - IDLE_TIMEOUT_S - 5}
    assert await retrieve_user(idle, connection) is None
    old = {**fresh, "iat": now - ABSOLUTE_TIMEOUT_S - 5, "seen": now}
    assert await retrieve_user(old, connection) is None
    assert await retrieve_user({"uid": "x"}, connection) is None
    assert await retrieve_user({**fresh, "sv": user.session_version + 1}, connection) is None


async def test_activity_moves_the_idle_clock_forward(engine: AsyncEngine, make_user) -> None:
    user = await make_user()
    connection: Any = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine)))
    session = {**session_payload(user), "seen": int(time.time()) - 600}
    assert await retrieve_user(session, connection) is not None
    assert session["seen"] >= int(time.time()) - 1
