"""Status tests: webhooks, the poller and live badges, over real HTTP.

Helpers here sign notifications the way Antom does (``signed``) and write payments and
refunds straight to the desk's database in the state a test starts from.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.support import keys
from tests.support.simulator import SimHandle
from web.antom import signing
from web.antom.messages import Answer
from web.db import session_scope
from web.models import (
    EventSource,
    Payment,
    Refund,
    RefundEvent,
    RefundStatus,
    WebhookEvent,
    utcnow,
)
from web.rules.outcomes import Kind, Observation, Verdict
from web.services import ledger
from web.settings import Settings

CLIENT_ID = "TEST_DESK_CLIENT"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim(**config): SimConfig overrides for this test")


_seq = itertools.count(1)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    """Webhooks verified with the test Antom key; every test runs on SQLite and PostgreSQL.

    The gateway points at a closed port: these tests never call Antom, and no poller
    loop runs in the app (it would poll an Antom that is not there).
    """
    return make_settings(
        database_url=db_url,
        poller_enabled=False,
        antom_gateway_url="http://127.0.0.1:9",
        antom_client_id=CLIENT_ID,
        antom_merchant_private_key=keys.MERCHANT_PRIVATE_PEM,
        antom_public_keys=(keys.ANTOM_PUBLIC_PEM,),
    )


def signed(
    body: bytes | dict[str, Any],
    *,
    path: str = "/webhooks/antom",
    client_id: str = CLIENT_ID,
    request_time: str | None = None,
    private_pem: str = keys.ANTOM_PRIVATE_PEM,
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a notification signed like Antom signs one."""
    import json

    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request_time = request_time or str(int(time.time() * 1000))
    value = signing.sign(
        keys.private_key(private_pem), uri=path, client_id=client_id, time=request_time, body=raw
    )
    headers = {
        "content-type": "application/json; charset=UTF-8",
        "client-id": client_id,
        "request-time": request_time,
        "signature": signing.signature_header(value),
    }
    return raw, headers


def refund_result(refund: Refund | None = None, **fields: Any) -> dict[str, Any]:
    status = fields.pop("status", "SUCCESS")
    body: dict[str, Any] = {
        "notifyType": "REFUND_RESULT",
        "result": {
            "resultCode": "SUCCESS" if status == "SUCCESS" else "REFUND_FAIL",
            "resultStatus": "S" if status == "SUCCESS" else "F",
            "resultMessage": "success" if status == "SUCCESS" else "failed",
        },
        "refundStatus": status,
        "refundTime": "2026-11-25T12:00:00+08:00",
    }
    if refund is not None:
        body |= {
            "refundRequestId": refund.refund_request_id,
            "refundId": f"antom-{refund.refund_request_id}",
            "refundAmount": {"currency": refund.currency, "value": str(refund.amount_minor)},
        }
    body |= fields
    return body


async def make_payment(
    engine: AsyncEngine,
    *,
    amount_minor: int = 10_000,
    currency: str = "USD",
    method: str = "ALIPAY_CN",
    **extra: Any,
) -> Payment:
    n = next(_seq)
    async with session_scope(engine) as session:
        payment = Payment(
            payment_id=f"pay-{uuid.uuid4().hex[:16]}",
            payment_request_id=f"preq-{n}-{uuid.uuid4().hex[:8]}",
            method=method,
            currency=currency,
            amount_minor=amount_minor,
            captured_minor=amount_minor,
            status="SUCCESS",
            paid_at=utcnow(),
            **extra,
        )
        session.add(payment)
    return payment


async def desk_payment(engine: AsyncEngine, sim: SimHandle, **kw: Any) -> Payment:
    """A payment made at the simulator and known to the desk.

    A simulator with a Dashboard notification address also tells the desk about the new
    payment (PAYMENT_RESULT); when that notification got there first, its row is the one.
    """
    made = sim.create_payment(**kw)
    try:
        return await _insert_payment(engine, made, **kw)
    except IntegrityError:
        async with session_scope(engine) as session:
            found = await session.exec(
                select(Payment).where(Payment.payment_id == made["paymentId"])
            )
            return found.one()


async def _insert_payment(engine: AsyncEngine, made: dict[str, Any], **kw: Any) -> Payment:
    async with session_scope(engine) as session:
        payment = Payment(
            payment_id=made["paymentId"],
            payment_request_id=made["paymentRequestId"],
            method=kw.get("method", "ALIPAY_CN"),
            currency=kw.get("currency", "USD"),
            amount_minor=kw.get("amount_minor", 10_000),
            captured_minor=kw.get("amount_minor", 10_000),
            status="SUCCESS",
            paid_at=utcnow(),
        )
        session.add(payment)
    return payment


async def make_refund(
    engine: AsyncEngine,
    payment: Payment,
    *,
    amount_minor: int = 2_500,
    status: RefundStatus = RefundStatus.PROCESSING,
    **extra: Any,
) -> Refund:
    """A desk refund in flight: the amount is reserved on the payment, as the desk does."""
    async with session_scope(engine) as session:
        refund = Refund(
            refund_request_id=f"rr-{uuid.uuid4().hex}",
            payment_pk=payment.id or 0,
            currency=payment.currency,
            amount_minor=amount_minor,
            status=status,
            reason="customer_request",
            reason_text="Customer request",
            **extra,
        )
        session.add(refund)
        await session.exec(
            sa.update(Payment)
            .where(col(Payment.id) == payment.id)
            .values(
                reserved_minor=col(Payment.reserved_minor) + amount_minor,
                refund_count=col(Payment.refund_count) + 1,
            )
        )
    return refund


async def settle(
    engine: AsyncEngine,
    refund: Refund,
    answer: Answer = Answer.SUCCESS,
    source: EventSource = EventSource.POLLER,
) -> Verdict:
    """Record an inquiry's ``answer`` about ``refund`` through the ledger, as the poller
    would, and commit."""
    assert refund.id is not None
    async with session_scope(engine) as session:
        verdict, _ = await ledger.observe(
            session, refund.id, Observation(Kind.INQUIRY, answer), cause=ledger.Cause(source)
        )
    return verdict


async def reload(engine: AsyncEngine, model: Any, pk: Any) -> Any:
    async with session_scope(engine) as session:
        return await session.get(model, pk)


async def count(engine: AsyncEngine, model: Any, *where: Any) -> int:
    async with session_scope(engine) as session:
        stmt = select(sa.func.count()).select_from(model)
        for clause in where:
            stmt = stmt.where(clause)
        return int((await session.exec(stmt)).one())


async def events_of(engine: AsyncEngine, refund: Refund) -> list[RefundEvent]:
    async with session_scope(engine) as session:
        rows = await session.exec(
            select(RefundEvent)
            .where(RefundEvent.refund_pk == refund.id)
            .order_by(col(RefundEvent.id))
        )
        return list(rows.all())


async def inbox(engine: AsyncEngine) -> list[WebhookEvent]:
    async with session_scope(engine) as session:
        return list((await session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id)))).all())
