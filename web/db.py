"""Database engine, sessions and migrations.

SQLite (development, tests, one process) and PostgreSQL (production, any number of
instances) behave the same way from the services' point of view:

* SQLite runs in WAL mode with a busy timeout and foreign keys on, and every
  transaction that may write starts with ``BEGIN IMMEDIATE``: pysqlite otherwise
  delays ``BEGIN`` until the first write, so a read-check-write (the refund
  reservation) would not be atomic, and a deferred read that later writes can fail at
  once with SQLITE_BUSY.
  A process's writers queue for their turn in asyncio first (``_WriterTurns``), not in
  SQLite's sleeping busy handler.
* SQLite connections roll back before they close (``_RollingBackConnection``): a task
  cancelled between a statement and its fetch (a closed SSE stream, a timeout) leaves
  an unfinished statement, and pysqlite's ``close()`` then only makes the connection a
  zombie that keeps its transaction, and with it the write lock, until the garbage
  collector frees the statement.
* Work that only reads says so (``read_scope``): on SQLite its transaction begins
  DEFERRED, which in WAL mode takes a snapshot and no lock, so the live updates' reads,
  the poller's look before it asks Antom and the health check neither wait for nor hold
  the one write lock; a write slipped into one fails (``ReadOnlyError``).
* PostgreSQL uses psycopg 3 (async here, sync for Alembic).
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from litestar import Litestar
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.util import await_
from sqlmodel.ext.asyncio.session import AsyncSession

from web.settings import ROOT

SQLITE_BUSY_TIMEOUT_MS = 15_000
# The execution option that marks a read-only engine (``reader``).
_READS_ONLY = "desk_reads_only"


def _sqlite_path(url: str) -> Path | None:
    rest = url.partition("://")[2]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:])


class _RollingBackConnection(sqlite3.Connection):
    """A pysqlite connection whose ``close()`` ends its transaction first.

    SQLAlchemy closes (terminates) an aiosqlite connection whose task was cancelled
    mid-statement instead of rolling it back. Had a cursor not yet fetched its rows,
    ``sqlite3_close_v2`` defers the close, transaction and ``BEGIN IMMEDIATE`` write
    lock included, until that cursor is freed: every other writer then waits out the
    busy timeout. ROLLBACK is allowed with reads pending and releases the lock now.
    """

    def close(self) -> None:
        try:
            open_transaction = self.in_transaction
        except sqlite3.ProgrammingError:  # closed already: aiosqlite may close twice
            return
        if open_transaction:
            self.rollback()
        super().close()


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the driver; "begin" below emits it ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _reads_only(connection: sa.Connection) -> bool:
    return bool(connection.get_execution_options().get(_READS_ONLY, False))


def _on_sqlite_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN" if _reads_only(connection) else "BEGIN IMMEDIATE")


class _WriterTurns:
    """This process's SQLite writers wait for their turn in asyncio, not in SQLite.

    SQLite admits one writer; the others sleep in its busy handler, in steps that grow
    to 100 ms, so a queue of writers in one process spends most of its time asleep
    after the lock is free (the SQLite poller reached a third of its allowed rate).
    Taking turns on an ``asyncio.Lock`` first hands the lock over as soon as a writer
    ends. It only orders; SQLite's lock still guards: a turn not had within the busy
    timeout (another process holds the lock, or a task waits on itself) goes ahead
    anyway, as it did before. Reads (``reader``) take no turn.
    """

    _KEY = "desk_writer_turn"

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self.waiting = 0  # writers queued for their turn, on any loop

    def held(self) -> bool:
        """Whether a writer on the running loop has the turn."""
        lock = self._locks.get(asyncio.get_running_loop())
        return lock is not None and lock.locked()

    def begin(self, connection: sa.Connection) -> None:
        if not _reads_only(connection):
            lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            self.waiting += 1
            try:
                took = await_(_take(lock))
            finally:
                self.waiting -= 1
            if took:
                connection.info[self._KEY] = lock
        try:
            _on_sqlite_begin(connection)
        except BaseException:
            self._give_back(connection.info)
            raise

    def _give_back(self, info: dict[Any, Any]) -> None:
        # ``info`` is the pooled connection's own (a Connection's is its record's), so
        # the transaction's end and the pool's events below find the same turn.
        lock = info.pop(self._KEY, None)
        if lock is not None:
            lock.release()

    def install(self, sync_engine: sa.Engine) -> None:
        _TURNS[sync_engine] = self
        sa.event.listen(sync_engine, "begin", self.begin)

        @sa.event.listens_for(sync_engine, "commit")
        @sa.event.listens_for(sync_engine, "rollback")
        def _ended(connection: sa.Connection) -> None:
            self._give_back(connection.info)

        # A connection invalidated or returned without its COMMIT/ROLLBACK (a cancelled
        # task) gives its turn back too. Each pool event with its exact signature:
        # SQLAlchemy reads a looser one as the legacy form and warns on every checkin.
        pool = sync_engine.pool

        @sa.event.listens_for(pool, "reset")
        def _reset(_dbapi_connection: Any, record: Any, _state: Any) -> None:
            self._give_back(record.info)

        @sa.event.listens_for(pool, "invalidate")
        def _invalidate(_dbapi_connection: Any, record: Any, _error: Any) -> None:
            self._give_back(record.info)

        @sa.event.listens_for(pool, "close")
        def _close(_dbapi_connection: Any, record: Any) -> None:
            self._give_back(record.info)


_TURNS: weakref.WeakKeyDictionary[sa.Engine, _WriterTurns] = weakref.WeakKeyDictionary()


def writer_turns(engine: AsyncEngine) -> _WriterTurns | None:
    """The turns ``engine``'s writers take (SQLite only), for tests and diagnosis."""
    return _TURNS.get(engine.sync_engine)


async def _take(lock: asyncio.Lock) -> bool:
    try:
        async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
            await lock.acquire()
    except TimeoutError:
        return False
    return True


def _configure_sqlite(sync_engine: sa.Engine, url: str, *, turns: bool = False) -> None:
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    sa.event.listen(sync_engine, "connect", _on_sqlite_connect)
    if turns:
        _WriterTurns().install(sync_engine)
    else:
        sa.event.listen(sync_engine, "begin", _on_sqlite_begin)


def make_engine(url: str) -> AsyncEngine:
    """An async engine for a normalised URL (``sqlite+aiosqlite`` / ``postgresql+psycopg``)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                # Only async code is cancelled mid-statement; the sync engine needs none.
                "factory": _RollingBackConnection,
            },
        )
        _configure_sqlite(engine.sync_engine, url, turns=True)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def make_sync_engine(url: str) -> sa.Engine:
    """The same database through a sync driver (Alembic, CLI)."""
    sync_url = sync_database_url(url)
    if sync_url.startswith("sqlite"):
        engine = sa.create_engine(sync_url)
        _configure_sqlite(engine, sync_url)
        return engine
    return sa.create_engine(sync_url, pool_pre_ping=True)


def sync_database_url(url: str) -> str:
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url.removeprefix("sqlite+aiosqlite://")
    return url  # psycopg 3 serves sync and async under the same URL


@asynccontextmanager
async def session_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block ends normally, roll back on any error."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


_READERS: weakref.WeakKeyDictionary[sa.Engine, AsyncEngine] = weakref.WeakKeyDictionary()


class ReadOnlyError(RuntimeError):
    """Something tried to write inside ``read_scope``."""


def reader(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for work that only reads: the same pool; on SQLite, transactions that
    take no write lock. PostgreSQL needs nothing (its readers never block writers), and
    ``postgresql_readonly`` was measured to add 0.3-0.5 ms a transaction."""
    if engine.dialect.name != "sqlite":
        return engine
    found = _READERS.get(engine.sync_engine)
    if found is None:
        found = _READERS[engine.sync_engine] = engine.execution_options(**{_READS_ONLY: True})
    return found


@asynccontextmanager
async def read_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """One read-only transaction (``reader``), rolled back when the block ends. A write
    in it (an ORM flush, an INSERT/UPDATE/DELETE statement) raises ``ReadOnlyError``,
    on both databases. Separate scopes see the database as of their own start, so use
    one for reads that must agree with each other."""
    async with AsyncSession(
        reader(engine), expire_on_commit=False, info={_READS_ONLY: True}
    ) as session:
        yield session


@sa.event.listens_for(Session, "before_flush")
def _no_flush_when_reading(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(_READS_ONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlyError("a read_scope session may not write")


@sa.event.listens_for(Session, "do_orm_execute")
def _no_writes_when_reading(state: ORMExecuteState) -> None:
    if state.session.info.get(_READS_ONLY) and (
        state.is_insert or state.is_update or state.is_delete
    ):
        raise ReadOnlyError("a read_scope session may not write")


def database_lifespan(url: str) -> Any:
    """Lifespan that keeps the engine on ``app.state.engine`` and disposes it at shutdown."""

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        engine = make_engine(url)
        app.state.engine = engine
        try:
            yield
        finally:
            await engine.dispose()

    return database


def provide_engine(state: State) -> AsyncEngine:
    engine: AsyncEngine = state.engine
    return engine


async def provide_db_session(state: State) -> AsyncIterator[AsyncSession]:
    """The ``db_session`` dependency: one transaction per request handler."""
    async with session_scope(provide_engine(state)) as session:
        yield session


def alembic_config(url: str | None = None) -> Any:
    """Alembic configuration from ``[tool.alembic]`` in pyproject.toml, pointed at ``url``."""
    cfg = Config(toml_file=str(ROOT / "pyproject.toml"))
    if url is not None:
        cfg.attributes["database_url"] = url
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Run ``alembic upgrade`` programmatically (sync; call via a thread from async code)."""
    command.upgrade(alembic_config(url), revision)
