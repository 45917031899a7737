"""import_payment ("Find a payment in Antom") against the simulator's inquiryPayment."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from tests.services.conftest import Desk, now, rendered_form
from web.antom.client import AntomClient
from web.antom.messages import RefundRequest
from web.antom.money import Money
from web.models import EventSource, Payment, RefundStatus
from web.services.imports import AntomUnavailable, PaymentNotFound, import_payment
from web.services.refunds import check_draft, new_form


async def find(desk: Desk, antom: AntomClient, ident: str) -> Payment:
    async with desk.session() as s:
        payment = await import_payment(s, antom, ident)
        await s.commit()
        return payment


async def test_wallet_payment_by_payment_id_and_by_request_id(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    paid = (now() - timedelta(days=3)).replace(microsecond=0)
    made = simulator.create_payment(
        method="ALIPAY_CN", currency="JPY", amount_minor=12000, paid_at=paid
    )
    payment = await find(desk, antom, made["paymentId"])
    assert payment.payment_id == made["paymentId"]
    assert payment.payment_request_id == made["paymentRequestId"]
    assert (payment.method, payment.currency, payment.amount_minor) == ("ALIPAY_CN", "JPY", 12000)
    assert payment.captured_minor == 12000 and payment.status == "SUCCESS"
    assert payment.paid_at == paid

    again = await find(desk, antom, f"  {made['paymentRequestId']} ")
    assert again.id == payment.id
    assert len(await desk.refunds()) == 0


async def test_card_captured_amount_comes_from_captures(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    made = simulator.create_payment(method="CARD", amount_minor=20000, captured=False)
    payment = await find(desk, antom, made["paymentId"])
    assert payment.captured_minor == 0
    user = await desk.user(limits={"USD": 10**9})
    _, check = await rendered_form(desk, payment, user)
    assert check.errors["payment"] == ["The payment is authorised but not captured"]

    simulator.admin_post(f"payments/{made['paymentId']}/capture", {"amountMinor": 15000})
    payment = await find(desk, antom, made["paymentId"])
    assert payment.captured_minor == 15000


async def test_auto_captured_card_payment_is_refundable_in_full(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    made = simulator.create_payment(method="CARD", currency="EUR", amount_minor=21999)
    payment = await find(desk, antom, made["paymentId"])
    assert payment.captured_minor == 21999
    captures = simulator.admin_get(f"payments/{made['paymentId']}")["captures"]
    assert [c["amountMinor"] for c in captures] == [21999]


async def test_unknown_payment_is_a_clear_error(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    with pytest.raises(
        PaymentNotFound, match="Antom has no payment with the id or request id 'nope-123'"
    ):
        await find(desk, antom, "nope-123")
    with pytest.raises(PaymentNotFound, match="Enter an Antom payment id"):
        await find(desk, antom, "   ")


async def test_antom_not_answering_is_not_not_found(desk: Desk, simulator: Any) -> None:
    from tests.services.conftest import antom_client_for

    made = simulator.create_payment()
    simulator.admin_post("faults", {"http5xx": 1.0})
    antom = antom_client_for(simulator)
    try:
        with pytest.raises(AntomUnavailable, match="try again"):
            await find(desk, antom, made["paymentId"])
    finally:
        simulator.admin_post("faults", {"http5xx": 0.0})
        await antom.aclose()


async def test_refunds_made_outside_the_desk_are_imported_once(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    made = simulator.create_payment(method="ALIPAY_CN", amount_minor=10000)
    # A refund made in the "Antom Dashboard": the desk never saw it.
    outside = await antom.refund(
        RefundRequest(
            refund_request_id="dashboard-refund-1",
            payment_id=made["paymentId"],
            amount=Money(2500, "USD"),
        )
    )
    assert outside.refund_id

    payment = await find(desk, antom, made["paymentId"])
    (refund,) = await desk.refunds(payment.id)
    assert refund.external and refund.status == RefundStatus.SUCCEEDED
    assert refund.refund_request_id == "dashboard-refund-1"
    assert refund.refund_id == outside.refund_id and refund.amount_minor == 2500
    assert (payment.refunded_minor, payment.reserved_minor, payment.refund_count) == (2500, 0, 1)
    # Booked as found (held), then moved to what Antom's record says: both by reconciliation.
    booked, settled = await desk.events(refund.id)
    assert {booked.source, settled.source} == {EventSource.RECONCILIATION}
    assert "made outside the desk" in booked.summary and booked.to_status == "processing"
    assert (settled.from_status, settled.to_status) == ("processing", "succeeded")

    # Finding it again changes nothing, and the form offers only what is left.
    payment = await find(desk, antom, made["paymentId"])
    assert len(await desk.refunds(payment.id)) == 1
    assert payment.refunded_minor == 2500
    user = await desk.user(limits={"USD": 10**9})
    async with desk.session() as s:
        row = await s.get(Payment, payment.id)
        assert row is not None
        draft, _ = await new_form(s, row, user, now())
        assert draft.amount_text == "75.00"
        over = dataclasses.replace(draft, amount_text="80.00", reason="other", note="testing it")
        check = await check_draft(s, row, user, over, now())
    assert check.errors["amount"] == ["Only $75.00 is still refundable"]


async def test_settled_desk_refund_is_reconciled_from_the_payment_record(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    from tests.services.test_ledger import processing_refund

    payment, refund, _ = await processing_refund(desk, antom, simulator)
    on_antom = simulator.admin_get(f"refunds?payment_id={payment.payment_id}")
    (sim_refund,) = on_antom
    simulator.admin_post(f"refunds/{sim_refund['refundId']}/settle", {"outcome": "SUCCESS"})

    payment = await find(desk, antom, payment.payment_id)
    (row,) = await desk.refunds(payment.id)
    assert row.id == refund.id and not row.external
    assert row.status == RefundStatus.SUCCEEDED
    assert row.refund_id == sim_refund["refundId"]
    assert (payment.refunded_minor, payment.reserved_minor, payment.refund_count) == (10000, 0, 1)
    last = (await desk.events(refund.id))[-1]
    assert (last.source, last.to_status) == (EventSource.RECONCILIATION, RefundStatus.SUCCEEDED)
