"""Many agents at once on one payment: never more than the refundable amount, each
answer a clear success or refusal, and Antom holds exactly the refunds the desk has."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, update

from tests.services.conftest import Desk, antom_refunds, filled_form, submit
from web.antom.client import AntomClient
from web.models import Payment, RefundStatus
from web.services import ledger

CONCURRENCY = 20


async def test_twenty_agents_at_once_never_exceed_the_refundable_amount(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    payment = await desk.imported(antom, simulator, amount_minor=10000)
    agents = [await desk.user(limits={"USD": 10**9}, name=f"Agent {i}") for i in range(CONCURRENCY)]
    succeeded = 0
    wins: list[int] = []
    # Each round every agent renders the form and all submit $15.00 at the same moment:
    # whatever the interleaving, one wins per round until $100.00 cannot fit $15.00.
    for _ in range(8):
        drafts = [
            await filled_form(desk, payment, agent, amount_text="15.00", reason="customer_request")
            for agent in agents
        ]
        outcomes = await asyncio.gather(
            *(submit(desk, antom, payment, a, d) for a, d in zip(agents, drafts, strict=True))
        )
        for outcome in outcomes:
            if outcome.refund is not None:
                assert outcome.refund.status is RefundStatus.SUCCEEDED, outcome.message
                assert outcome.message == "Refund of $15.00 succeeded"
                succeeded += 1
            else:
                assert outcome.message == "Nothing was refunded"
                assert outcome.check.errors, "a refusal always says why"
                assert set(outcome.check.errors) <= {"form", "amount"}, outcome.check.errors
        wins.append(sum(o.refund is not None for o in outcomes))

    assert wins == [1, 1, 1, 1, 1, 1, 0, 0]
    assert succeeded == 6  # 6 × $15.00 = $90.00; $10.00 is left, too little for $15.00
    after = await desk.get_payment(payment.id)
    assert (after.refunded_minor, after.reserved_minor, after.refund_count) == (9000, 0, 6)
    desk_refunds = await desk.refunds(payment.id)
    on_antom = await antom_refunds(antom, payment.payment_id)
    assert sorted(r["request_id"] for r in on_antom) == sorted(
        r.refund_request_id for r in desk_refunds
    )
    assert sum(r["minor"] for r in on_antom) == 9000


async def test_the_reservation_alone_never_overbooks(desk: Desk) -> None:
    """The conditional UPDATE without the form's state check: 20 × $10 race on $100."""
    payment = await desk.payment(amount_minor=10000)

    async def reserve() -> bool:
        async with desk.session() as s:
            row = await s.get(Payment, payment.id)
            assert row is not None
            ok = await ledger.reserve(s, row, 1000, expected=None, max_refunds=None)
            await s.commit()
            return ok

    results = await asyncio.gather(*(reserve() for _ in range(CONCURRENCY)))
    assert results.count(True) == 10
    after = await desk.get_payment(payment.id)
    assert (after.reserved_minor, after.refund_count) == (10000, 10)


@pytest.mark.parametrize("column", ["reserved_minor", "refunded_minor"])
async def test_check_constraint_is_the_last_line_of_defence(desk: Desk, column: str) -> None:
    payment = await desk.payment(amount_minor=10000)
    async with desk.session() as s:
        with pytest.raises(IntegrityError):
            await s.exec(
                update(Payment).where(col(Payment.id) == payment.id).values({column: 10001})
            )
            await s.commit()


async def test_repeats_of_one_form_are_always_answered_with_its_refund(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    """Defect 6: copies of one form submitted at the same moment (a double click, a retry
    by the browser) are all answered with the one refund it made — never with "the
    payment changed, submit again", which invites a second refund."""
    agent = await desk.user(limits={"USD": 10**9})
    payments = [await desk.imported(antom, simulator, amount_minor=10000) for _ in range(10)]
    for payment in payments:
        draft = await filled_form(
            desk, payment, agent, amount_text="25.00", reason="customer_request"
        )
        outcomes = await asyncio.gather(
            *(submit(desk, antom, payment, agent, draft) for _ in range(10))
        )
        made = {o.refund.id for o in outcomes if o.refund is not None}
        assert len(made) == 1, [o.message for o in outcomes]
        for outcome in outcomes:
            assert outcome.refund is not None, (outcome.message, outcome.check.errors)
            assert not outcome.check.errors
        assert len(await desk.refunds(payment.id)) == 1
        assert len(await antom_refunds(antom, payment.payment_id)) == 1
