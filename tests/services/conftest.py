"""Refund workflow fixtures: a real database (SQLite file or PostgreSQL) and a real
simulator reached over HTTP through the app's own Antom client."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.schema import create_schema, create_schema_sync, empty_schema
from tests.support.simulator import SimHandle
from web.antom.client import AntomClient
from web.antom.messages import InquiryPaymentResult
from web.db import make_engine
from web.models import Alert, Payment, Refund, RefundEvent, Role, SpendingLimit, User
from web.services.imports import import_payment
from web.services.refunds import (
    FormCheck,
    RefundDraft,
    SubmitOutcome,
    new_form,
    submit_refund,
)

NOTIFY_URL = (
    "http://127.0.0.1:9/webhooks/antom"  # nothing listens: notifications are not under test
)


def _pg_conninfo(url: str) -> str:
    rest = url.partition("://")[2]
    return f"postgresql://{rest}"


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str]:
    """One scratch PostgreSQL database for this session's workflow tests (async URL)."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    name = f"workflow_{uuid.uuid4().hex[:12]}"
    conninfo = _pg_conninfo(server)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = conninfo.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    schema = sa.create_engine(url)
    create_schema_sync(schema)
    schema.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    name="desk_engine",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def fx_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The app's engine (web.db.make_engine) on an empty schema, per test."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'desk.sqlite3'}")
        async with engine.begin() as conn:
            await create_schema(conn)
    else:
        engine = make_engine(request.getfixturevalue("_pg_database"))
        # DELETE beats TRUNCATE on a handful of rows (no new files, no fsync).
        async with engine.begin() as conn:
            await empty_schema(conn)
    try:
        yield engine
    finally:
        await engine.dispose()


def antom_client_for(sim: SimHandle, *, timeout: float = 5.0) -> AntomClient:
    return sim.antom_client(timeout=timeout)


@pytest.fixture(name="antom")
async def fx_antom(simulator: Any) -> AsyncIterator[AntomClient]:
    client = antom_client_for(simulator)
    yield client
    await client.aclose()


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Desk:
    """Helpers over one engine: users, payments, and reads of what was written."""

    engine: AsyncEngine

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    async def user(
        self, role: Role = Role.AGENT, limits: dict[str, int] | None = None, name: str = "Ana"
    ) -> User:
        async with self.session() as s:
            user = User(
                email=f"{uuid.uuid4().hex[:10]}@desk.test", name=name, role=role, password_hash="x"
            )
            s.add(user)
            await s.flush()
            assert user.id is not None
            for currency, max_minor in (limits or {}).items():
                s.add(SpendingLimit(user_id=user.id, currency=currency, max_single_minor=max_minor))
            await s.commit()
            return user

    async def payment(self, **kw: Any) -> Payment:
        """A Payment row written directly (for rules that need no Antom call)."""
        defaults: dict[str, Any] = {
            "payment_id": f"pay_{uuid.uuid4().hex[:16]}",
            "payment_request_id": f"req_{uuid.uuid4().hex[:16]}",
            "method": "ALIPAY_CN",
            "currency": "USD",
            "amount_minor": 10000,
            "captured_minor": kw.get("amount_minor", 10000),
            "status": "SUCCESS",
            "paid_at": now(),
        }
        async with self.session() as s:
            payment = Payment(**(defaults | kw))
            s.add(payment)
            await s.commit()
            return payment

    async def imported(self, antom: AntomClient, sim: Any, **kw: Any) -> Payment:
        """A payment made at the simulator and found through "Find a payment in Antom"."""
        created = sim.create_payment(**kw)
        async with self.session() as s:
            payment = await import_payment(s, antom, created["paymentId"])
            await s.commit()
            return payment

    async def get_payment(self, pk: int | None) -> Payment:
        async with self.session() as s:
            payment = await s.get(Payment, pk)
            assert payment is not None
            return payment

    async def refunds(self, payment_pk: int | None = None) -> list[Refund]:
        async with self.session() as s:
            query = select(Refund).order_by(Refund.id)  # type: ignore[arg-type]
            if payment_pk is not None:
                query = query.where(Refund.payment_pk == payment_pk)
            return list((await s.exec(query)).all())

    async def alerts(self) -> list[Alert]:
        async with self.session() as s:
            return list((await s.exec(select(Alert).order_by(col(Alert.id)))).all())

    async def events(self, refund_pk: int | None) -> list[RefundEvent]:
        async with self.session() as s:
            query = (
                select(RefundEvent)
                .where(RefundEvent.refund_pk == refund_pk)
                .order_by(RefundEvent.id)  # type: ignore[arg-type]
            )
            return list((await s.exec(query)).all())


async def rendered_form(desk: Desk, payment: Payment, user: User) -> tuple[RefundDraft, FormCheck]:
    """The refund form as the payment page renders it now for this agent."""
    async with desk.session() as s:
        fresh = await s.get(Payment, payment.id)
        assert fresh is not None
        return await new_form(s, fresh, user, now())


async def filled_form(desk: Desk, payment: Payment, user: User, **fill: str) -> RefundDraft:
    """The refund form as rendered now for this agent, with some fields typed in."""
    draft, _ = await rendered_form(desk, payment, user)
    return dataclasses.replace(draft, **fill)


async def submit(
    desk: Desk, antom: AntomClient, payment: Payment, user: User, draft: RefundDraft, **kw: Any
) -> SubmitOutcome:
    """submit_refund as the refund form's POST makes it."""
    assert payment.id is not None
    return await submit_refund(
        desk.engine,
        antom,
        payment_pk=payment.id,
        user=user,
        draft=draft,
        notify_url=NOTIFY_URL,
        now=now(),
        **kw,
    )


@pytest.fixture(name="desk")
def fx_desk(desk_engine: AsyncEngine) -> Desk:
    return Desk(desk_engine)


async def antom_refunds(antom: AntomClient, payment_id: str) -> list[dict[str, Any]]:
    """The refunds Antom (the simulator) holds for a payment, from inquiryPayment."""
    found: InquiryPaymentResult = await antom.inquiry_payment(payment_id=payment_id)
    assert found.found, found.error
    return [
        {
            "request_id": tx.transaction_request_id,
            "refund_id": tx.transaction_id,
            "status": tx.status,
            "minor": tx.amount.minor if tx.amount else None,
        }
        for tx in found.transactions
        if tx.type == "REFUND"
    ]


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    # Real-time business delays: an async refund stays PROCESSING for a nominal minute,
    # so a test decides when it settles (admin "settle") instead of racing the worker.
    return {"time_scale": 1.0}
