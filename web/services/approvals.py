"""Four eyes: refunds over a cap wait for a second person, then go the one send path.

No web framework here. A request awaiting approval (``AWAITING_APPROVAL``) already holds
its amount on the payment (nobody else can spend it) and has never been sent. Then:

* ``approve``: someone holding APPROVE who is not the requester (``may_approve``,
  checked here, server-side) approves the revision they saw. The payment is judged
  again by the refund rules (a chargeback or the end of the refund window since the
  request stops it); the ledger moves it to PENDING and commits; then it is sent
  through ``web.services.refunds.send_requested`` — exactly the agent's send path, same
  refundRequestId on every retry. If this process dies between the commit and the
  call, the poller finds the PENDING refund, asks Antom, and sends it with the same id.
* ``reject``: the money is released, the decision and its comment recorded.
* ``expire_due``: requests nobody decided in time are rejected by the desk itself.
* ``edit``: the requester changes a pending request. Its revision moves, so an approval
  given for the old one is void; under every cap now, it goes at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.client import AntomClient
from web.antom.money import format_minor, format_plain
from web.db import session_scope
from web.models import EventSource, Payment, Refund, RefundStatus, User
from web.rules import refunds as rules
from web.rules.access import may_approve, may_see_request
from web.services import audit, ledger, limits
from web.services.refunds import (
    FormCheck,
    RefundDraft,
    SubmitOutcome,
    check_draft,
    facts_of,
    ready_to_send,
    send_requested,
    status_message,
    without_own_hold,
)
from web.services.sending import RETRY_DELAYS_S

log = logging.getLogger(__name__)

COMMENT_MAX = 500  # Refund.decision_note


class ApprovalError(Exception):
    """A decision that cannot be made; the message says why, for the person who tried."""


@dataclass(frozen=True, slots=True)
class Decided:
    refund: Refund
    message: str


@dataclass(frozen=True, slots=True)
class QueueRow:
    refund: Refund
    payment: Payment
    requester: User | None
    may_decide: bool  # False on one's own requests: four eyes


async def queue(session: AsyncSession, viewer: User) -> list[QueueRow]:
    """Requests awaiting approval the viewer may see, oldest first (the oldest expires
    first). An approver sees all; a requester only their own."""
    query = (
        select(Refund, Payment, User)
        .join(Payment, col(Payment.id) == col(Refund.payment_pk))
        .join(User, col(User.id) == col(Refund.agent_id), isouter=True)
        .where(col(Refund.status) == RefundStatus.AWAITING_APPROVAL)
        .order_by(col(Refund.created_at), col(Refund.id))
        .limit(500)
    )
    rows = []
    for refund, payment, requester in (await session.exec(query)).all():
        if may_see_request(viewer, refund.agent_id):
            rows.append(
                QueueRow(
                    ledger.typed(refund), payment, requester, may_approve(viewer, refund.agent_id)
                )
            )
    return rows


@dataclass(frozen=True, slots=True)
class RequestView:
    """What a viewer may see and do about a refund that was (or is) a request."""

    awaiting: bool
    own: bool  # the viewer asked for it
    may_decide: bool  # four eyes: an approver, not the requester
    may_see: bool  # the request's details (why, edits): its requester and approvers only
    decider: User | None
    draft: RefundDraft | None  # the requester's edit form, prefilled


async def view(session: AsyncSession, refund: Refund, viewer: User) -> RequestView | None:
    """None for a refund that never needed approval."""
    status = RefundStatus(refund.status)
    if status is not RefundStatus.AWAITING_APPROVAL and refund.approval_reason is None:
        return None
    awaiting = status is RefundStatus.AWAITING_APPROVAL
    own = viewer.id == refund.agent_id
    decider = await session.get(User, refund.decided_by) if refund.decided_by else None
    draft = (
        RefundDraft(
            amount_text=format_plain(refund.amount_minor, refund.currency),
            currency=refund.currency,
            reason=refund.reason,
            note=refund.note or "",
            form_token="",
            refundable_token="",
            ticket=refund.ticket_ref or "",
        )
        if awaiting and own
        else None
    )
    return RequestView(
        awaiting=awaiting,
        own=own,
        may_decide=awaiting and may_approve(viewer, refund.agent_id),
        may_see=may_see_request(viewer, refund.agent_id),
        decider=decider,
        draft=draft,
    )


async def approve(
    engine: AsyncEngine,
    antom: AntomClient,
    *,
    refund_pk: int,
    approver: User,
    revision: int,
    comment: str,
    notify_url: str | None,
    now: datetime,
    who: audit.Actor | None = None,
    request_id: str | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
) -> Decided:
    """Approve the revision the approver saw, then send it (no transaction open while
    Antom is called). Raises ApprovalError when it may not be approved as it stands."""
    cause = ledger.Cause(EventSource.AGENT, request_id, approver.id, who)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        refund, payment = await _awaiting(session, refund_pk, approver, revision)
        if problems := _payment_problems(refund, payment, now):
            raise ApprovalError("It cannot be refunded now: " + " ".join(problems))
        amount = format_minor(refund.amount_minor, refund.currency)
        said = _comment(comment)
        approved = await ledger.decide_request(
            session,
            refund_pk,
            approve=True,
            revision=revision,
            cause=cause,
            summary=f"{approver.name} approved the refund of {amount}"
            + (f": {said}" if said else ""),
            note=said,
        )
        if approved is None:
            raise ApprovalError(_changed_meanwhile)
        await session.commit()
    requested = ready_to_send(approved, payment, notify_url)
    sent_cause = dataclasses.replace(cause, source=EventSource.ANTOM_RESPONSE)
    outcome: SubmitOutcome = await send_requested(
        engine, antom, requested, cause=sent_cause, retry_delays=retry_delays
    )
    assert outcome.refund is not None
    return Decided(outcome.refund, f"Approved. {outcome.message}")


async def reject(
    engine: AsyncEngine,
    *,
    refund_pk: int,
    approver: User,
    revision: int,
    comment: str,
    who: audit.Actor | None = None,
    request_id: str | None = None,
) -> Decided:
    """Reject a request: its money is released, nothing was or will be sent."""
    said = _comment(comment)
    if not said:
        raise ApprovalError("Say why it is rejected: the requester reads it")
    async with AsyncSession(engine, expire_on_commit=False) as session:
        refund, _ = await _awaiting(session, refund_pk, approver, revision)
        amount = format_minor(refund.amount_minor, refund.currency)
        rejected = await ledger.decide_request(
            session,
            refund_pk,
            approve=False,
            revision=revision,
            cause=ledger.Cause(EventSource.AGENT, request_id, approver.id, who),
            summary=f"{approver.name} rejected the refund of {amount}: {said}",
            note=said,
        )
        if rejected is None:
            raise ApprovalError(_changed_meanwhile)
        await session.commit()
    return Decided(rejected, status_message(rejected))


async def expire_due(engine: AsyncEngine, now: datetime, *, limit: int = 200) -> int:
    """Reject every request whose approval time ran out; how many were."""
    async with session_scope(engine) as session:
        due = (
            await session.exec(
                select(Refund.id, Refund.revision)
                .where(
                    col(Refund.status) == RefundStatus.AWAITING_APPROVAL,
                    col(Refund.approval_expires_at) <= now,
                )
                .limit(limit)
            )
        ).all()
        expired = 0
        for refund_pk, revision in due:
            assert refund_pk is not None
            done = await ledger.decide_request(
                session,
                refund_pk,
                approve=False,
                revision=revision,
                cause=ledger.Cause(EventSource.SYSTEM),
                summary="Nobody approved the request in time: it expired and its amount "
                "was released",
                expired=True,
            )
            expired += done is not None
    if expired:
        log.info("%d refund request(s) expired unapproved", expired)
    return expired


async def edit(
    engine: AsyncEngine,
    *,
    refund_pk: int,
    user: User,
    revision: int,
    draft: RefundDraft,
    now: datetime,
    who: audit.Actor | None = None,
    request_id: str | None = None,
) -> FormCheck | Refund:
    """The requester edits their pending request: judged by the same rules as a new
    one (its own amount not counted twice). Answers the form's messages when refused,
    or the refund as it now stands (still awaiting, or PENDING when no cap is left —
    the caller then sends it like any agent's refund)."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await limits.lock_spender(session, user)
        refund = await session.get(Refund, refund_pk)
        if refund is None or refund.agent_id != user.id:
            raise ApprovalError("Only the person who asked can edit a request")
        if refund.status != RefundStatus.AWAITING_APPROVAL:
            raise ApprovalError("This request was already decided; it cannot be edited")
        payment = await session.get(Payment, refund.payment_pk)
        assert payment is not None
        # The currency is the payment's, as on the refund form (it is not editable).
        draft = dataclasses.replace(draft, currency=payment.currency)
        check = await check_draft(session, payment, user, draft, now, editing=refund)
        if not check.ok or check.amount_minor is None:
            return check
        labels = {r.code: r.label for r in check.reasons}
        reason = draft.reason.strip()
        change = ledger.Amendment(
            amount_minor=check.amount_minor,
            reason=reason,
            reason_text=labels.get(reason, reason)[:80],
            note=draft.note.strip() or None,
            ticket_ref=draft.ticket.strip() or None,
            approval_reason=ledger.clip("; ".join(check.approval)) if check.approval else None,
        )
        amount = format_minor(check.amount_minor, payment.currency)
        edited = await ledger.amend_request(
            session,
            refund_pk,
            revision=revision,
            change=change,
            cause=ledger.Cause(EventSource.AGENT, request_id, user.id, who),
            summary=f"{user.name} edited the request: {amount} ({change.reason_text})"
            + ("; any approval given before is void" if check.approval else "; under the caps now"),
        )
        if edited is None:
            raise ApprovalError(_changed_meanwhile)
        await session.commit()
        return edited


async def send_edited(
    engine: AsyncEngine,
    antom: AntomClient,
    refund: Refund,
    *,
    notify_url: str | None,
    who: audit.Actor | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
) -> str:
    """Send a request an edit brought under every cap (now PENDING), as its requester."""
    async with session_scope(engine) as session:
        payment = await session.get(Payment, refund.payment_pk)
        assert payment is not None
    requested = ready_to_send(refund, payment, notify_url)
    cause = ledger.Cause(
        EventSource.ANTOM_RESPONSE,
        who.request_id if who else None,
        refund.agent_id,
        who,
    )
    outcome = await send_requested(engine, antom, requested, cause=cause, retry_delays=retry_delays)
    return outcome.message


_changed_meanwhile = (
    "This request changed since you opened it (edited, decided or expired): "
    "reload it and look again"
)


def _comment(text: str) -> str:
    return text.strip()[:COMMENT_MAX]


async def _awaiting(
    session: AsyncSession, refund_pk: int, approver: User, revision: int
) -> tuple[Refund, Payment]:
    refund = await session.get(Refund, refund_pk)
    if refund is None:
        raise ApprovalError("There is no such request")
    if not may_approve(approver, refund.agent_id):
        if approver.id == refund.agent_id:
            raise ApprovalError("You cannot approve or reject your own request")
        raise ApprovalError("You may not decide on refund requests")
    if refund.status != RefundStatus.AWAITING_APPROVAL or refund.revision != revision:
        raise ApprovalError(_changed_meanwhile)
    payment = await session.get(Payment, refund.payment_pk)
    assert payment is not None
    return refund, payment


def _payment_problems(refund: Refund, payment: Payment, now: datetime) -> list[str]:
    """The refund rules on the payment as it is now, this request's own hold aside."""
    facts = without_own_hold(facts_of(payment), refund)
    violations = rules.check_refund(facts, refund.currency, refund.amount_minor, now)
    return [v.message for v in violations]
