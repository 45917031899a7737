"""Refunds: the form, the exactly-once submit path, and the one place status changes.

No web framework here. The life of a refund (reliability notes §1.2):

1. ``new_form`` renders a draft with two hidden tokens: ``form_token`` (unique per
   rendered form, so a double submit finds the refund it already made) and
   ``refundable_token`` (the refundable amount and refund count the agent saw).
2. ``submit_refund`` re-validates with the same rules as the live form, then in ONE
   short transaction reserves the amount with a conditional UPDATE (the payment must
   still look exactly as the form saw it), writes the refund (PENDING, with a fresh
   ``refund_request_id``) and its first timeline event, and commits. Only then is Antom
   called, with no transaction open, from the committed row. Unknown answers are
   retried a couple of times with the SAME ``refund_request_id``.
3. ``apply_antom_status`` is the only code that changes a refund's status: forward only,
   fenced by a conditional UPDATE on the current status, moving money between
   ``reserved_minor`` and ``refunded_minor`` in the same transaction. The webhook and
   the poller use it too, with their own ``source``.

A refund whose outcome is unknown stays PROCESSING with its money reserved; it is never
failed by a timeout and never sent again under a new id. A new attempt after a
confirmed failure is a new refund, made by a person through a new form.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web import rules
from web.antom.client import AntomClient
from web.antom.messages import (
    Exchange,
    InquiryPaymentResult,
    PaymentTransaction,
    RefundCallResult,
    RefundOutcome,
    RefundRequest,
    explain_code,
)
from web.antom.money import Money, MoneyError, format_minor, format_plain, parse_amount
from web.faults import fault_point
from web.models import (
    AgentLimit,
    EventSource,
    Payment,
    Refund,
    RefundEvent,
    RefundStatus,
    Role,
    User,
    utcnow,
)
from web.services.webhooks import book_external_refund, parse_time

log = logging.getLogger(__name__)

# The managed list of reasons an agent picks from (code, label). The code is stored.
REFUND_REASONS: list[tuple[str, str]] = [
    ("customer_request", "Customer request"),
    ("duplicate_charge", "Duplicate charge"),
    ("item_not_received", "Item not received"),
    ("item_returned", "Item returned"),
    ("service_issue", "Service issue"),
    ("fraud_suspected", "Fraud suspected"),
    ("other", "Other"),
]
OTHER_REASON = "other"
# Refunds found at Antom that the desk did not issue (Antom Dashboard); never selectable.
EXTERNAL_REASON = "external"
_REASON_LABELS = dict(REFUND_REASONS) | {EXTERNAL_REASON: "Made outside the desk"}
NOTE_MIN_FOR_OTHER = 5
NOTE_MAX = 256  # Refund.note
EMPTY_AMOUNT = "Enter an amount"  # web.antom.money.parse_amount's message for a blank field

# In-request retries of an unknown answer, same refundRequestId each time. Longer waits
# belong to the poller: the agent is looking at a spinner meanwhile.
RETRY_DELAYS_S: tuple[float, ...] = (0.3, 1.0)
# Retries stop once the agent has waited this long (a timeout alone can take 15 s).
IN_REQUEST_BUDGET_S = 20.0
# When the poller should first ask about a refund whose answer is unknown.
PROCESSING_RECHECK = timedelta(seconds=30)
# A write-ahead row left PENDING (the process died before recording an answer) is picked
# up by the poller after the in-request attempts could have finished.
PENDING_RECHECK = timedelta(minutes=2)

_TOKEN_PREFIX = "r1"  # noqa: S105 - a format tag, not a secret
_SUMMARY_MAX = 256


# ---------------------------------------------------------------- form


@dataclass(frozen=True)
class RefundDraft:
    """What the refund form holds; every field is a string, as posted."""

    amount_text: str
    currency: str
    reason: str
    note: str
    form_token: str  # unique per rendered form (double-submit guard)
    refundable_token: str  # opaque: the refundable state the form was rendered with


@dataclass(frozen=True)
class FormCheck:
    amount_minor: int | None
    # Keys: "amount", "currency", "reason", "note", "payment", "form".
    errors: dict[str, list[str]]
    button_label: str

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class SubmitOutcome:
    check: FormCheck  # errors when refused (nothing was written)
    refund: Refund | None  # the refund when accepted, in its latest known status
    message: str  # agent-readable summary of what happened


@dataclass(frozen=True, slots=True)
class _RefundableState:
    """What ``refundable_token`` carries: the refundable amount and the refund count.

    Both move whenever any refund on the payment is reserved, released or captured
    money changes, so a form built on an older state is detected as stale.
    """

    refundable_minor: int
    refund_count: int

    @classmethod
    def of(cls, facts: rules.PaymentFacts) -> _RefundableState:
        return cls(facts.refundable_minor, facts.refund_count)

    def encode(self) -> str:
        return f"{_TOKEN_PREFIX}.{self.refundable_minor}.{self.refund_count}"

    @classmethod
    def decode(cls, token: str) -> _RefundableState | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _TOKEN_PREFIX:
            return None
        if not (parts[1].isdigit() and parts[2].isdigit()):
            return None
        return cls(int(parts[1]), int(parts[2]))


def reason_label(code: str) -> str:
    return _REASON_LABELS.get(code, code)


def new_form_token() -> str:
    return secrets.token_urlsafe(24)


def new_refund_request_id() -> str:
    # 35 characters: inside Antom's 64, no special characters (inquiryRefund rejects them).
    return f"rd_{uuid.uuid4().hex}"


async def payment_facts(session: AsyncSession, payment: Payment) -> rules.PaymentFacts:
    """The rules' view of a payment, from its bookkeeping columns as committed now."""
    if payment in session:
        # Other agents' refunds move these columns; decide on the database's values.
        await session.refresh(payment)
    return rules.PaymentFacts(
        method=payment.method,
        currency=payment.currency,
        amount_minor=payment.amount_minor,
        captured_minor=payment.captured_minor,
        succeeded=payment.status == "SUCCESS",
        dispute_open=payment.dispute_open,
        paid_at=payment.paid_at or payment.created_at,
        refunded_minor=payment.refunded_minor,
        in_flight_minor=payment.reserved_minor,
        refund_count=payment.refund_count,
    )


async def agent_limit_minor(session: AsyncSession, user: User, currency: str) -> int | None:
    """The user's largest single refund in ``currency`` (None: no limit).

    An AgentLimit row always decides. Without one, leads and admins are unlimited and
    agents may not refund in that currency at all: a new agent account cannot move
    money until a lead gives it a limit.
    """
    result = await session.exec(
        select(AgentLimit.max_minor).where(
            AgentLimit.user_id == user.id, AgentLimit.currency == currency
        )
    )
    limit = result.first()
    if limit is not None:
        return limit
    return None if user.role in (Role.LEAD, Role.ADMIN) else 0


async def new_form(
    session: AsyncSession, payment: Payment, user: User, now: datetime
) -> tuple[RefundDraft, FormCheck]:
    """A fresh form: the amount still refundable, fixed currency, new tokens.

    The check leaves out "choose a reason" and, when nothing is refundable, "enter an
    amount": the agent has not had the chance yet. What cannot be fixed is shown.
    """
    facts = await payment_facts(session, payment)
    draft = RefundDraft(
        amount_text=(
            format_plain(facts.refundable_minor, payment.currency)
            if facts.refundable_minor > 0
            else ""
        ),
        currency=payment.currency,
        reason="",
        note="",
        form_token=new_form_token(),
        refundable_token=_RefundableState.of(facts).encode(),
    )
    check = await _evaluate(session, payment, user, draft, now, facts)
    # Fields the agent has not had the chance to fill in are not wrong yet.
    errors = {k: v for k, v in check.errors.items() if k not in ("reason", "note")}
    if not draft.amount_text:
        unparsed = [m for m in errors.get("amount", []) if m != EMPTY_AMOUNT]
        errors = {k: v for k, v in errors.items() if k != "amount"}
        if unparsed:
            errors["amount"] = unparsed
    return draft, dataclasses.replace(check, errors=errors)


async def check_draft(
    session: AsyncSession, payment: Payment, user: User, draft: RefundDraft, now: datetime
) -> FormCheck:
    """Live validation: exactly what ``submit_refund`` will decide, field by field."""
    facts = await payment_facts(session, payment)
    return await _evaluate(session, payment, user, draft, now, facts)


def stale_message(facts: rules.PaymentFacts) -> str:
    lead = "This payment changed while you were editing: "
    if facts.refundable_minor <= 0:
        return lead + "nothing is left to refund."
    return (
        lead + f"{format_minor(facts.refundable_minor, facts.currency)} is now refundable. "
        "Check the amount and submit again."
    )


async def _evaluate(
    session: AsyncSession,
    payment: Payment,
    user: User,
    draft: RefundDraft,
    now: datetime,
    facts: rules.PaymentFacts,
) -> FormCheck:
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        messages = errors.setdefault(key, [])
        if message not in messages:
            messages.append(message)

    reason = draft.reason.strip()
    note = draft.note.strip()
    if reason not in dict(REFUND_REASONS):
        add("reason", "Choose a reason for the refund")
    if len(note) > NOTE_MAX:
        add("note", f"The note can be at most {NOTE_MAX} characters ({len(note)} now)")
    elif reason == OTHER_REASON and len(note) < NOTE_MIN_FOR_OTHER:
        add("note", f"Say why in the note (at least {NOTE_MIN_FOR_OTHER} characters)")

    currency = draft.currency.strip().upper()
    amount_minor: int | None = None
    try:
        amount_minor = parse_amount(draft.amount_text, payment.currency)
    except MoneyError as exc:
        add("amount", str(exc))

    # Without an amount the payment-level rules still apply, and "nothing is left to
    # refund" still holds; other amount rules have nothing to judge and are dropped.
    probe = amount_minor if amount_minor is not None else max(facts.refundable_minor, 1)
    for violation in rules.check_refund(facts, currency, probe, now):
        if (
            amount_minor is None
            and violation.field is rules.Field.AMOUNT
            and facts.refundable_minor > 0
        ):
            continue
        add(violation.field.value, violation.message)

    if amount_minor is not None and currency == payment.currency:
        limit = await agent_limit_minor(session, user, payment.currency)
        if over := rules.check_agent_limit(limit, amount_minor, payment.currency):
            add(over.field.value, over.message)

    if _RefundableState.decode(draft.refundable_token) != _RefundableState.of(facts):
        add("form", stale_message(facts))

    if "payment" in errors:
        label = "This payment cannot be refunded"
    elif facts.refundable_minor <= 0:
        label = "Nothing is left to refund"
    elif amount_minor is None or currency != payment.currency:
        label = f"Enter an amount to refund to {payment.method}"
    else:
        label = f"Refund {format_minor(amount_minor, payment.currency)} to {payment.method}"
    return FormCheck(amount_minor=amount_minor, errors=errors, button_label=label)


# ---------------------------------------------------------------- submit


def status_message(refund: Refund) -> str:
    """What the agent reads about a refund, in any status."""
    amount = format_minor(refund.amount_minor, refund.currency)
    match refund.status:
        case RefundStatus.SUCCEEDED:
            return f"Refund of {amount} succeeded"
        case RefundStatus.FAILED:
            return f"Refund of {amount} failed: {explain_code(refund.result_code)}"
        case RefundStatus.PROCESSING:
            return (
                f"Refund of {amount} is processing at Antom. Do not refund again: "
                "the desk will record the result when Antom confirms it."
            )
        case _:
            return f"Refund of {amount} was recorded and is being sent to Antom"


def refund_request_for(refund: Refund, payment: Payment, notify_url: str | None) -> RefundRequest:
    """The Antom request, built only from the stored row: every retry sends the same."""
    if refund.payment_pk != payment.id:
        raise ValueError("refund and payment do not belong together")
    return RefundRequest(
        refund_request_id=refund.refund_request_id,
        payment_id=payment.payment_id,
        amount=Money(refund.amount_minor, refund.currency),
        reason=reason_label(refund.reason),
        notify_url=notify_url,
    )


async def submit_refund(
    engine: AsyncEngine,
    antom: AntomClient,
    *,
    payment_pk: int,
    user: User,
    draft: RefundDraft,
    notify_url: str | None,
    now: datetime,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
    request_id: str | None = None,
) -> SubmitOutcome:
    """Validate, write ahead, call Antom once (plus same-id retries), record the result.

    Opens its own short transactions on ``engine``; the caller must not hold one open
    (on SQLite every transaction takes the write lock, so a request handler that has
    already read through its own session must commit it before calling this).
    ``request_id`` (the agent's HTTP request) goes on every timeline entry this writes.
    """
    accepted = await _write_ahead(
        engine,
        payment_pk=payment_pk,
        user=user,
        draft=draft,
        notify_url=notify_url,
        now=now,
        request_id=request_id,
    )
    if isinstance(accepted, SubmitOutcome):
        return accepted
    refund, payment, check = accepted
    fault_point("after_write_ahead")
    request = refund_request_for(refund, payment, notify_url)

    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        result: RefundCallResult | None = None
        error: str | None = None
        try:
            result = await antom.refund(request)
            fault_point("after_antom_call")
        except Exception as exc:  # the request may have reached Antom: unknown, not failed
            log.exception("refund %s: the Antom call raised", refund.refund_request_id)
            error = f"{type(exc).__name__}: {exc}"
        retry = (
            result is not None
            and _retryable(result)
            and attempt <= len(retry_delays)
            and time.monotonic() - started + retry_delays[attempt - 1] < IN_REQUEST_BUDGET_S
        )
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                refund = await _record_call(
                    session,
                    refund,
                    result,
                    error=error,
                    attempt=attempt,
                    retrying=retry,
                    user=user,
                    request_id=request_id,
                )
                await session.commit()
        except SQLAlchemyError:
            # Antom may have refunded; the row keeps the money reserved and the poller
            # (next_check_at) settles it. The agent must not try again meanwhile.
            log.exception("refund %s: could not record Antom's answer", refund.refund_request_id)
            amount = format_minor(refund.amount_minor, refund.currency)
            return SubmitOutcome(
                check=check,
                refund=refund,
                message=(
                    f"Refund of {amount} was sent to Antom but its result could not be "
                    "recorded yet. Do not refund again: the desk will check it with Antom."
                ),
            )
        if not retry:
            break
        # Some jitter so that a burst of refunds does not retry in lockstep.
        await asyncio.sleep(retry_delays[attempt - 1] * random.uniform(0.8, 1.2))

    log.info(
        "refund %s submitted by user=%s status=%s request_id=%s",
        refund.refund_request_id,
        user.id,
        RefundStatus(refund.status).value,
        request_id,
    )
    return SubmitOutcome(check=check, refund=refund, message=status_message(refund))


def _retryable(result: RefundCallResult) -> bool:
    """An answer worth asking again at once with the same id.

    REFUND_IN_PROCESS means Antom accepted it: the webhook or the poller will settle it.
    REPEAT_REQ_INCONSISTENT needs an inquiry, not a resend.
    """
    if result.state is not RefundOutcome.PROCESSING:
        return False
    return result.result_code not in ("REFUND_IN_PROCESS", "REPEAT_REQ_INCONSISTENT")


async def _refund_by_form_token(session: AsyncSession, form_token: str) -> Refund | None:
    if not form_token:
        return None
    result = await session.exec(select(Refund).where(Refund.form_token == form_token))
    return result.first()


def _refused(check: FormCheck) -> SubmitOutcome:
    return SubmitOutcome(check=check, refund=None, message="Nothing was refunded")


async def _already_submitted(
    session: AsyncSession, existing: Refund, payment_pk: int
) -> SubmitOutcome:
    if existing.payment_pk != payment_pk:
        check = FormCheck(None, {"form": ["This form is not valid any more; reload it"]}, "")
        return _refused(check)
    amount = format_minor(existing.amount_minor, existing.currency)
    payment = await session.get(Payment, payment_pk)
    method = payment.method if payment else "the buyer"
    check = FormCheck(existing.amount_minor, {}, f"Refund {amount} to {method}")
    return SubmitOutcome(
        check=check,
        refund=_typed(existing),
        message=f"This form was already submitted. {status_message(existing)}",
    )


async def _write_ahead(
    engine: AsyncEngine,
    *,
    payment_pk: int,
    user: User,
    draft: RefundDraft,
    notify_url: str | None,
    now: datetime,
    request_id: str | None,
) -> tuple[Refund, Payment, FormCheck] | SubmitOutcome:
    """Phase 1: validate, reserve, insert the refund and its event; one transaction."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        if existing := await _refund_by_form_token(session, draft.form_token):
            return await _already_submitted(session, existing, payment_pk)
        if not draft.form_token or len(draft.form_token) > 64:
            return _refused(FormCheck(None, {"form": ["This form is not valid; reload it"]}, ""))
        payment = await session.get(Payment, payment_pk)
        if payment is None:
            return _refused(FormCheck(None, {"payment": ["This payment does not exist"]}, ""))
        check = await check_draft(session, payment, user, draft, now)
        if not check.ok or check.amount_minor is None:
            return _refused(check)
        amount = check.amount_minor
        expected = _RefundableState.decode(draft.refundable_token)
        assert expected is not None  # check_draft refuses a token that does not decode
        refund_request_id = new_refund_request_id()
        try:
            # The same checks the real request gets after the commit: a row that could
            # never be sent would hold its money until someone noticed.
            RefundRequest(
                refund_request_id=refund_request_id,
                payment_id=payment.payment_id,
                amount=Money(amount, payment.currency),
                reason=reason_label(draft.reason.strip()),
                notify_url=notify_url,
            )
        except ValueError as exc:
            log.error("refund for payment %s cannot be sent: %s", payment.payment_id, exc)
            return _refused(
                dataclasses.replace(
                    check, errors={"form": [f"This refund cannot be sent to Antom: {exc}"]}
                )
            )

        if not await _reserve(session, payment, amount, expected, now):
            await session.rollback()
            return await _lost_race(session, payment_pk, user, draft, now)

        refund = Refund(
            refund_request_id=refund_request_id,
            payment_pk=payment_pk,
            currency=payment.currency,
            amount_minor=amount,
            status=RefundStatus.PENDING,
            reason=draft.reason.strip(),
            note=draft.note.strip() or None,
            agent_id=user.id,
            form_token=draft.form_token,
            next_check_at=utcnow() + PENDING_RECHECK,
        )
        session.add(refund)
        try:
            await session.flush()
            assert refund.id is not None
            session.add(
                RefundEvent(
                    refund_pk=refund.id,
                    source=EventSource.AGENT,
                    actor_id=user.id,
                    from_status=None,
                    to_status=RefundStatus.PENDING,
                    summary=_clip(
                        f"{user.name} requested a refund of "
                        f"{format_minor(amount, payment.currency)} "
                        f"({reason_label(refund.reason)})"
                    ),
                    detail={"refund_request_id": refund.refund_request_id, "note": refund.note},
                    request_id=request_id,
                )
            )
            await session.commit()
        except IntegrityError:
            # The same form committed first (form_token is UNIQUE): answer with that refund.
            await session.rollback()
            if existing := await _refund_by_form_token(session, draft.form_token):
                return await _already_submitted(session, existing, payment_pk)
            raise
        return refund, payment, check


async def _reserve(
    session: AsyncSession,
    payment: Payment,
    amount_minor: int,
    expected: _RefundableState | None,
    now: datetime,
) -> bool:
    """Hold ``amount_minor`` on the payment if, at this instant, the rules still allow it.

    One conditional UPDATE: concurrent writers serialise on the row and each re-checks
    the condition against the latest committed values, so two refunds can never both
    take the same money. ``expected`` also requires the payment to look exactly as the
    agent's form saw it. The CHECK constraint on payments backs this up.
    """
    refundable = (
        col(Payment.captured_minor) - col(Payment.refunded_minor) - col(Payment.reserved_minor)
    )
    conditions: list[sa.ColumnElement[bool]] = [
        col(Payment.id) == payment.id,
        refundable >= amount_minor,
        col(Payment.status) == "SUCCESS",
        sa.not_(col(Payment.dispute_open)),
    ]
    if expected is not None:
        conditions += [
            refundable == expected.refundable_minor,
            col(Payment.refund_count) == expected.refund_count,
        ]
    max_refunds = rules.profile_for(payment.method).max_refunds
    if max_refunds is not None:
        conditions.append(col(Payment.refund_count) < max_refunds)
    result = await session.exec(
        sa.update(Payment)
        .where(*conditions)
        .values(
            reserved_minor=col(Payment.reserved_minor) + amount_minor,
            refund_count=col(Payment.refund_count) + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def _lost_race(
    session: AsyncSession, payment_pk: int, user: User, draft: RefundDraft, now: datetime
) -> SubmitOutcome:
    """The reservation found the payment changed since the check: say what changed."""
    if existing := await _refund_by_form_token(session, draft.form_token):
        return await _already_submitted(session, existing, payment_pk)
    payment = await session.get(Payment, payment_pk)
    if payment is None:
        return _refused(FormCheck(None, {"payment": ["This payment does not exist"]}, ""))
    check = await check_draft(session, payment, user, draft, now)
    if check.ok:
        facts = await payment_facts(session, payment)
        check = dataclasses.replace(check, errors={"form": [stale_message(facts)]})
    return _refused(check)


async def _record_call(
    session: AsyncSession,
    refund: Refund,
    result: RefundCallResult | None,
    *,
    error: str | None,
    attempt: int,
    retrying: bool,
    user: User,
    request_id: str | None,
) -> Refund:
    """Phase 3: put one refund call's answer on the refund and its timeline."""
    assert refund.id is not None
    await session.exec(
        sa.update(Refund)
        .where(col(Refund.id) == refund.id)
        .values(attempts=col(Refund.attempts) + 1)
        .execution_options(synchronize_session=False)
    )
    amount = format_minor(refund.amount_minor, refund.currency)
    detail: dict[str, Any] = {"attempt": attempt, "refund_request_id": refund.refund_request_id}
    if result is None:
        outcome = RefundOutcome.PROCESSING
        detail["error"] = error
        summary = f"Refund call failed before an answer ({error}); the outcome is unknown"
        code: str | None = None
        message: str | None = None
    else:
        outcome = result.state
        detail |= exchange_detail(result.exchange)
        detail |= {"result_code": result.result_code, "error": result.error}
        code, message = result.result_code, result.result_message
        summary = f"Antom answered {result.result_code or result.error or 'nothing usable'}"
        asked = Money(refund.amount_minor, refund.currency)
        if (
            outcome is RefundOutcome.SUCCEEDED
            and result.refund_amount is not None
            and result.refund_amount != asked
        ):
            # Never book money Antom says differently about; an inquiry settles it.
            outcome = RefundOutcome.PROCESSING
            summary = f"Antom confirmed {result.refund_amount}, not {amount}: needs review"
    if retrying:
        summary += "; retrying with the same refund request id"

    applied = False
    if outcome is RefundOutcome.SUCCEEDED:
        assert result is not None
        applied = await apply_antom_status(
            session,
            refund,
            RefundStatus.SUCCEEDED,
            source=EventSource.ANTOM_RESPONSE,
            summary=f"Antom refunded {amount}",
            detail=detail,
            actor_id=user.id,
            request_id=request_id,
            refund_id=result.refund_id,
            result_code=code,
            result_message=message,
            refunded_at=parse_time(result.refund_time),
        )
    elif outcome is RefundOutcome.FAILED:
        assert result is not None
        applied = await apply_antom_status(
            session,
            refund,
            RefundStatus.FAILED,
            source=EventSource.ANTOM_RESPONSE,
            summary=f"Antom refused the refund: {explain_code(code)}",
            detail=detail,
            actor_id=user.id,
            request_id=request_id,
            result_code=code,
            result_message=message,
        )
    else:
        applied = await apply_antom_status(
            session,
            refund,
            RefundStatus.PROCESSING,
            source=EventSource.ANTOM_RESPONSE,
            summary=summary,
            detail=detail,
            actor_id=user.id,
            request_id=request_id,
            result_code=code,
            result_message=message,
            next_check_at=utcnow() + PROCESSING_RECHECK,
        )
    if not applied:
        # No change of status (already PROCESSING, or a webhook settled it first): the
        # exchange still belongs on the timeline.
        await record_event(
            session,
            refund,
            source=EventSource.ANTOM_RESPONSE,
            summary=summary,
            detail=detail,
            actor_id=user.id,
            request_id=request_id,
        )
        if outcome is RefundOutcome.PROCESSING:
            await session.exec(
                sa.update(Refund)
                .where(col(Refund.id) == refund.id, col(Refund.status) == RefundStatus.PROCESSING)
                .values(next_check_at=utcnow() + PROCESSING_RECHECK)
                .execution_options(synchronize_session=False)
            )
    fresh = await session.get(Refund, refund.id, populate_existing=True)
    assert fresh is not None
    return _typed(fresh)


def exchange_detail(exchange: Exchange) -> dict[str, Any]:
    """An Antom exchange as JSON for the timeline (the client already redacted it)."""
    data = dataclasses.asdict(exchange)
    for name in ("request_body", "response_body"):
        text = data.get(name)
        if isinstance(text, str):
            # Not JSON (an HTML error page from a proxy): the text is kept as it is.
            with contextlib.suppress(ValueError):
                data[name] = json.loads(text)
    return {"exchange": data}


def _clip(text: str, limit: int = _SUMMARY_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- status changes

# Forward only: PENDING → PROCESSING → final, or PENDING → final directly.
_PREDECESSORS: dict[RefundStatus, tuple[RefundStatus, ...]] = {
    RefundStatus.PROCESSING: (RefundStatus.PENDING,),
    RefundStatus.SUCCEEDED: (RefundStatus.PENDING, RefundStatus.PROCESSING),
    RefundStatus.FAILED: (RefundStatus.PENDING, RefundStatus.PROCESSING),
}


async def apply_antom_status(
    session: AsyncSession,
    refund: Refund,
    new_status: RefundStatus,
    *,
    source: EventSource,
    summary: str,
    detail: dict[str, Any] | None = None,
    actor_id: int | None = None,
    request_id: str | None = None,
    refund_id: str | None = None,
    result_code: str | None = None,
    result_message: str | None = None,
    refunded_at: datetime | None = None,
    next_check_at: datetime | None = None,
) -> bool:
    """Move a refund forward to ``new_status``; False when that is no longer a move.

    The only place a refund's status changes. The UPDATE is fenced on the status just
    read, so of two writers (webhook and poller, say) exactly one applies a transition
    and the other gets False and changes nothing. In the same transaction the money
    moves: SUCCEEDED turns the reservation into refunded money, FAILED releases it (and
    the refund no longer counts towards the method's refund limit). Writes a timeline
    event for an applied transition, with ``request_id``: the HTTP request that caused
    it (agent, webhook, "check now") or the poller's pass. Does not commit.
    """
    new_status = RefundStatus(new_status)  # callers may hold the column's plain string
    if new_status not in _PREDECESSORS:
        raise ValueError(f"a refund never moves to {new_status}")
    assert refund.id is not None
    at = utcnow()
    values: dict[str, Any] = {"status": new_status, "updated_at": at}
    if refund_id:
        values["refund_id"] = refund_id
    if result_code is not None:
        values["result_code"] = result_code[:64]
    if result_message is not None:
        values["result_message"] = result_message[:256]
    if new_status.final:
        values |= {"next_check_at": None, "lease_owner": None, "lease_until": None}
    elif next_check_at is not None:
        values["next_check_at"] = next_check_at
    if new_status is RefundStatus.SUCCEEDED:
        values["refunded_at"] = refunded_at or at

    for _ in range(3):
        current = (
            await session.exec(select(Refund.status).where(col(Refund.id) == refund.id))
        ).one()
        if current not in _PREDECESSORS[new_status]:
            return False
        moved = await session.exec(
            sa.update(Refund)
            .where(col(Refund.id) == refund.id, col(Refund.status) == current)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount == 1:
            break
    else:
        return False  # kept losing to other writers: their newer facts won

    amount = refund.amount_minor
    money: dict[str, Any] = {}
    if new_status is RefundStatus.SUCCEEDED:
        money = {
            "reserved_minor": col(Payment.reserved_minor) - amount,
            "refunded_minor": col(Payment.refunded_minor) + amount,
        }
    elif new_status is RefundStatus.FAILED:
        money = {
            "reserved_minor": col(Payment.reserved_minor) - amount,
            "refund_count": col(Payment.refund_count) - 1,
        }
    if money:
        await session.exec(
            sa.update(Payment)
            .where(col(Payment.id) == refund.payment_pk)
            .values(**money, updated_at=at)
            .execution_options(synchronize_session=False)
        )
    session.add(
        RefundEvent(
            refund_pk=refund.id,
            at=at,
            source=source,
            actor_id=actor_id,
            from_status=current,
            to_status=new_status,
            summary=_clip(summary),
            detail=_jsonable(detail),
            request_id=request_id,
        )
    )
    await session.flush()
    await _sync(session, refund)
    return True


async def record_event(
    session: AsyncSession,
    refund: Refund,
    *,
    source: EventSource,
    summary: str,
    detail: dict[str, Any] | None = None,
    actor_id: int | None = None,
    request_id: str | None = None,
) -> RefundEvent:
    """A timeline entry that changes nothing (an answer that moved no status)."""
    assert refund.id is not None
    event = RefundEvent(
        refund_pk=refund.id,
        source=source,
        actor_id=actor_id,
        summary=_clip(summary),
        detail=_jsonable(detail),
        request_id=request_id,
    )
    session.add(event)
    await session.flush()
    return event


async def _sync(session: AsyncSession, refund: Refund) -> None:
    """Give the caller's object the row's new values without marking it dirty."""
    if refund in session:
        await session.refresh(refund)
    else:
        fresh = await session.get(Refund, refund.id)
        assert fresh is not None
        for name in Refund.model_fields:
            set_committed_value(refund, name, getattr(fresh, name))
    _typed(refund)


def _typed(refund: Refund) -> Refund:
    """The status as the RefundStatus its annotation promises (the column holds a string),
    so callers may compare with ``is``."""
    set_committed_value(refund, "status", RefundStatus(refund.status))
    return refund


def _jsonable(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    if detail is None:
        return None
    value: dict[str, Any] = json.loads(json.dumps(detail, default=str))
    return value


# ---------------------------------------------------------------- reading


async def list_refund_timeline(session: AsyncSession, refund_pk: int) -> list[RefundEvent]:
    result = await session.exec(
        select(RefundEvent)
        .where(RefundEvent.refund_pk == refund_pk)
        .order_by(col(RefundEvent.at), col(RefundEvent.id))
    )
    return list(result.all())


async def refunds_for_payment(session: AsyncSession, payment_pk: int) -> list[Refund]:
    result = await session.exec(
        select(Refund)
        .where(Refund.payment_pk == payment_pk)
        .order_by(col(Refund.created_at).desc(), col(Refund.id).desc())
    )
    return list(result.all())


# ---------------------------------------------------------------- import from Antom


class PaymentImportError(Exception):
    """A payment could not be imported; ``str()`` is fit to show an agent."""


class PaymentNotFound(PaymentImportError):
    pass


class AntomUnavailable(PaymentImportError):
    pass


_TRANSACTION_STATUS: dict[str, RefundStatus] = {
    "SUCCESS": RefundStatus.SUCCEEDED,
    "FAIL": RefundStatus.FAILED,
}


async def import_payment(
    session: AsyncSession, antom: AntomClient, ident: str, *, request_id: str | None = None
) -> Payment:
    """Find a payment at Antom by paymentId, else by paymentRequestId, and store it.

    Creates or updates the Payment (captured: CAPTURE transactions for methods that
    capture, the whole amount for a successful wallet payment) and records refunds
    listed in its transactions that the desk does not know (``external=True``), with
    the bookkeeping that keeps "refundable" right. Antom is asked before the database
    is touched, so no transaction waits on the network. Does not commit.
    """
    ident = ident.strip()
    if not ident or len(ident) > 64:
        raise PaymentNotFound("Enter an Antom payment id or payment request id")
    found = await _inquire(antom, ident)
    if found.payment_amount is None or not found.payment_id:
        raise AntomUnavailable("Antom's answer about this payment is incomplete; try again")
    amount = found.payment_amount
    method = found.payment_method_type or "UNKNOWN"
    status = found.payment_status or "PROCESSING"
    captured = _captured_minor(found, method, status)
    paid_at = parse_time(found.payment_time) or parse_time(found.payment_create_time)
    now = utcnow()

    payment = (
        await session.exec(select(Payment).where(Payment.payment_id == found.payment_id))
    ).first()
    if payment is None:
        payment = Payment(
            payment_id=found.payment_id,
            payment_request_id=found.payment_request_id or found.payment_id,
            method=method,
            currency=amount.currency,
            amount_minor=amount.minor,
            captured_minor=captured,
            status=status,
            paid_at=paid_at,
            # Lists sort by when the payment was made at Antom, not when the desk learnt of it.
            created_at=parse_time(found.payment_create_time) or paid_at or now,
        )
        session.add(payment)
    else:
        payment.method = method
        payment.status = status
        payment.captured_minor = captured
        payment.paid_at = paid_at or payment.paid_at
        payment.updated_at = now
    await session.flush()

    for tx in found.transactions:
        if tx.type == "REFUND":
            await _import_refund(session, payment, tx, request_id=request_id)
    await session.flush()
    await session.refresh(payment)
    return payment


async def _inquire(antom: AntomClient, ident: str) -> InquiryPaymentResult:
    by_id = await antom.inquiry_payment(payment_id=ident)
    if by_id.found:
        return by_id
    by_request = await antom.inquiry_payment(payment_request_id=ident)
    if by_request.found:
        return by_request
    for answer in (by_id, by_request):
        if answer.result_status != "F":
            reason = answer.error or explain_code(answer.result_code)
            raise AntomUnavailable(f"Antom did not answer clearly ({reason}); try again")
    raise PaymentNotFound(f"Antom has no payment with the id or request id {ident!r}")


def _captured_minor(found: InquiryPaymentResult, method: str, status: str) -> int:
    assert found.payment_amount is not None
    if status != "SUCCESS":
        return 0
    if not rules.profile_for(method).needs_capture:
        return found.payment_amount.minor
    captured = sum(
        tx.amount.minor
        for tx in found.transactions
        if tx.type == "CAPTURE"
        and tx.status == "SUCCESS"
        and tx.amount is not None
        and tx.amount.currency == found.payment_amount.currency
    )
    return min(captured, found.payment_amount.minor)


async def _import_refund(
    session: AsyncSession, payment: Payment, tx: PaymentTransaction, *, request_id: str | None
) -> None:
    assert payment.id is not None
    status = _TRANSACTION_STATUS.get(tx.status or "", RefundStatus.PROCESSING)
    refund_request_id = tx.transaction_request_id or (
        f"ext_{tx.transaction_id}" if tx.transaction_id else None
    )
    if not refund_request_id or len(refund_request_id) > 64:
        return
    known = (
        await session.exec(select(Refund).where(Refund.refund_request_id == refund_request_id))
    ).first()
    if known is None and tx.transaction_id:
        known = (
            await session.exec(select(Refund).where(Refund.refund_id == tx.transaction_id))
        ).first()
    if known is not None:
        if known.payment_pk == payment.id and status.final and not RefundStatus(known.status).final:
            await apply_antom_status(
                session,
                known,
                status,
                source=EventSource.RECONCILIATION,
                summary=f"Antom's payment record shows this refund as {tx.status}",
                detail={"transaction": _transaction_detail(tx)},
                request_id=request_id,
                refund_id=tx.transaction_id,
                result_code=tx.result_code,
                refunded_at=parse_time(tx.time),
            )
        return
    if tx.amount is None or tx.amount.minor <= 0:
        log.warning(
            "payment %s: refund %s has no usable amount", payment.payment_id, refund_request_id
        )
        return
    summary = _clip(
        f"Found at Antom: a refund of {tx.amount} made outside the desk "
        f"({tx.status or 'status unknown'})"
    )
    detail = {"transaction": _transaction_detail(tx), "refund_time": tx.time}
    refund = await book_external_refund(
        session,
        payment,
        refund_request_id=refund_request_id,
        refund_id=tx.transaction_id,
        amount=tx.amount,
        status=status,
        source=EventSource.RECONCILIATION,
        summary=summary,
        detail=detail,
        request_id=request_id,
    )
    if refund is None:
        log.error(
            "payment %s: Antom's refund %s of %s does not fit the desk's books",
            payment.payment_id,
            refund_request_id,
            tx.amount,
        )
    elif status is RefundStatus.PROCESSING:
        # Booked and reserved, no status change to carry the timeline entry.
        await record_event(
            session,
            refund,
            source=EventSource.RECONCILIATION,
            summary=summary,
            detail=detail,
            request_id=request_id,
        )


def _transaction_detail(tx: PaymentTransaction) -> dict[str, Any]:
    data: dict[str, Any] = dataclasses.asdict(tx)
    return _jsonable(data) or {}
