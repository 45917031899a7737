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
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.waiting import wait_until
from web.db import ReadOnlyError, make_engine, read_scope, session_scope, writer_turns
from web.models import RefundReason

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


def _gated(engine: AsyncEngine) -> tuple[threading.Event, threading.Event]:
    """A SQL function ``gate()`` on ``engine``'s connections that says it was entered and
    then blocks until released. It runs on the driver's worker thread, inside the
    statement, so a cancellation lands while the statement executes, as it does when a
    page closes its stream."""
    entered, release = threading.Event(), threading.Event()

    def gate() -> int:
        entered.set()
        release.wait()
        return 1

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _register_gate(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("gate", 0, gate)

    return entered, release


def _can_take_write_lock(path: Path, wait_s: float = 0) -> bool:
    """Whether another connection gets SQLite's write lock within ``wait_s``."""
    probe = sqlite3.connect(path, timeout=wait_s, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return False
    finally:
        probe.close()


async def test_a_task_cancelled_mid_statement_does_not_keep_the_sqlite_write_lock(
    tmp_path: Path, no_cyclic_gc: None
) -> None:
    """A browser that closes a page while its SSE stream reads (a cancelled task) must not
    leave the database locked for every other request: it once held the ``BEGIN
    IMMEDIATE`` lock until the garbage collector freed the unfinished statement."""
    path = tmp_path / "desk.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    entered, release = _gated(engine)

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
        # Locked before, however long the probe waited.
        assert await asyncio.to_thread(_can_take_write_lock, path, LOCK_WAIT_S)

        async with session_scope(engine) as session:
            await session.exec(sa.text("INSERT INTO notes VALUES ('after')"))  # type: ignore[call-overload]
        async with session_scope(engine) as session:
            notes = (await session.exec(sa.text("SELECT body FROM notes"))).all()  # type: ignore[call-overload]
        assert [tuple(row) for row in notes] == [("after",)]
    finally:
        release.set()
        await engine.dispose()


async def test_a_read_scope_takes_no_sqlite_write_lock(tmp_path: Path) -> None:
    """Reads (live updates, the poller's look before asking Antom, /healthz) do not queue
    writers behind them; a transaction that may write still takes the lock at its start."""
    path = tmp_path / "desk.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with session_scope(engine) as session:
            await session.exec(sa.text("CREATE TABLE notes (body TEXT)"))  # type: ignore[call-overload]
        async with read_scope(engine) as session:
            await session.exec(sa.text("SELECT count(*) FROM notes"))  # type: ignore[call-overload]
            assert _can_take_write_lock(path)
        async with session_scope(engine) as session:
            await session.exec(sa.text("SELECT count(*) FROM notes"))  # type: ignore[call-overload]
            assert not _can_take_write_lock(path)
    finally:
        await engine.dispose()


async def test_a_read_scope_refuses_to_write(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(ReadOnlyError):
            async with read_scope(engine) as session:
                session.add(RefundReason(code="sneaked_in", label="Sneaked in"))
                await session.flush()
        with pytest.raises(ReadOnlyError):
            async with read_scope(engine) as session:
                await session.exec(sa.delete(RefundReason))
        async with session_scope(engine) as session:
            session.add(RefundReason(code="kept", label="Kept"))
        async with read_scope(engine) as session:
            kept = select(RefundReason).where(RefundReason.code == "kept")
            assert (await session.exec(kept)).one()
            sneaked = select(RefundReason).where(RefundReason.code == "sneaked_in")
            assert (await session.exec(sneaked)).all() == []
            assert (await session.exec(select(RefundReason))).all()  # the delete never ran
    finally:
        await engine.dispose()


def _count_begins(engine: AsyncEngine) -> list[str]:
    begins: list[str] = []

    @sa.event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("BEGIN"):
            begins.append(statement)

    return begins


async def test_sqlite_writers_wait_for_their_turn_in_asyncio_not_in_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second writer in the process queues on the turn (handed over the moment the
    first ends) instead of sleeping in SQLite's busy handler; a reader does not queue."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")
    turns = writer_turns(engine)
    assert turns is not None
    begins = _count_begins(engine)
    first_wrote, first_may_end = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with session_scope(engine) as session:
            await session.exec(sa.text("INSERT INTO notes VALUES ('first')"))  # type: ignore[call-overload]
            first_wrote.set()
            await first_may_end.wait()

    async def second() -> None:
        async with session_scope(engine) as session:
            await session.exec(sa.text("INSERT INTO notes VALUES ('second')"))  # type: ignore[call-overload]

    try:
        async with session_scope(engine) as session:
            await session.exec(sa.text("CREATE TABLE notes (body TEXT)"))  # type: ignore[call-overload]
        begins.clear()
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await first_wrote.wait()
            group.start_soon(second)
            await wait_until(lambda: turns.waiting == 1, what="the second writer to queue")
            assert begins == ["BEGIN IMMEDIATE"]  # the second never reached SQLite's lock
            async with read_scope(engine) as session:  # readers do not queue at all
                await session.exec(sa.text("SELECT count(*) FROM notes"))  # type: ignore[call-overload]
            first_may_end.set()
        assert begins == ["BEGIN IMMEDIATE", "BEGIN", "BEGIN IMMEDIATE"]
        assert not turns.held() and turns.waiting == 0
        async with read_scope(engine) as session:
            rows = (await session.exec(sa.text("SELECT body FROM notes ORDER BY rowid"))).all()  # type: ignore[call-overload]
        assert [tuple(row) for row in rows] == [("first",), ("second",)]
        # The pool logs, rather than raises, what goes wrong in its reset listeners.
        assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
    finally:
        first_may_end.set()
        await engine.dispose()


async def test_a_writer_cancelled_mid_statement_gives_its_turn_back(
    tmp_path: Path, no_cyclic_gc: None
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")
    turns = writer_turns(engine)
    assert turns is not None
    entered, release = _gated(engine)

    async def writer() -> None:
        async with session_scope(engine) as session:
            await session.exec(sa.text("INSERT INTO notes VALUES ('lost')"))  # type: ignore[call-overload]
            await session.exec(sa.text("SELECT gate() UNION ALL SELECT 2"))  # type: ignore[call-overload]

    try:
        async with session_scope(engine) as session:
            await session.exec(sa.text("CREATE TABLE notes (body TEXT)"))  # type: ignore[call-overload]
        async with anyio.create_task_group() as group:
            group.start_soon(writer)
            await asyncio.to_thread(entered.wait)
            assert turns.held()
            group.cancel_scope.cancel()
            release.set()
        await wait_until(lambda: not turns.held(), what="the cancelled writer's turn to end")
        async with session_scope(engine) as session:
            await session.exec(sa.text("INSERT INTO notes VALUES ('next')"))  # type: ignore[call-overload]
        async with read_scope(engine) as session:
            rows = (await session.exec(sa.text("SELECT body FROM notes"))).all()  # type: ignore[call-overload]
        assert [tuple(row) for row in rows] == [("next",)]
    finally:
        release.set()
        await engine.dispose()
