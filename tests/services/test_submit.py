"""submit_refund over real HTTP against the simulator: every outcome, exactly once.

The simulator's magic amounts (web/sim/faults.py) choose the fault: an amount ending in
666NN (in minor units) triggers fault NN; faults 01–06 fire on the first request with
a given refundRequestId only, like a transient outage.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.services.conftest import (
    NOTIFY_URL,
    Desk,
    antom_client_for,
    antom_refunds,
    filled_form,
    now,
    submit,
)
from web.antom.client import AntomClient
from web.antom.keys import generate_private_key, load_private_key
from web.antom.money import format_plain
from web.models import EventSource, Payment, RefundStatus, User
from web.services.refunds import RefundDraft
from web.sim.faults import Fault, magic_amount

UNLIMITED = {"USD": 10**9, "JPY": 10**9}
BIG = 1_000_000  # $10,000.00: room for magic amounts ($666.NN, $1,666.NN, ...)


async def form(desk: Desk, payment: Payment, user: User, **fill: str) -> RefundDraft:
    return await filled_form(desk, payment, user, **({"reason": "item_returned"} | fill))


def amount_text(fault: Fault, currency: str = "USD") -> str:
    return format_plain(magic_amount(fault, currency), currency)


async def exchanges(desk: Desk, refund_pk: int | None) -> list[dict[str, Any]]:
    """The Antom exchanges on a refund's timeline, oldest first."""
    assert refund_pk is not None
    events = await desk.events(refund_pk)
    return [e.detail["exchange"] for e in events if e.detail and "exchange" in e.detail]


async def test_success_books_the_money_and_records_the_exchange(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits=UNLIMITED, name="Ana")
    payment = await desk.imported(antom, simulator, amount_minor=10000)
    outcome = await submit(
        desk, antom, payment, user, await form(desk, payment, user, amount_text="12.00")
    )

    assert outcome.check.ok
    assert outcome.message == "Refund of $12.00 succeeded"
    refund = outcome.refund
    assert refund is not None
    assert refund.status is RefundStatus.SUCCEEDED
    assert refund.refund_id and refund.refunded_at is not None
    assert refund.refund_request_id.startswith("rd_") and len(refund.refund_request_id) <= 64
    assert refund.result_code == "SUCCESS" and refund.attempts == 1
    assert refund.agent_id == user.id and refund.reason == "item_returned"
    after = await desk.get_payment(payment.id)
    assert (after.refunded_minor, after.reserved_minor, after.refund_count) == (1200, 0, 1)

    events = await desk.events(refund.id)
    assert [(e.source, e.from_status, e.to_status) for e in events] == [
        (EventSource.AGENT, None, RefundStatus.PENDING),
        (EventSource.ANTOM_RESPONSE, RefundStatus.PENDING, RefundStatus.SUCCEEDED),
    ]
    assert events[0].actor_id == user.id and "Ana requested a refund of $12.00" in events[0].summary
    (exchange,) = await exchanges(desk, refund.id)
    assert exchange["request_body"]["refundRequestId"] == refund.refund_request_id
    assert exchange["request_body"]["refundAmount"] == {"currency": "USD", "value": "1200"}
    assert exchange["request_body"]["refundReason"] == "Item returned"
    assert exchange["request_body"]["refundNotifyUrl"] == NOTIFY_URL
    assert exchange["status"] == 200
    assert exchange["response_body"]["result"]["resultCode"] == "SUCCESS"
    # The signature never reaches the timeline.
    for headers in (exchange["request_headers"], exchange["response_headers"]):
        signature = {k.lower(): v for k, v in headers.items()}["signature"]
        assert signature.endswith("signature=[redacted]"), signature

    assert await antom_refunds(antom, payment.payment_id) == [
        {
            "request_id": refund.refund_request_id,
            "refund_id": refund.refund_id,
            "status": "SUCCESS",
            "minor": 1200,
        }
    ]


async def test_in_process_is_accepted_not_retried_and_stays_reserved(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits={"PHP": 10**9})
    # GCash refunds asynchronously: Antom answers REFUND_IN_PROCESS (U).
    payment = await desk.imported(
        antom, simulator, method="GCASH", currency="PHP", amount_minor=50000
    )
    outcome = await submit(
        desk, antom, payment, user, await form(desk, payment, user, amount_text="100.00")
    )

    refund = outcome.refund
    assert refund is not None
    assert refund.status is RefundStatus.PROCESSING
    assert refund.result_code == "REFUND_IN_PROCESS" and refund.attempts == 1
    assert refund.next_check_at is not None and refund.next_check_at > now()
    assert outcome.message.startswith(
        "Refund of ₱100.00 is processing at Antom. Do not refund again"
    )
    after = await desk.get_payment(payment.id)
    assert (after.refunded_minor, after.reserved_minor, after.refund_count) == (0, 10000, 1)
    assert len(await exchanges(desk, refund.id)) == 1
    assert [r["status"] for r in await antom_refunds(antom, payment.payment_id)] == ["PROCESSING"]


async def test_definite_failure_releases_the_reservation(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.imported(antom, simulator, amount_minor=BIG)
    draft = await form(desk, payment, user, amount_text=amount_text(Fault.BALANCE_NOT_ENOUGH))
    outcome = await submit(desk, antom, payment, user, draft)

    refund = outcome.refund
    assert refund is not None
    assert refund.status is RefundStatus.FAILED
    assert refund.result_code == "MERCHANT_BALANCE_NOT_ENOUGH" and refund.attempts == 1
    assert outcome.message == (
        "Refund of $666.09 failed: The merchant balance at Antom is too low to fund the "
        "refund; top it up and try again."
    )
    after = await desk.get_payment(payment.id)
    assert (after.refunded_minor, after.reserved_minor, after.refund_count) == (0, 0, 0)
    assert await antom_refunds(antom, payment.payment_id) == []
    # A new attempt is a new refund with a new id, through a new form.
    again = await submit(
        desk, antom, payment, user, await form(desk, payment, user, amount_text="5.00")
    )
    assert again.refund is not None and again.refund.status is RefundStatus.SUCCEEDED
    assert again.refund.refund_request_id != refund.refund_request_id


async def test_transient_answers_are_retried_with_the_same_request_id(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.imported(antom, simulator, amount_minor=BIG * 10)
    cases = {
        Fault.UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
        Fault.RATE_LIMITED: "REQUEST_TRAFFIC_EXCEED_LIMIT",
        Fault.HTTP_500: None,  # an HTML 500: no result code
        Fault.HTTP_500_AFTER_COMMIT: None,  # Antom refunded, then failed to answer
        Fault.UNKNOWN_AFTER_COMMIT: "UNKNOWN_EXCEPTION",
    }
    booked = 0
    for fault, first_code in cases.items():
        draft = await form(desk, payment, user, amount_text=amount_text(fault))
        outcome = await submit(desk, antom, payment, user, draft, retry_delays=(0.05, 0.05))
        refund = outcome.refund
        assert refund is not None, fault
        assert refund.status is RefundStatus.SUCCEEDED, (fault, outcome.message)
        assert refund.attempts == 2, fault
        booked += refund.amount_minor
        first, second = await exchanges(desk, refund.id)
        assert first["request_body"] == second["request_body"], fault
        assert first["request_body"]["refundRequestId"] == refund.refund_request_id
        if first_code is None:
            assert first["status"] == 500, fault
        else:
            assert first["response_body"]["result"]["resultCode"] == first_code, fault
        events = await desk.events(refund.id)
        assert [e.to_status for e in events] == [
            RefundStatus.PENDING,
            RefundStatus.PROCESSING,  # the unknown answer: money kept reserved
            RefundStatus.SUCCEEDED,
        ], fault
        assert "retrying with the same refund request id" in events[1].summary
        on_antom = [
            r
            for r in await antom_refunds(antom, payment.payment_id)
            if r["request_id"] == refund.refund_request_id
        ]
        assert len(on_antom) == 1 and on_antom[0]["status"] == "SUCCESS", fault

    after = await desk.get_payment(payment.id)
    assert (after.refunded_minor, after.reserved_minor) == (booked, 0)


async def test_unknown_outcome_stays_processing_with_money_reserved(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.imported(antom, simulator, amount_minor=BIG)
    draft = await form(desk, payment, user, amount_text=amount_text(Fault.UNKNOWN_EXCEPTION))
    outcome = await submit(desk, antom, payment, user, draft, retry_delays=())

    refund = outcome.refund
    assert refund is not None
    assert refund.status is RefundStatus.PROCESSING, outcome.message
    assert refund.result_code == "UNKNOWN_EXCEPTION"
    assert refund.next_check_at is not None
    after = await desk.get_payment(payment.id)
    assert (after.reserved_minor, after.refund_count) == (refund.amount_minor, 1)
    assert "Do not refund again" in outcome.message


async def test_every_attempt_5xx_leaves_it_processing_never_failed(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.imported(antom, simulator, amount_minor=10000)
    simulator.admin_post("faults", {"http5xx": 1.0})
    try:
        draft = await form(desk, payment, user, amount_text="10.00")
        outcome = await submit(desk, antom, payment, user, draft, retry_delays=(0.05, 0.05))
    finally:
        simulator.admin_post("faults", {"http5xx": 0.0})

    refund = outcome.refund
    assert refund is not None
    assert refund.status is RefundStatus.PROCESSING
    assert refund.attempts == 3
    sent = await exchanges(desk, refund.id)
    assert [x["status"] for x in sent] == [500, 500, 500]
    assert {x["request_body"]["refundRequestId"] for x in sent} == {refund.refund_request_id}
    after = await desk.get_payment(payment.id)
    assert (after.reserved_minor, after.refunded_minor) == (1000, 0)
    assert await antom_refunds(antom, payment.payment_id) == []


async def test_timeout_after_antom_committed(desk: Desk, simulator: Any) -> None:
    """The canonical case: Antom refunds, the answer never arrives, the retry learns S."""
    user = await desk.user(limits=UNLIMITED)
    antom = antom_client_for(simulator, timeout=0.5)
    try:
        payment = await desk.imported(antom, simulator, amount_minor=BIG)
        draft = await form(desk, payment, user, amount_text=amount_text(Fault.HANG_AFTER_COMMIT))
        outcome = await submit(desk, antom, payment, user, draft, retry_delays=(0.05,))
        refund = outcome.refund
        assert refund is not None
        assert refund.status is RefundStatus.SUCCEEDED, outcome.message
        first, second = await exchanges(desk, refund.id)
        assert first["status"] is None and "timeout" in first["error"]
        assert second["request_body"] == first["request_body"]
        on_antom = await antom_refunds(antom, payment.payment_id)
        assert [(r["request_id"], r["status"]) for r in on_antom] == [
            (refund.refund_request_id, "SUCCESS")
        ]
        after = await desk.get_payment(payment.id)
        assert (after.refunded_minor, after.reserved_minor) == (refund.amount_minor, 0)

        # Without a retry the same fault leaves the refund PROCESSING, money still held.
        draft = await form(
            desk,
            payment,
            user,
            amount_text=format_plain(
                magic_amount(Fault.HANG_AFTER_COMMIT, "USD", 100_000 + 1), "USD"
            ),
        )
        lost = await submit(desk, antom, payment, user, draft, retry_delays=())
        assert lost.refund is not None and lost.refund.status is RefundStatus.PROCESSING
        after = await desk.get_payment(payment.id)
        assert after.reserved_minor == lost.refund.amount_minor
    finally:
        await antom.aclose()


async def test_double_submit_of_one_form_makes_one_refund(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.imported(antom, simulator, amount_minor=10000)
    draft = await form(desk, payment, user, amount_text="25.00")

    first = await submit(desk, antom, payment, user, draft)
    second = await submit(desk, antom, payment, user, draft)
    assert first.refund is not None and second.refund is not None
    assert second.refund.id == first.refund.id
    assert second.message.startswith("This form was already submitted. Refund of $25.00 succeeded")

    # Two clicks at the same moment.
    draft = await form(desk, payment, user, amount_text="30.00")
    both = await asyncio.gather(*(submit(desk, antom, payment, user, draft) for _ in range(2)))
    ids = {o.refund.id for o in both if o.refund is not None}
    assert len(ids) == 1, [o.message for o in both]

    refunds = await desk.refunds(payment.id)
    assert [r.amount_minor for r in refunds] == [2500, 3000]
    on_antom = await antom_refunds(antom, payment.payment_id)
    assert sorted(r["request_id"] for r in on_antom) == sorted(r.refund_request_id for r in refunds)
    after = await desk.get_payment(payment.id)
    assert (after.refunded_minor, after.reserved_minor, after.refund_count) == (5500, 0, 2)


async def test_stale_form_is_refused_and_writes_nothing(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    user = await desk.user(limits=UNLIMITED)
    other = await desk.user(limits=UNLIMITED, name="Bo")
    payment = await desk.imported(antom, simulator, amount_minor=10000)
    mine = await form(desk, payment, user, amount_text="30.00")
    theirs = await form(desk, payment, other, amount_text="60.00")
    assert (await submit(desk, antom, payment, other, theirs)).refund is not None

    outcome = await submit(desk, antom, payment, user, mine)
    assert outcome.refund is None
    assert outcome.message == "Nothing was refunded"
    assert outcome.check.errors["form"] == [
        "This payment changed while you were editing: $40.00 is now refundable. "
        "Check the amount and submit again."
    ]
    assert len(await desk.refunds(payment.id)) == 1
    assert len(await antom_refunds(antom, payment.payment_id)) == 1


async def test_refused_submit_writes_nothing_and_calls_nobody(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 5000})
    payment = await desk.imported(antom, simulator, amount_minor=10000)
    cases = {
        "amount": {"amount_text": "100.01"},  # over what the payment holds
        "reason": {"reason": ""},
        "note": {"reason": "other", "note": ""},
        "currency": {"currency": "JPY"},
    }
    for field, fill in cases.items():
        draft = await form(desk, payment, agent, **({"amount_text": "10.00"} | fill))
        outcome = await submit(desk, antom, payment, agent, draft)
        assert outcome.refund is None, field
        assert field in outcome.check.errors, (field, outcome.check.errors)
    assert await desk.refunds() == []
    after = await desk.get_payment(payment.id)
    assert (after.reserved_minor, after.refunded_minor, after.refund_count) == (0, 0, 0)
    assert await antom_refunds(antom, payment.payment_id) == []


async def test_untrusted_answers_are_unknown_not_success(desk: Desk, simulator: Any) -> None:
    """Responses that do not verify against the configured Antom key prove nothing: the
    refund stays PROCESSING with its money held, though Antom did refund it (once)."""
    user = await desk.user(limits=UNLIMITED)
    trusting = antom_client_for(simulator)
    wrong_key = AntomClient(
        gateway_url=simulator.base_url,
        client_id=simulator.client_id,
        merchant_private_key=load_private_key(simulator.merchant_private_key_pem),
        antom_public_keys=[generate_private_key().public_key()],
    )
    try:
        payment = await desk.imported(trusting, simulator, amount_minor=10000)
        draft = await form(desk, payment, user, amount_text="20.00")
        outcome = await submit(desk, wrong_key, payment, user, draft, retry_delays=(0.05, 0.05))
        refund = outcome.refund
        assert refund is not None
        assert refund.status is RefundStatus.PROCESSING
        assert refund.attempts == 3 and refund.refund_id is None
        sent = await exchanges(desk, refund.id)
        assert {x["request_body"]["refundRequestId"] for x in sent} == {refund.refund_request_id}
        after = await desk.get_payment(payment.id)
        assert (after.refunded_minor, after.reserved_minor) == (0, 2000)
        on_antom = await antom_refunds(trusting, payment.payment_id)
        assert [(r["request_id"], r["status"]) for r in on_antom] == [
            (refund.refund_request_id, "SUCCESS")
        ]
    finally:
        await trusting.aclose()
        await wrong_key.aclose()
