"""The ledger records answers from Antom: forward only, duplicates are no-ops, two writers
cannot both win, and the money moves with the status in the same transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.services.conftest import Desk, filled_form, submit
from web.antom.client import AntomClient
from web.antom.messages import Answer
from web.antom.money import Money
from web.models import AlertKind, EventSource, Payment, Refund, RefundStatus, User
from web.rules.lifecycle import RELEASES, TRANSITIONS, Effect
from web.rules.outcomes import Kind, Observation
from web.rules.worklists import Queue, queue_of
from web.services import ledger

SAYS = {
    RefundStatus.SUCCEEDED: Answer.SUCCESS,
    RefundStatus.FAILED: Answer.FAIL,
    RefundStatus.PROCESSING: Answer.IN_PROCESS,
}


async def processing_refund(
    desk: Desk, antom: AntomClient, simulator: Any, amount_text: str = "100.00"
) -> tuple[Payment, Refund, User]:
    """A refund Antom accepted but has not settled (GCash answers REFUND_IN_PROCESS)."""
    user = await desk.user(limits={"PHP": 10**9})
    payment = await desk.imported(
        antom, simulator, method="GCASH", currency="PHP", amount_minor=50000
    )
    draft = await filled_form(desk, payment, user, amount_text=amount_text, reason="service_issue")
    outcome = await submit(desk, antom, payment, user, draft)
    assert outcome.refund is not None
    assert outcome.refund.status is RefundStatus.PROCESSING
    return payment, outcome.refund, user


async def apply(
    desk: Desk,
    refund: Refund,
    status: RefundStatus,
    *,
    source: EventSource = EventSource.WEBHOOK,
    kind: Kind = Kind.INQUIRY,
    **seen: Any,
) -> bool:
    """Antom says ``status`` about ``refund`` (an inquiry unless ``kind`` says otherwise);
    True when that moved the refund."""
    assert refund.id is not None
    async with desk.session() as s:
        verdict, fresh = await ledger.observe(
            s, refund.id, Observation(kind, SAYS[status], **seen), cause=ledger.Cause(source)
        )
        await s.commit()
    for name in ("status", "refund_id", "refunded_at", "next_check_at"):
        setattr(refund, name, getattr(fresh, name))
    return verdict.to is not None


async def money(desk: Desk, payment: Payment) -> tuple[int, int, int]:
    p = await desk.get_payment(payment.id)
    return p.refunded_minor, p.reserved_minor, p.refund_count


async def test_success_moves_reserved_to_refunded_once(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    assert await money(desk, payment) == (0, 10000, 1)

    antoms_id = refund.refund_id  # from the REFUND_IN_PROCESS answer
    assert antoms_id
    assert await apply(desk, refund, RefundStatus.SUCCEEDED, refund_id="R-1", code="SUCCESS")
    assert refund.status is RefundStatus.SUCCEEDED  # the caller's object follows
    assert refund.refund_id == antoms_id and refund.refunded_at is not None  # never replaced
    assert refund.next_check_at is None
    assert await money(desk, payment) == (10000, 0, 1)

    # The same notification again, a late poller PROCESSING, a contradicting FAIL: no-ops.
    assert not await apply(desk, refund, RefundStatus.SUCCEEDED, refund_id=antoms_id)
    assert not await apply(desk, refund, RefundStatus.PROCESSING, source=EventSource.POLLER)
    assert not await apply(desk, refund, RefundStatus.FAILED, code="PROCESS_FAIL")
    assert await money(desk, payment) == (10000, 0, 1)
    # ... the contradiction is raised to a lead, never applied.
    assert [a.kind for a in await desk.alerts()] == [AlertKind.CONTRADICTION]
    events = await desk.events(refund.id)
    assert [(e.source, e.from_status, e.to_status) for e in events if e.to_status][-1] == (
        EventSource.WEBHOOK,
        RefundStatus.PROCESSING,
        RefundStatus.SUCCEEDED,
    )
    # requested, processing, succeeded, and the contradiction (no status change)
    assert [e.to_status for e in events] == ["pending", "processing", "succeeded", None]


async def test_failure_releases_the_reservation_and_the_refund_count(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    assert await apply(desk, refund, RefundStatus.FAILED, code="PROCESS_FAIL")
    assert await money(desk, payment) == (0, 0, 0)
    assert not await apply(desk, refund, RefundStatus.SUCCEEDED)
    assert await money(desk, payment) == (0, 0, 0)


def test_pending_is_reached_only_by_approval_and_final_is_final() -> None:
    assert [s for s, moves in TRANSITIONS.items() if RefundStatus.PENDING in moves] == [
        RefundStatus.AWAITING_APPROVAL
    ]
    assert all(RefundStatus.AWAITING_APPROVAL not in moves for moves in TRANSITIONS.values())
    for final in (RefundStatus.FAILED, RefundStatus.REJECTED, RefundStatus.REVERSED):
        assert TRANSITIONS[final] == {}
    # A succeeded refund moves once more, only when the settlement report reverses it,
    # and its money stays booked: the reversed amount is not refundable again by itself.
    assert TRANSITIONS[RefundStatus.SUCCEEDED] == {RefundStatus.REVERSED: Effect.KEEP}
    assert RELEASES == {RefundStatus.REVERSED: Effect.UNBOOK}


async def test_a_reversal_keeps_the_money_out_of_reach_until_a_lead_releases_it(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, lead = await processing_refund(desk, antom, simulator)
    assert refund.id is not None
    assert await apply(desk, refund, RefundStatus.SUCCEEDED)
    assert await money(desk, payment) == (10000, 0, 1)
    at = datetime(2026, 11, 25, 20, 36, tzinfo=UTC)
    async with desk.session() as s:
        cause = ledger.Cause(EventSource.RECONCILIATION, request_id="req-1", actor_id=lead.id)
        reversed_ = await ledger.reverse(
            s, refund.id, returned_minor=10000, reversed_at=at, cause=cause, summary="reversed"
        )
        assert reversed_ is not None and reversed_.status is RefundStatus.REVERSED
        # once: a second reversal finds it reversed already
        again = await ledger.reverse(
            s, refund.id, returned_minor=10000, reversed_at=at, cause=cause, summary="again"
        )
        assert again is None
        await s.commit()
    assert await money(desk, payment) == (10000, 0, 1)  # neither failed nor refundable
    # no answer from Antom moves it back (inquiry still says SUCCESS after a reversal)
    assert not await apply(desk, refund, RefundStatus.SUCCEEDED)
    assert not await apply(desk, refund, RefundStatus.FAILED)
    assert (await desk.refunds(payment.id))[0].status == RefundStatus.REVERSED

    async with desk.session() as s:
        cause = ledger.Cause(EventSource.AGENT, request_id="req-2", actor_id=lead.id)
        released = await ledger.release_reversal(
            s, refund.id, cause=cause, note="Customer confirmed", summary="released"
        )
        assert released is not None
        assert released.status is RefundStatus.REVERSED  # it was reversed all the same
        assert released.reversal_released_by == lead.id
        assert released.reversal_note == "Customer confirmed"
        twice = await ledger.release_reversal(s, refund.id, cause=cause, note="", summary="x")
        assert twice is None
        await s.commit()
    assert await money(desk, payment) == (0, 0, 0)
    events = [e for e in await desk.events(refund.id) if e.request_id in ("req-1", "req-2")]
    assert [(e.from_status, e.to_status, e.request_id) for e in events] == [
        ("succeeded", "reversed", "req-1"),
        (None, None, "req-2"),
    ]
    assert events[0].detail is not None and events[0].detail["returned_minor"] == 10000


async def test_a_failure_notification_holds_the_money_until_an_inquiry_confirms(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    # Antom's FAIL notification: recorded, money still held, an inquiry asked for soon.
    assert not await apply(desk, refund, RefundStatus.FAILED, kind=Kind.NOTIFICATION)
    assert refund.status is RefundStatus.PROCESSING
    assert await money(desk, payment) == (0, 10000, 1)
    assert refund.next_check_at is not None
    # The inquiry confirms it: now the money is released.
    assert await apply(desk, refund, RefundStatus.FAILED, source=EventSource.POLLER)
    assert await money(desk, payment) == (0, 0, 0)


async def test_an_amount_antom_states_differently_is_never_booked(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    other = Money(9999, "PHP")
    assert not await apply(desk, refund, RefundStatus.SUCCEEDED, amount=other)
    assert refund.status is RefundStatus.PROCESSING
    assert await money(desk, payment) == (0, 10000, 1)
    assert [a.kind for a in await desk.alerts()] == [AlertKind.MISMATCH]


async def test_webhook_and_poller_racing_apply_exactly_one(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    # Separate copies of the row, as two processes would each have loaded it.
    copies = [await desk.refunds(payment.id) for _ in range(6)]
    targets = [RefundStatus.SUCCEEDED, RefundStatus.FAILED] * 3
    results = await asyncio.gather(
        *(
            apply(desk, rows[0], status, source=EventSource.POLLER)
            for rows, status in zip(copies, targets, strict=True)
        )
    )
    assert results.count(True) == 1
    winner = targets[results.index(True)]
    expected = (10000, 0, 1) if winner is RefundStatus.SUCCEEDED else (0, 0, 0)
    assert await money(desk, payment) == expected
    (final,) = await desk.refunds(payment.id)
    assert final.status == winner
    assert [e.to_status for e in await desk.events(refund.id)].count(winner) == 1


async def test_a_failed_refund_goes_on_the_failed_worklist_in_the_same_transaction(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    assert await desk.alerts() == []
    assert await apply(desk, refund, RefundStatus.FAILED, code="PROCESS_FAIL")
    assert await money(desk, payment) == (0, 0, 0)
    [item] = await desk.alerts()
    assert (item.kind, item.refund_pk, item.payment_pk) == (
        AlertKind.REFUND_FAILED,
        refund.id,
        payment.id,
    )
    assert queue_of(item.kind) is Queue.FAILED
    assert "failed (PROCESS_FAIL)" in item.message and item.resolved_at is None
    # A late duplicate of the failure moves nothing and raises nothing more.
    assert not await apply(desk, refund, RefundStatus.FAILED, code="PROCESS_FAIL")
    assert len(await desk.alerts()) == 1


async def test_a_failure_rolled_back_leaves_no_item(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    _payment, refund, _ = await processing_refund(desk, antom, simulator)
    assert refund.id is not None
    async with desk.session() as s:
        verdict, _fresh = await ledger.observe(
            s,
            refund.id,
            Observation(Kind.INQUIRY, Answer.FAIL, code="PROCESS_FAIL"),
            cause=ledger.Cause(EventSource.POLLER),
        )
        assert verdict.to is RefundStatus.FAILED
        await s.rollback()
    assert await desk.alerts() == []
    assert (await desk.refunds(refund.payment_pk))[0].status == RefundStatus.PROCESSING
