"""The database layer (web/db.py): what the services rely on whatever the driver does."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from web.db import make_engine, session_scope

# How long the probe below waits for the write lock before calling it held. The lock is
# freed as soon as the cancelled connection's close reaches its worker thread; the
# bound only turns "never" into a failure instead of a hung test.
LOCK_WAIT_S = 30.0


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    # The stranded statement is freed only when the garbage collector happens to run;
    # with it off, "the lock is released" cannot be luck.
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_task_cancelled_mid_statement_does_not_keep_the_sqlite_write_lock(
    tmp_path: Path, no_cyclic_gc: None
) -> None:
    """A browser that closes a page while its SSE stream reads (a cancelled task) must not
    leave the database locked for every other request: it once held the ``BEGIN
    IMMEDIATE`` lock until the garbage collector freed the unfinished statement."""
    path = tmp_path / "desk.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    entered, release = threading.Event(), threading.Event()

    def gate() -> int:
        # Runs on the driver's worker thread, inside the statement: the cancellation
        # lands while the statement is executing, as it does when a stream is closed.
        entered.set()
        release.wait()
        return 1

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _register_gate(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("gate", 0, gate)

    async with session_scope(engine) as session:
        await session.exec(sa.text("CREATE TABLE notes (body TEXT)"))  # type: ignore[call-overload]

    async def reader() -> None:
        async with AsyncSession(engine) as session:
            await session.exec(sa.text("SELECT gate() UNION ALL SELECT 2"))  # type: ignore[call-overload]

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await asyncio.to_thread(entered.wait)
            group.cancel_scope.cancel()
            release.set()

        def take_write_lock() -> None:
            probe = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            finally:
                probe.close()

        await asyncio.to_thread(take_write_lock)  # raised "database is locked" before

        async with session_scope(engine) as session:
            await session.exec(sa.text("INSERT INTO notes VALUES ('after')"))  # type: ignore[call-overload]
        async with session_scope(engine) as session:
            notes = (await session.exec(sa.text("SELECT body FROM notes"))).all()  # type: ignore[call-overload]
        assert [tuple(row) for row in notes] == [("after",)]
    finally:
        release.set()
        await engine.dispose()
