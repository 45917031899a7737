"""apply_antom_status: forward only, duplicates are no-ops, two writers cannot both win,
and the money moves with the status in the same transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.workflow.conftest import Desk, filled_form, submit
from web.antom.client import AntomClient
from web.models import EventSource, Payment, Refund, RefundStatus, User
from web.services.refunds import apply_antom_status


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


async def apply(desk: Desk, refund: Refund, status: RefundStatus, **kw: Any) -> bool:
    async with desk.session() as s:
        kw.setdefault("source", EventSource.WEBHOOK)
        kw.setdefault("summary", f"test says {status}")
        applied = await apply_antom_status(s, refund, status, **kw)
        await s.commit()
        return applied


async def money(desk: Desk, payment: Payment) -> tuple[int, int, int]:
    p = await desk.get_payment(payment.id)
    return p.refunded_minor, p.reserved_minor, p.refund_count


async def test_success_moves_reserved_to_refunded_once(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    assert await money(desk, payment) == (0, 10000, 1)

    assert await apply(desk, refund, RefundStatus.SUCCEEDED, refund_id="R-1", result_code="SUCCESS")
    assert refund.status is RefundStatus.SUCCEEDED  # the caller's object follows
    assert refund.refund_id == "R-1" and refund.refunded_at is not None
    assert refund.next_check_at is None
    assert await money(desk, payment) == (10000, 0, 1)

    # The same notification again, a late poller PROCESSING, a contradicting FAIL: no-ops.
    assert not await apply(desk, refund, RefundStatus.SUCCEEDED, refund_id="R-1")
    assert not await apply(desk, refund, RefundStatus.PROCESSING, source=EventSource.POLLER)
    assert not await apply(desk, refund, RefundStatus.FAILED, result_code="PROCESS_FAIL")
    assert await money(desk, payment) == (10000, 0, 1)
    events = await desk.events(refund.id)
    assert [(e.source, e.from_status, e.to_status) for e in events][-1] == (
        EventSource.WEBHOOK,
        RefundStatus.PROCESSING,
        RefundStatus.SUCCEEDED,
    )
    assert len(events) == 3  # requested, processing, succeeded


async def test_failure_releases_the_reservation_and_the_refund_count(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment, refund, _ = await processing_refund(desk, antom, simulator)
    assert await apply(desk, refund, RefundStatus.FAILED, result_code="PROCESS_FAIL")
    assert await money(desk, payment) == (0, 0, 0)
    assert not await apply(desk, refund, RefundStatus.SUCCEEDED)
    assert await money(desk, payment) == (0, 0, 0)


async def test_pending_is_never_a_target(desk: Desk, antom: AntomClient, simulator: Any) -> None:
    _, refund, _ = await processing_refund(desk, antom, simulator)
    with pytest.raises(ValueError, match="never moves to pending"):
        await apply(desk, refund, RefundStatus.PENDING)


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
