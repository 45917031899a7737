"""Rows for page tests, written straight to the database (the pages only read them)."""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.schema import create_schema
from web.models import Payment, Refund, RefundEvent, RefundStatus, Role, User

_seq = itertools.count(1)


@asynccontextmanager
async def scratch_engine(kind: str) -> AsyncIterator[AsyncEngine]:
    """An empty schema on a fresh SQLite file or a fresh PostgreSQL database."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_async_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'pages.sqlite3'}")
            async with engine.begin() as conn:
                await create_schema(conn)
            try:
                yield engine
            finally:
                await engine.dispose()
        return
    server = os.environ["TEST_DATABASE_URL"]
    url, name = pg_scratch_url(server)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await create_schema(conn)
        yield engine
    finally:
        await engine.dispose()
        drop_pg_database(server, name)


def _conninfo(server: str) -> str:
    return server.replace("postgresql+psycopg://", "postgresql://", 1).replace(
        "postgres://", "postgresql://", 1
    )


def pg_scratch_url(server: str) -> tuple[str, str]:
    """Create a throwaway database on the server; its async URL and name."""
    name = f"pages_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = _conninfo(server).rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}", name


def drop_pg_database(server: str, name: str) -> None:
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def add_user(session: AsyncSession, **kw: Any) -> User:
    n = next(_seq)
    user = User(
        email=kw.pop("email", f"agent{n}@desk.test"),
        name=kw.pop("name", f"Agent {n}"),
        role=kw.pop("role", Role.AGENT),
        password_hash=kw.pop("password_hash", "x"),
        **kw,
    )
    session.add(user)
    await session.flush()
    return user


async def add_payment(session: AsyncSession, **kw: Any) -> Payment:
    n = next(_seq)
    amount = kw.pop("amount_minor", 10_000)
    created = kw.pop("created_at", datetime(2026, 3, 1, tzinfo=UTC))
    payment = Payment(
        payment_id=kw.pop("payment_id", f"2026PAY{n:08d}"),
        payment_request_id=kw.pop("payment_request_id", f"REQ-{n:08d}"),
        reference_order_id=kw.pop("reference_order_id", f"ORDER-{n}"),
        buyer_email=kw.pop("buyer_email", f"buyer{n}@example.com"),
        buyer_name=kw.pop("buyer_name", f"Buyer {n}"),
        method=kw.pop("method", "ALIPAY_CN"),
        currency=kw.pop("currency", "USD"),
        amount_minor=amount,
        captured_minor=kw.pop("captured_minor", amount),
        status=kw.pop("status", "SUCCESS"),
        paid_at=kw.pop("paid_at", created),
        created_at=created,
        **kw,
    )
    session.add(payment)
    await session.flush()
    return payment


async def add_refund(session: AsyncSession, payment: Payment, **kw: Any) -> Refund:
    n = next(_seq)
    refund = Refund(
        refund_request_id=kw.pop("refund_request_id", f"rr-{uuid.uuid4().hex}"),
        payment_pk=payment.id,
        currency=kw.pop("currency", payment.currency),
        amount_minor=kw.pop("amount_minor", 100),
        status=kw.pop("status", RefundStatus.SUCCEEDED),
        reason=kw.pop("reason", "duplicate"),
        reason_text=kw.pop("reason_text", "Duplicate charge"),
        refund_id=kw.pop("refund_id", f"2026REF{n:08d}"),
        **kw,
    )
    session.add(refund)
    await session.flush()
    return refund


async def add_event(session: AsyncSession, refund: Refund, **kw: Any) -> RefundEvent:
    event = RefundEvent(refund_pk=refund.id or 0, **kw)
    session.add(event)
    await session.flush()
    return event
