"""Small pure pieces of the foundation: template filters and redirects.

Session timeouts are tested with the sessions, in tests/app/test_session.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
