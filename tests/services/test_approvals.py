"""Four eyes: caps, requests awaiting approval, approve / reject / edit / expiry.

Real database (SQLite and PostgreSQL), real simulator over HTTP. "Nothing sent to
Antom" is checked twice: the desk's client counts refund calls, and Antom (the
simulator) holds no refund for the payment.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from tests.services.conftest import (
    Desk,
    antom_refunds,
    filled_form,
    now,
    submit,
)
from web.antom.client import AntomClient
from web.antom.messages import RefundCallResult, RefundRequest
from web.models import AuditEvent, Payment, Refund, RefundStatus, Role, SpendingLimit, User
from web.rules import access
from web.services import approvals
from web.services.approvals import ApprovalError
from web.services.refunds import RefundDraft, check_draft

NOTIFY = "http://127.0.0.1:9/webhooks/antom"


class CountingAntom:
    """The desk's real client, counting refund calls (everything else passes through)."""

    def __init__(self, inner: AntomClient) -> None:
        self.inner = inner
        self.refund_calls: list[str] = []

    async def refund(self, req: RefundRequest) -> RefundCallResult:
        self.refund_calls.append(req.refund_request_id)
        return await self.inner.refund(req)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(name="counting")
def fx_counting(antom: AntomClient) -> CountingAntom:
    return CountingAntom(antom)


async def set_caps(desk: Desk, user: User, *, single: int | None, day: int | None) -> None:
    async with desk.session() as s:
        row = (await s.exec(select(SpendingLimit).where(SpendingLimit.user_id == user.id))).first()
        row = row or SpendingLimit(user_id=user.id, currency="USD")
        row.max_single_minor, row.max_day_minor = single, day
        s.add(row)
        await s.commit()


async def ask(
    desk: Desk, antom: Any, payment: Payment, user: User, amount: str, **fill: str
) -> Refund:
    draft = await filled_form(
        desk,
        payment,
        user,
        amount_text=amount,
        reason=fill.pop("reason", "customer_request"),
        **fill,
    )
    outcome = await submit(desk, antom, payment, user, draft)
    assert outcome.refund is not None, outcome.check.errors
    return outcome.refund


async def money(desk: Desk, payment: Payment) -> tuple[int, int, int]:
    p = await desk.get_payment(payment.id)
    return p.refunded_minor, p.reserved_minor, p.refund_count


async def approve(desk: Desk, antom: Any, refund: Refund, approver: User, **kw: Any) -> Refund:
    assert refund.id is not None
    decided = await approvals.approve(
        desk.engine,
        antom,
        refund_pk=refund.id,
        approver=approver,
        revision=kw.pop("revision", refund.revision),
        comment=kw.pop("comment", ""),
        notify_url=NOTIFY,
        now=now(),
        **kw,
    )
    return decided.refund


async def test_over_the_limit_the_amount_is_held_and_nothing_is_sent(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 5000})
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    refund = await ask(desk, counting, payment, agent, "60.00")
    assert refund.status is RefundStatus.AWAITING_APPROVAL
    assert refund.approval_reason == "$60.00 is over your $50.00 limit per refund"
    assert refund.approval_expires_at is not None
    assert await money(desk, payment) == (0, 6000, 1)  # held: nobody else can spend it
    assert counting.refund_calls == []
    assert await antom_refunds(counting.inner, payment.payment_id) == []
    # Nobody else can take the held money.
    other = await desk.user(limits={"USD": 10**9}, name="Bo")
    draft = await filled_form(desk, payment, other, amount_text="50.00", reason="customer_request")
    refused = await submit(desk, counting, payment, other, draft)
    assert refused.refund is None
    assert refused.check.errors["amount"] == [
        "Only $40.00 is still refundable ($60.00 is held for refunds not yet settled)"
    ]


async def test_an_approver_cannot_approve_their_own_request(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    lead = await desk.user(role=Role.LEAD, limits={"USD": 1000}, name="Lee")
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    refund = await ask(desk, counting, payment, lead, "20.00")
    assert refund.status is RefundStatus.AWAITING_APPROVAL
    with pytest.raises(ApprovalError, match="your own request"):
        await approve(desk, counting, refund, lead)
    agent = await desk.user(limits={"USD": 10**9}, name="Ana")
    with pytest.raises(ApprovalError, match="may not decide"):
        await approve(desk, counting, refund, agent)
    assert counting.refund_calls == []
    assert (await desk.refunds(payment.id))[0].status == RefundStatus.AWAITING_APPROVAL


async def test_approval_sends_it_once_and_the_timeline_names_everyone(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 5000}, name="Ana")
    lead = await desk.user(role=Role.LEAD, name="Lee")
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    refund = await ask(desk, counting, payment, agent, "60.00")
    sent = await approve(desk, counting, refund, lead, comment="Customer is a VIP")
    assert sent.status is RefundStatus.SUCCEEDED
    assert sent.decided_by == lead.id and sent.decision_note == "Customer is a VIP"
    assert counting.refund_calls == [refund.refund_request_id]
    assert [r["minor"] for r in await antom_refunds(counting.inner, payment.payment_id)] == [6000]
    assert await money(desk, payment) == (6000, 0, 1)
    events = await desk.events(refund.id)
    moves = [(e.from_status, e.to_status, e.actor_id) for e in events if e.to_status]
    assert moves == [
        (None, "awaiting", agent.id),
        ("awaiting", "pending", lead.id),
        ("pending", "succeeded", lead.id),
    ]
    # Approving again changes nothing and sends nothing.
    with pytest.raises(ApprovalError, match="changed since you opened it"):
        await approve(desk, counting, refund, lead)
    assert len(counting.refund_calls) == 1
    async with desk.session() as s:
        actions = (
            await s.exec(
                select(AuditEvent.action).where(AuditEvent.object_id == refund.refund_request_id)
            )
        ).all()
    assert list(actions) == ["refund.approval_requested", "refund.approved", "refund.result"]


async def test_rejection_needs_a_reason_and_releases_the_money(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 5000})
    lead = await desk.user(role=Role.LEAD, name="Lee")
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    refund = await ask(desk, counting, payment, agent, "60.00")
    assert refund.id is not None
    with pytest.raises(ApprovalError, match="Say why"):
        await approvals.reject(
            desk.engine, refund_pk=refund.id, approver=lead, revision=refund.revision, comment=" "
        )
    decided = await approvals.reject(
        desk.engine,
        refund_pk=refund.id,
        approver=lead,
        revision=refund.revision,
        comment="Not our fault: refer to the courier",
    )
    assert decided.refund.status is RefundStatus.REJECTED
    assert "Not our fault" in decided.message
    assert await money(desk, payment) == (0, 0, 0)
    assert counting.refund_calls == []


async def test_editing_a_pending_request_voids_an_approval_for_the_old_version(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 5000}, name="Ana")
    lead = await desk.user(role=Role.LEAD, name="Lee")
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    refund = await ask(desk, counting, payment, agent, "60.00")
    seen = refund.revision  # the lead opens the request here
    assert refund.id is not None
    edited = await approvals.edit(
        desk.engine,
        refund_pk=refund.id,
        user=agent,
        revision=refund.revision,
        draft=RefundDraft("90.00", "USD", "customer_request", "", "", "", ""),
        now=now(),
    )
    assert isinstance(edited, Refund)
    assert edited.status is RefundStatus.AWAITING_APPROVAL and edited.revision == seen + 1
    assert await money(desk, payment) == (0, 9000, 1)  # the hold follows the amount
    with pytest.raises(ApprovalError, match="changed since you opened it"):
        await approve(desk, counting, refund, lead, revision=seen)
    assert counting.refund_calls == []
    # An edit under the caps needs nobody: it becomes PENDING, to be sent.
    under = await approvals.edit(
        desk.engine,
        refund_pk=refund.id,
        user=agent,
        revision=edited.revision,
        draft=RefundDraft("40.00", "USD", "customer_request", "", "", "", ""),
        now=now(),
    )
    assert isinstance(under, Refund) and under.status is RefundStatus.PENDING
    assert await money(desk, payment) == (0, 4000, 1)
    # Only its requester may edit it; an edit beyond the payment is refused by the rules.
    other = await desk.user(limits={"USD": 5000}, name="Bo")
    second = await ask(desk, counting, payment, agent, "55.00")
    assert second.id is not None
    with pytest.raises(ApprovalError, match="Only the person who asked"):
        await approvals.edit(
            desk.engine,
            refund_pk=second.id,
            user=other,
            revision=second.revision,
            draft=RefundDraft("1.00", "USD", "customer_request", "", "", "", ""),
            now=now(),
        )
    too_much = await approvals.edit(
        desk.engine,
        refund_pk=second.id,
        user=agent,
        revision=second.revision,
        draft=RefundDraft("60.01", "USD", "customer_request", "", "", "", ""),
        now=now(),
    )
    assert not isinstance(too_much, Refund)
    assert too_much.errors["amount"] == [
        "Only $60.00 is still refundable ($40.00 is held for refunds not yet settled)"
    ]


async def test_splitting_a_refund_cannot_beat_the_daily_cap(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 50000})
    await set_caps(desk, agent, single=50000, day=50000)
    payment = await desk.imported(counting.inner, simulator, amount_minor=100000)
    first = await ask(desk, counting, payment, agent, "450.00")
    assert first.status is RefundStatus.SUCCEEDED
    draft = await filled_form(desk, payment, agent, amount_text="450.00", reason="customer_request")
    async with desk.session() as s:
        fresh = await s.get(Payment, payment.id)
        assert fresh is not None
        check = await check_draft(s, fresh, agent, draft, now())
    # Said before submitting, with the sum.
    assert check.approval == ("$450.00 today + $450.00 = $900.00, over your $500.00 daily limit",)
    second = await ask(desk, counting, payment, agent, "450.00")
    assert second.status is RefundStatus.AWAITING_APPROVAL
    assert counting.refund_calls == [first.refund_request_id]


async def test_two_splits_at_once_cannot_both_fit_under_the_daily_cap(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 50000})
    await set_caps(desk, agent, single=50000, day=50000)
    payments = [
        await desk.imported(counting.inner, simulator, amount_minor=50000) for _ in range(2)
    ]
    drafts = [
        await filled_form(desk, p, agent, amount_text="450.00", reason="customer_request")
        for p in payments
    ]
    outcomes = await asyncio.gather(
        *(submit(desk, counting, p, agent, d) for p, d in zip(payments, drafts, strict=True))
    )
    statuses = sorted(str(o.refund.status) for o in outcomes if o.refund is not None)
    assert statuses == ["awaiting", "succeeded"]
    assert len(counting.refund_calls) == 1


async def test_a_reason_s_share_of_the_payment_counts_earlier_refunds(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    lead = await desk.user(role=Role.LEAD)  # unlimited: only the reason's cap applies
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    note = {"note": "Sorry for the delay"}
    ok = await ask(desk, counting, payment, lead, "15.00", reason="goodwill", **note)
    assert ok.status is RefundStatus.SUCCEEDED
    over = await ask(desk, counting, payment, lead, "6.00", reason="goodwill", **note)
    assert over.status is RefundStatus.AWAITING_APPROVAL
    assert over.approval_reason == (
        "$15.00 already refunded as “Goodwill gesture” + $6.00 = $21.00, "
        "over 20 % of the payment ($20.00)"
    )
    always = await ask(desk, counting, payment, lead, "1.00", reason="fraud_suspected", **note)
    assert always.approval_reason == "Refunds for “Fraud suspected” always need approval"


async def test_an_unanswered_request_expires_and_releases_its_money(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 5000})
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    refund = await ask(desk, counting, payment, agent, "60.00")
    assert refund.approval_expires_at is not None
    assert await approvals.expire_due(desk.engine, refund.approval_expires_at - timedelta(1)) == 0
    assert await approvals.expire_due(desk.engine, refund.approval_expires_at) == 1
    (expired,) = await desk.refunds(payment.id)
    assert expired.status == RefundStatus.REJECTED and expired.decided_by is None
    assert await money(desk, payment) == (0, 0, 0)
    assert counting.refund_calls == []
    assert await approvals.expire_due(desk.engine, refund.approval_expires_at) == 0


async def test_approval_judges_the_payment_again(
    desk: Desk, counting: CountingAntom, simulator: Any
) -> None:
    agent = await desk.user(limits={"USD": 5000})
    lead = await desk.user(role=Role.LEAD, name="Lee")
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    refund = await ask(desk, counting, payment, agent, "60.00")
    async with desk.session() as s:
        row = await s.get(Payment, payment.id)
        assert row is not None
        row.dispute_open = True  # a chargeback arrived meanwhile
        await s.commit()
    with pytest.raises(ApprovalError, match="cannot be refunded now"):
        await approve(desk, counting, refund, lead)
    assert counting.refund_calls == []
    assert (await desk.refunds(payment.id))[0].status == RefundStatus.AWAITING_APPROVAL


async def test_a_person_without_request_approval_is_refused_over_the_cap(
    desk: Desk, counting: CountingAntom, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await desk.user(limits={"USD": 5000})
    payment = await desk.imported(counting.inner, simulator, amount_minor=10000)
    monkeypatch.setitem(
        access.ROLE_PERMISSIONS,
        Role.AGENT,
        access.ROLE_PERMISSIONS[Role.AGENT] - {access.Permission.REQUEST_APPROVAL},
    )
    draft = await filled_form(desk, payment, agent, amount_text="60.00", reason="customer_request")
    outcome = await submit(desk, counting, payment, agent, draft)
    assert outcome.refund is None
    assert outcome.check.errors == {"amount": ["$60.00 is over your $50.00 limit per refund"]}
    assert await desk.refunds(payment.id) == []
