"""Notifications that arrive before their payment are kept and applied when it appears
(issue 7, defect 3: a card's CAPTURE_RESULT often beats its PAYMENT_RESULT)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.status.conftest import signed
from web.db import session_scope
from web.models import Payment, Refund, RefundStatus

OK = {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}


def card_payment(payment_id: str, minor: int = 5_000) -> dict[str, Any]:
    return {
        "notifyType": "PAYMENT_RESULT",
        "result": OK,
        "paymentId": payment_id,
        "paymentRequestId": f"order-{payment_id}",
        "paymentAmount": {"currency": "USD", "value": str(minor)},
        "paymentMethodType": "CARD",
        "paymentCreateTime": "2026-11-25T10:00:00+00:00",
        "paymentTime": "2026-11-25T10:00:05+00:00",
    }


def capture(payment_id: str, capture_id: str, minor: int) -> dict[str, Any]:
    return {
        "notifyType": "CAPTURE_RESULT",
        "result": OK,
        "paymentId": payment_id,
        "captureId": capture_id,
        "captureRequestId": f"req-{capture_id}",
        "captureAmount": {"currency": "USD", "value": str(minor)},
    }


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    raw, headers = signed(body)
    response = await client.post("/webhooks/antom", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def payment_row(engine: AsyncEngine, payment_id: str) -> Payment:
    async with session_scope(engine) as session:
        return (await session.exec(select(Payment).where(Payment.payment_id == payment_id))).one()


async def test_a_capture_before_its_payment_is_applied_when_the_payment_arrives(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await post(client, capture("pay-early-1", "cap-1", 3_000))
    await post(client, capture("pay-early-1", "cap-2", 2_000))
    await post(client, capture("pay-early-1", "cap-2", 2_000))  # a re-delivery
    await post(client, card_payment("pay-early-1"))

    payment = await payment_row(engine, "pay-early-1")
    assert (payment.status, payment.amount_minor, payment.captured_minor) == (
        "SUCCESS",
        5_000,
        5_000,
    )
    # Nothing is left waiting, and a late re-delivery still changes nothing.
    await post(client, capture("pay-early-1", "cap-1", 3_000))
    assert (await payment_row(engine, "pay-early-1")).captured_minor == 5_000


async def test_a_dispute_and_an_outside_refund_before_the_payment_are_applied_too(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await post(client, capture("pay-early-2", "cap-1", 5_000))
    await post(
        client,
        {
            "notifyType": "REFUND_RESULT",
            "result": OK,
            "refundRequestId": "dashboard-1",
            "refundId": "ref-dashboard-1",
            "paymentId": "pay-early-2",
            "refundStatus": "SUCCESS",
            "refundAmount": {"currency": "USD", "value": "1000"},
            "refundTime": "2026-11-25T11:00:00+00:00",
        },
    )
    await post(
        client,
        {
            "paymentId": "pay-early-2",
            "paymentRequestId": "order-pay-early-2",
            "disputeId": "d-early",
            "disputeNotificationType": "DISPUTE_CREATED",
        },
    )
    await post(client, card_payment("pay-early-2"))

    payment = await payment_row(engine, "pay-early-2")
    assert payment.captured_minor == 5_000
    assert payment.dispute_open is True
    assert (payment.refunded_minor, payment.reserved_minor, payment.refund_count) == (1_000, 0, 1)
    async with session_scope(engine) as session:
        (refund,) = (await session.exec(select(Refund))).all()
    assert refund.external and refund.status == RefundStatus.SUCCEEDED
