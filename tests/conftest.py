"""Shared test wiring. Area fixtures live in tests/support/fixtures_*.py."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

pytest_plugins = [
    "tests.support.fixtures_sim",
    "tests.support.fixtures_app",
    "tests.support.ledger_guard",
]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")

# Hypothesis profiles. "ci" (when CI is set, as .ci/run sets it) draws the same examples on
# every run, so a red run is reproducible rather than a lucky draw, and keeps no example
# database. "dev" explores at random and remembers failures in .hypothesis/. Neither has a
# deadline: how fast an example runs next to a busy neighbour is not what a test asserts.
# HYPOTHESIS_PROFILE=ci|dev chooses one explicitly.
hypothesis_settings.register_profile(
    "ci", derandomize=True, deadline=None, database=None, print_blob=True
)
hypothesis_settings.register_profile("dev", deadline=None)
_in_ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if _in_ci else "dev")
)


def pytest_report_header(config: pytest.Config) -> str:
    return f"hypothesis profile: {hypothesis_settings.get_current_profile_name()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_DATABASE_URL:
        return
    skip = pytest.mark.skip(reason="PostgreSQL tests need TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI sets REQUIRE_POSTGRES=1: a PostgreSQL test that skipped is a failed run there.
    # Under pytest-xdist the controller decides: every worker's reports reach its terminal
    # reporter, while a worker has no reporter of its own.
    if os.environ.get("REQUIRE_POSTGRES") != "1" or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    pg_skipped = [r for r in skipped if "postgres" in getattr(r, "keywords", {})]
    if pg_skipped or not TEST_DATABASE_URL:
        print(f"\nREQUIRE_POSTGRES=1 but {len(pg_skipped)} PostgreSQL test(s) skipped")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
