"""``/healthz``: up and the database answers, or 503 when it does not (no sign-in needed)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from web.settings import Settings


async def test_healthz_reports_ok_without_signing_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")


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
