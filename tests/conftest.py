"""Shared test wiring. Area fixtures live in tests/support/fixtures_*.py."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.fixtures_sim", "tests.support.fixtures_app"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_DATABASE_URL:
        return
    skip = pytest.mark.skip(reason="PostgreSQL tests need TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI sets REQUIRE_POSTGRES=1: a PostgreSQL test that skipped is a failed run there.
    if os.environ.get("REQUIRE_POSTGRES") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    pg_skipped = [r for r in skipped if "postgres" in getattr(r, "keywords", {})]
    if pg_skipped or not TEST_DATABASE_URL:
        print(f"\nREQUIRE_POSTGRES=1 but {len(pg_skipped)} PostgreSQL test(s) skipped")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
