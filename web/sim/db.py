"""The simulator's own SQLite database.

The tables hang off a private ``MetaData`` so the app's Alembic metadata never sees
them. Every read and write runs in one dedicated thread, one transaction per call:
that serialises all writes, so "is this still refundable?" and "insert the refund"
can never interleave with another request's.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")

metadata = sa.MetaData()

# Times are float seconds since the epoch (UTC): the scheduler compares them constantly.
payments = sa.Table(
    "sim_payments",
    metadata,
    sa.Column("payment_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("payment_request_id", sa.String(64), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("captured_minor", sa.BigInteger, nullable=False, default=0),
    # Antom paymentStatus: SUCCESS, PROCESSING, FAIL, CANCELLED.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dispute_open", sa.Boolean, nullable=False, default=False),
    sa.Column("dispute_id", sa.String(64)),
    sa.Column("paid_at", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("buyer_email", sa.String(254)),
    sa.Column("buyer_name", sa.String(120)),
    sa.Column("reference_order_id", sa.String(64)),
    sa.Column("notify_url", sa.String(1024)),
    sa.Column("request_body", sa.Text),  # the pay request as received, when it came over the API
    # Made in the sandbox (sandbox path or SANDBOX_ client): its notifications are sent once.
    sa.Column("sandbox", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.UniqueConstraint("client_id", "payment_request_id"),
)

captures = sa.Table(
    "sim_captures",
    metadata,
    sa.Column("capture_id", sa.String(64), primary_key=True),
    sa.Column("capture_request_id", sa.String(64), nullable=False),
    sa.Column("payment_id", sa.String(64), sa.ForeignKey("sim_payments.payment_id"), index=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

refunds = sa.Table(
    "sim_refunds",
    metadata,
    sa.Column("refund_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("refund_request_id", sa.String(64), nullable=False),
    sa.Column("payment_id", sa.String(64), sa.ForeignKey("sim_payments.payment_id"), index=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(256)),
    sa.Column("notify_url", sa.String(1024)),
    sa.Column("metadata", sa.Text),
    # refundStatus: PROCESSING, SUCCESS, FAIL.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("planned_outcome", sa.String(16), nullable=False),  # what PROCESSING turns into
    sa.Column("settle_at", sa.Float),  # when a PROCESSING refund becomes final
    sa.Column("reverse_at", sa.Float),  # set when this refund is doomed to be reversed
    sa.Column("reversed_at", sa.Float),
    sa.Column("balance_debited", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("sandbox", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # Assigned when the refund is accepted and never changed: the merchant reconciles the
    # settlement file by them (seed guide's APO refund response).
    sa.Column("acquirer_reference_no", sa.String(64)),
    sa.Column("acquirer_info", sa.Text),  # JSON object, as answered
    sa.UniqueConstraint("client_id", "refund_request_id"),
)

# One row per (client, kind, request id): what was asked and, once final, what was answered.
idempotency = sa.Table(
    "sim_idempotency",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("request_key", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("object_id", sa.String(64)),  # refundId / captureId / paymentId when created
    sa.Column("response_body", sa.Text),  # exact bytes replayed; NULL while processing
    sa.Column("created_at", sa.Float, nullable=False),
)

# Magic-amount faults fire once per request id; this remembers which already fired.
fault_hits = sa.Table(
    "sim_fault_hits",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("request_key", sa.String(64), primary_key=True),
    sa.Column("fault", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

notifications = sa.Table(
    "sim_notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notify_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(64), nullable=False, index=True),
    sa.Column("url", sa.String(1024), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # sent byte-for-byte on every attempt
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("next_attempt_at", sa.Float, index=True),  # NULL once acknowledged or given up
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),  # pending, acknowledged, gave_up
    # Antom's sandbox does not re-send: one attempt, then gave_up unless acknowledged.
    sa.Column("sandbox", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
)

delivery_attempts = sa.Table(
    "sim_delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.Integer, sa.ForeignKey("sim_notifications.id"), index=True),
    sa.Column("attempted_at", sa.Float, nullable=False),
    sa.Column("request_time", sa.String(40), nullable=False),
    sa.Column("http_status", sa.Integer),
    sa.Column("acknowledged", sa.Boolean, nullable=False),
    sa.Column("error", sa.String(512)),
    sa.Column("response_excerpt", sa.String(512)),
)

balances = sa.Table(
    "sim_balances",
    metadata,
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("balance_minor", sa.BigInteger, nullable=False),
)

settings = sa.Table(
    "sim_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL survives a crash of the simulator (not of the machine): enough here.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def add_missing_columns(conn: Connection) -> None:
    """Bring a database file from an older simulator up to date, in place.

    State survives restarts, and ``create_all`` only creates missing tables: a column
    added since the file was made is added here (each new one is nullable or has a
    server default, which is what SQLite's ADD COLUMN needs).
    """
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN {ddl}')


def make_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.StaticPool)
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    with engine.begin() as conn:
        add_missing_columns(conn)
    return engine


class SimDB:
    """Runs functions of a ``Connection`` in one transaction each, on one thread."""

    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-db")
        self.engine = self._executor.submit(make_engine, path).result()

    def _transaction(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return fn(conn)

    async def run(self, fn: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, fn)

    def run_sync(self, fn: Callable[[Connection], T]) -> T:
        """For callers outside the event loop (CLI, tests): still on the DB thread."""
        return self._executor.submit(self._transaction, fn).result()

    def close(self) -> None:
        self._executor.submit(self.engine.dispose).result()
        self._executor.shutdown(wait=True)
