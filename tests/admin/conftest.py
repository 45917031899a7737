"""Admin-page fixtures: every module runs on SQLite and PostgreSQL; the CLI runner; the
audit rows a test wrote."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from web.cli import main
from web.db import session_scope
from web.models import AuditEvent
from web.settings import Settings


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``cli("users", "list")`` -> its output; ``ok=False`` expects it to fail."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REFUND_DESK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PUBLIC_BASE_URL", settings.public_base_url)

    def run(*args: str, ok: bool = True) -> str:
        # The CLI runs its own event loop, so it gets a thread of its own (tests are async).
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(CliRunner().invoke, main, list(args)).result()
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    return run


@pytest.fixture
def audit_rows(engine: AsyncEngine) -> Callable[..., Awaitable[list[AuditEvent]]]:
    """``await audit_rows("user.")``: the audit rows whose action starts so, oldest first."""

    async def read(prefix: str = "", **where: Any) -> list[AuditEvent]:
        async with session_scope(engine) as session:
            query = select(AuditEvent).where(col(AuditEvent.action).startswith(prefix))
            for name, value in where.items():
                query = query.where(getattr(AuditEvent, name) == value)
            return list((await session.exec(query.order_by(col(AuditEvent.id)))).all())

    return read
