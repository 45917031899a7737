"""``/healthz``: up and the database answers, or 503 when it does not (no sign-in needed).

It also reports the live listener (``live``); its outages never make it 503 (see
``tests/status/test_live_listener.py``, which kills the listener's connection).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures_app import only_postgres
from web.settings import Settings


async def test_healthz_reports_ok_without_signing_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    # SQLite: one process, live updates in memory (no listener to lose).
    assert (body["live"], body["live_since"], body["live_reconnects"]) == ("memory", None, 0)


class TestOnPostgres:
    @pytest.fixture
    def settings(self, make_settings: Callable[..., Settings], db_url: str) -> Settings:
        return make_settings(database_url=db_url)

    @only_postgres
    async def test_healthz_reports_the_live_listener(
        self, client: httpx.AsyncClient, db_url: str
    ) -> None:
        body = (await client.get("/healthz")).json()
        assert (body["status"], body["database"]) == ("ok", "ok")
        assert (body["live"], body["live_reconnects"]) == ("ok", 0)
        assert body["live_since"]


class TestDatabaseDown:
    @pytest.fixture
    def settings(self, make_settings, tmp_path: Path) -> Settings:
        # A directory where the database file should be: every connection attempt fails.
        (tmp_path / "not-a-file").mkdir()
        return make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'not-a-file'}")

    async def test_healthz_is_503_when_the_database_is_unreachable(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json() == {"status": "error", "database": "unreachable"}
