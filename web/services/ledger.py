"""The ledger: the only code that moves a refund's status or a payment's money.

Everything that changes ``refunds.status`` or the money columns of ``payments``
(``captured_minor``, ``reserved_minor``, ``refunded_minor``, ``refund_count``), or
creates either row, goes through a function here, inside the caller's transaction (none
of them commits). ``tests/services/test_ledger_only_writer.py`` fails if any other module
issues such a statement.

* ``open_refund`` reserves an amount with one conditional UPDATE (concurrent writers
  serialise on the payment row and each re-checks the condition against the latest
  committed values, so two refunds can never take the same money) and writes the refund,
  PENDING, with its first timeline event. The CHECK constraint on ``payments`` backs it.
* ``observe`` records one answer from Antom: it reads the refund under a row lock, asks
  the outcome policy (``web/rules/outcomes.py``) what the answer means, and applies the
  verdict — the status move the transition table (``web/rules/lifecycle.py``) allows,
  its money effect, the refund's bookkeeping, the timeline event, the alert.
* ``book_external`` records a refund Antom made without the desk, reserved like any other.
* ``reverse`` records Antom's reversal of a succeeded refund (the settlement report's
  REFUND_REVERSAL row): SUCCEEDED → REVERSED, the amount kept out of reach;
  ``release_reversal`` is a lead's decision to make it refundable again.
* ``create_payment``, ``set_captured`` and ``add_capture`` keep a payment's captured
  amount, never below what its refunds hold.

Every event names its cause: the source (agent, Antom's response, webhook, poller, …),
the person if any, and the request id of the HTTP request or poller pass behind it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.messages import NOT_FINAL_CODES, parse_time
from web.antom.money import Money
from web.models import AlertKind, EventSource, Payment, Refund, RefundEvent, RefundStatus, utcnow
from web.rules.lifecycle import INITIAL, INITIAL_STATES, Effect, effect_of, release_effect
from web.rules.outcomes import (
    DEFAULT_UNKNOWN_LIMIT,
    Kind,
    Observation,
    RefundFacts,
    Verdict,
    decide,
)
from web.rules.refunds import EXTERNAL_REASON, EXTERNAL_REASON_TEXT
from web.services import audit, orders
from web.services.alerts import raise_alert

SUMMARY_MAX = 256  # RefundEvent.summary


class LedgerError(Exception):
    """A move the transition table does not allow, or a row that vanished mid-move."""


@dataclass(frozen=True, slots=True)
class Cause:
    """Who or what caused a change: the timeline's source, the person if any, and the
    request id of the HTTP request (or poller pass) behind it."""

    source: EventSource
    request_id: str | None = None
    actor_id: int | None = None
    # The person's request as the audit trail records it (IP, user agent, email).
    who: audit.Actor | None = None

    def actor(self) -> audit.Actor:
        who = self.who or audit.Actor()
        return audit.Actor(
            user_id=self.actor_id,
            label=who.label or self.source.value,
            ip=who.ip,
            user_agent=who.user_agent,
            request_id=self.request_id,
        )


def facts_of(refund: Refund) -> RefundFacts:
    return RefundFacts(
        status=RefundStatus(refund.status),
        amount=Money(refund.amount_minor, refund.currency),
        outcome_unknown=refund.outcome_unknown,
        unknown_inquiries=refund.unknown_inquiries,
    )


# ---------------------------------------------------------------- opening refunds


@dataclass(frozen=True, slots=True)
class Expected:
    """The payment as the agent's form saw it: a reservation against anything else fails."""

    refundable_minor: int
    refund_count: int


async def open_refund(
    session: AsyncSession,
    payment: Payment,
    *,
    amount_minor: int,
    expected: Expected | None,
    max_refunds: int | None,
    refund: Refund,
    cause: Cause,
    summary: str,
    detail: dict[str, Any] | None = None,
    initial: RefundStatus = INITIAL,
) -> Refund | None:
    """Reserve ``amount_minor`` on ``payment`` if, at this instant, the rules still allow
    it, and write ``refund`` (``initial``: PENDING to send now, AWAITING_APPROVAL to wait
    for a second person) with its first event; None when the payment moved.
    """
    if initial not in INITIAL_STATES:
        raise LedgerError(f"a refund is never written ahead as {initial}")
    reserved = await reserve(
        session, payment, amount_minor, expected=expected, max_refunds=max_refunds
    )
    if not reserved:
        return None
    refund.status = initial
    refund.amount_minor = amount_minor
    session.add(refund)
    await session.flush()
    action = (
        audit.Action.REFUND_APPROVAL_REQUESTED
        if initial is RefundStatus.AWAITING_APPROVAL
        else audit.Action.REFUND_REQUESTED
    )
    await _event(
        session, refund, cause, summary, detail, from_status=None, to_status=initial, action=action
    )
    return refund


# ---------------------------------------------------------------- four eyes


async def decide_request(
    session: AsyncSession,
    refund_pk: int,
    *,
    approve: bool,
    revision: int,
    cause: Cause,
    summary: str,
    note: str | None = None,
    expired: bool = False,
) -> Refund | None:
    """A person's decision on a request awaiting approval (or its expiry): approved, it
    becomes PENDING (still reserved) for the one send path; rejected or expired, its money
    is released. None when the request is no longer awaiting, or was edited since the
    decider saw it (``revision``): that approval is void."""
    refund = await _locked(session, refund_pk)
    if refund.status != RefundStatus.AWAITING_APPROVAL or refund.revision != revision:
        return None
    target = RefundStatus.PENDING if approve else RefundStatus.REJECTED
    values: dict[str, Any] = {
        "decided_by": cause.actor_id,
        "decided_at": utcnow(),
        "decision_note": (note or "").strip()[:500] or None,
        "approval_expires_at": None,
    }
    if approve:
        values["next_check_at"] = utcnow()
    await _move(session, refund, RefundStatus.AWAITING_APPROVAL, target, values)
    if approve:
        action = audit.Action.REFUND_APPROVED
    else:
        action = audit.Action.REFUND_EXPIRED if expired else audit.Action.REFUND_REJECTED
    await _event(
        session,
        refund,
        cause,
        summary,
        {"note": values["decision_note"], "revision": revision},
        from_status=RefundStatus.AWAITING_APPROVAL,
        to_status=target,
        action=action,
    )
    fresh = await session.get(Refund, refund_pk, populate_existing=True)
    assert fresh is not None
    return typed(fresh)


@dataclass(frozen=True, slots=True)
class Amendment:
    """A requester's edit of a request awaiting approval."""

    amount_minor: int
    reason: str
    reason_text: str
    note: str | None
    ticket_ref: str | None
    approval_reason: str | None  # None: under every cap now, so it may go at once


async def amend_request(
    session: AsyncSession,
    refund_pk: int,
    *,
    revision: int,
    change: Amendment,
    cause: Cause,
    summary: str,
) -> Refund | None:
    """Edit a request awaiting approval: the reservation follows the new amount (only if
    the payment can hold it) and ``revision`` moves, voiding any approval given for the
    old one. Without an approval reason left it becomes PENDING, to be sent. None when
    the request is no longer awaiting, was edited meanwhile, or the money is not there."""
    refund = await _locked(session, refund_pk)
    if refund.status != RefundStatus.AWAITING_APPROVAL or refund.revision != revision:
        return None
    delta = change.amount_minor - refund.amount_minor
    if delta:
        refundable = (
            col(Payment.captured_minor) - col(Payment.refunded_minor) - col(Payment.reserved_minor)
        )
        held = await session.exec(
            sa.update(Payment)
            .where(col(Payment.id) == refund.payment_pk, refundable >= delta)
            .values(reserved_minor=col(Payment.reserved_minor) + delta, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if held.rowcount != 1:
            return None
    before = {
        "amount_minor": refund.amount_minor,
        "reason": refund.reason,
        "note": refund.note,
        "ticket_ref": refund.ticket_ref,
    }
    values: dict[str, Any] = {
        "amount_minor": change.amount_minor,
        "reason": change.reason,
        "reason_text": change.reason_text,
        "note": change.note,
        "ticket_ref": change.ticket_ref,
        "approval_reason": change.approval_reason,
        "revision": refund.revision + 1,
    }
    goes_now = change.approval_reason is None
    if goes_now:
        values |= {"approval_expires_at": None, "next_check_at": utcnow()}
        await _move(session, refund, RefundStatus.AWAITING_APPROVAL, RefundStatus.PENDING, values)
    else:
        await session.exec(
            sa.update(Refund)
            .where(col(Refund.id) == refund_pk)
            .values(**values, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    after = {k: values[k] for k in before}
    await _event(
        session,
        refund,
        cause,
        summary,
        {"before": before, "after": after},
        from_status=RefundStatus.AWAITING_APPROVAL if goes_now else None,
        to_status=RefundStatus.PENDING if goes_now else None,
        action=audit.Action.REFUND_EDITED,
    )
    fresh = await session.get(Refund, refund_pk, populate_existing=True)
    assert fresh is not None
    return typed(fresh)


async def _locked(session: AsyncSession, refund_pk: int) -> Refund:
    return (
        await session.exec(
            select(Refund)
            .where(col(Refund.id) == refund_pk)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()


async def book_external(
    session: AsyncSession,
    payment: Payment,
    *,
    refund_request_id: str,
    refund_id: str | None,
    amount: Money,
    cause: Cause,
    summary: str,
    detail: dict[str, Any] | None = None,
) -> Refund | None:
    """Record a refund Antom made without the desk, held as PROCESSING like one the desk
    just sent; None if the desk's books cannot hold it (wrong currency, over captured).
    The caller then ``observe``s what Antom said about it, so money moves the usual way.
    """
    if amount.currency != payment.currency or amount.minor <= 0:
        return None
    if not await reserve(session, payment, amount.minor, expected=None, max_refunds=None):
        return None
    refund = Refund(
        refund_request_id=refund_request_id,
        payment_pk=payment.id or 0,
        refund_id=refund_id,
        currency=amount.currency,
        amount_minor=amount.minor,
        status=RefundStatus.PROCESSING,
        reason=EXTERNAL_REASON,
        reason_text=EXTERNAL_REASON_TEXT,
        note="Made outside the desk (e.g. Antom Dashboard)",
        external=True,
    )
    session.add(refund)
    await session.flush()
    await _event(session, refund, cause, summary, detail, from_status=None, to_status=refund.status)
    return refund


async def reserve(
    session: AsyncSession,
    payment: Payment,
    amount_minor: int,
    *,
    expected: Expected | None,
    max_refunds: int | None,
) -> bool:
    refundable = (
        col(Payment.captured_minor) - col(Payment.refunded_minor) - col(Payment.reserved_minor)
    )
    conditions: list[sa.ColumnElement[bool]] = [
        col(Payment.id) == payment.id,
        refundable >= amount_minor,
    ]
    if expected is not None:
        # A desk refund: the payment must be refundable and look as the form saw it.
        conditions += [
            col(Payment.status) == "SUCCESS",
            sa.not_(col(Payment.dispute_open)),
            refundable == expected.refundable_minor,
            col(Payment.refund_count) == expected.refund_count,
        ]
    if max_refunds is not None:
        conditions.append(col(Payment.refund_count) < max_refunds)
    result = await session.exec(
        sa.update(Payment)
        .where(*conditions)
        .values(
            reserved_minor=col(Payment.reserved_minor) + amount_minor,
            refund_count=col(Payment.refund_count) + 1,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# ---------------------------------------------------------------- answers from Antom


async def observe(
    session: AsyncSession,
    refund_pk: int,
    seen: Observation,
    *,
    cause: Cause,
    detail: dict[str, Any] | None = None,
    next_check_at: datetime | None = None,
    count_attempt: bool = False,
    retry_note: str | None = None,
    unknown_limit: int = DEFAULT_UNKNOWN_LIMIT,
) -> tuple[Verdict, Refund]:
    """Record one answer from Antom about a refund, as the outcome policy decides.

    ``next_check_at`` is when to ask Antom next if the refund stays unsettled;
    ``count_attempt`` counts a refund call; ``retry_note`` goes on the timeline when the
    verdict asks for a retry the caller will make. Returns the verdict and the refund as it now
    stands. Does not commit.
    """
    refund = await _locked(session, refund_pk)
    facts = facts_of(refund)
    verdict = decide(facts, seen, unknown_limit=unknown_limit)
    values = _bookkeeping(refund, seen, verdict, next_check_at, count_attempt)
    written: sa.Row[Any] | None = None
    if verdict.to is not None:
        written = await _move(session, refund, facts.status, verdict.to, values)
    elif values:
        written = (
            await session.exec(
                sa.update(Refund)
                .where(col(Refund.id) == refund_pk)
                .values(**values)
                .returning(*_REFUND_COLUMNS)
                .execution_options(synchronize_session=False)
            )
        ).one()
    if verdict.to is not None or verdict.alert is not None or _worth_a_line(seen, verdict):
        await _event(
            session,
            refund,
            cause,
            verdict.summary + (f"; {retry_note}" if verdict.retry and retry_note else ""),
            (detail or {}) | {"outcome": verdict.label, "antom_said": seen.said()},
            from_status=facts.status if verdict.to else None,
            to_status=verdict.to,
            action=_audit_action(seen, verdict),
        )
    if verdict.alert is not None:
        await raise_alert(
            session,
            verdict.alert,
            f"refund:{refund_pk}",
            f"Refund {refund.refund_request_id}: {verdict.alert_message}",
            refund_pk=refund_pk,
            payment_pk=refund.payment_pk,
        )
    # The row as the update wrote it (RETURNING), not read again: this is the hot path
    # of webhooks, the poller and every submit. Nothing else here writes the refund row.
    return verdict, typed(refund) if written is None else _as_written(refund, written)


def _audit_action(seen: Observation, verdict: Verdict) -> audit.Action | None:
    """Every call to Antom and every final result is audited; the poller's "still
    processing" is not."""
    if verdict.to is not None and verdict.to.final:
        return audit.Action.REFUND_RESULT
    return audit.Action.REFUND_SENT if seen.kind is Kind.CALL else None


def _worth_a_line(seen: Observation, verdict: Verdict) -> bool:
    """Every refund call goes on the timeline; a repeated "still processing" from the
    poller does not."""
    return seen.kind is Kind.CALL or verdict.label in ("resend", "confirming")


def _bookkeeping(
    refund: Refund,
    seen: Observation,
    verdict: Verdict,
    next_check_at: datetime | None,
    count_attempt: bool,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if count_attempt:
        values["attempts"] = col(Refund.attempts) + 1
    if seen.refund_id and not refund.refund_id:
        values["refund_id"] = seen.refund_id[:64]
    if seen.code is not None and not (verdict.to is RefundStatus.FAILED and _says_nothing(seen)):
        values["result_code"] = seen.code[:64]
        values["result_message"] = (seen.message or "")[:256] or None
    if seen.acquirer_reference_no:
        values["acquirer_reference_no"] = seen.acquirer_reference_no[:64]
    if seen.acquirer_info is not None:
        values["acquirer_info"] = _jsonable(seen.acquirer_info)
    if verdict.outcome_unknown is not None and verdict.outcome_unknown != refund.outcome_unknown:
        values["outcome_unknown"] = verdict.outcome_unknown
    if verdict.unknown_inquiries is not None:
        values["unknown_inquiries"] = verdict.unknown_inquiries
    if verdict.settles:
        values |= {"next_check_at": None, "lease_owner": None, "lease_until": None}
        if verdict.to is RefundStatus.SUCCEEDED:
            values["refunded_at"] = parse_time(seen.refund_time) or utcnow()
    elif verdict.check_soon:
        values["next_check_at"] = utcnow()
    elif next_check_at is not None:
        values["next_check_at"] = next_check_at
    return values


def _says_nothing(seen: Observation) -> bool:
    # A failure confirmed by inquiry carries the inquiry's own code, not the refund's:
    # keep the code Antom gave when it first reported the failure.
    return seen.code in NOT_FINAL_CODES or seen.code == "SUCCESS"


async def _move(
    session: AsyncSession,
    refund: Refund,
    current: RefundStatus,
    target: RefundStatus,
    values: dict[str, Any],
) -> sa.Row[Any]:
    """Move the locked ``refund`` through the transition table, with its money effect;
    returns the row as written (``_as_written``), ``refund`` itself is left as it was."""
    effect = effect_of(current, target)
    if effect is None:
        raise LedgerError(f"a refund never moves from {current} to {target}")
    at = utcnow()
    written = (
        await session.exec(
            sa.update(Refund)
            .where(col(Refund.id) == refund.id, col(Refund.status) == current)
            .values(status=target, updated_at=at, **values)
            .returning(*_REFUND_COLUMNS)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if written is None:
        raise LedgerError(f"refund {refund.id} changed under its row lock")
    await _apply_effect(session, refund, effect, at)
    if target is RefundStatus.FAILED:
        # A failed refund goes on the leads' "Failed refunds" worklist in the same
        # transaction: no failure without its item, none rolled back with one left over.
        code = values.get("result_code") or refund.result_code
        await raise_alert(
            session,
            AlertKind.REFUND_FAILED,
            f"refund:{refund.id}",
            f"Refund {refund.refund_request_id} of "
            f"{Money(refund.amount_minor, refund.currency)} failed"
            + (f" ({code})" if isinstance(code, str) and code else "")
            + "; the money was released",
            refund_pk=refund.id,
            payment_pk=refund.payment_pk,
        )
    return written


async def _apply_effect(
    session: AsyncSession, refund: Refund, effect: Effect, at: datetime
) -> None:
    """A move's money effect on the refund's payment (``web/rules/lifecycle.py``)."""
    amount = refund.amount_minor
    money: dict[str, Any] = {}
    if effect is Effect.BOOK:
        money = {
            "reserved_minor": col(Payment.reserved_minor) - amount,
            "refunded_minor": col(Payment.refunded_minor) + amount,
        }
    elif effect is Effect.RELEASE:
        # A failed refund no longer counts towards the method's refund limit either.
        money = {
            "reserved_minor": col(Payment.reserved_minor) - amount,
            "refund_count": col(Payment.refund_count) - 1,
        }
    elif effect is Effect.UNBOOK:
        # A reversed refund a lead released: its money is refundable again, and it no
        # longer counts towards the method's refund limit.
        money = {
            "refunded_minor": col(Payment.refunded_minor) - amount,
            "refund_count": col(Payment.refund_count) - 1,
        }
    if money:
        await session.exec(
            sa.update(Payment)
            .where(col(Payment.id) == refund.payment_pk)
            .values(**money, updated_at=at)
            .execution_options(synchronize_session=False)
        )


# ---------------------------------------------------------------- reversals


async def reverse(
    session: AsyncSession,
    refund_pk: int,
    *,
    returned_minor: int,
    reversed_at: datetime,
    cause: Cause,
    summary: str,
    detail: dict[str, Any] | None = None,
) -> Refund | None:
    """Antom reversed a succeeded refund (its settlement report says so): SUCCEEDED →
    REVERSED. The amount stays booked as refunded, so nobody can refund it again until a
    lead decides (``release_reversal``); the timeline says what came back to the merchant.
    None when the refund is not SUCCEEDED (already reversed, or the desk disagrees)."""
    refund = await _locked(session, refund_pk)
    if refund.status != RefundStatus.SUCCEEDED:
        return None
    values = {"reversed_at": reversed_at, "reversed_minor": returned_minor}
    await _move(session, refund, RefundStatus.SUCCEEDED, RefundStatus.REVERSED, values)
    await _event(
        session,
        refund,
        cause,
        summary,
        (detail or {}) | {"returned_minor": returned_minor, "currency": refund.currency},
        from_status=RefundStatus.SUCCEEDED,
        to_status=RefundStatus.REVERSED,
        action=audit.Action.REFUND_REVERSED,
    )
    fresh = await session.get(Refund, refund_pk, populate_existing=True)
    assert fresh is not None
    return typed(fresh)


async def release_reversal(
    session: AsyncSession, refund_pk: int, *, cause: Cause, note: str, summary: str
) -> Refund | None:
    """A lead's decision: a reversed refund's amount is refundable again (its refund no
    longer counts on the payment). Once: None when it is not reversed or already released.
    The refund stays REVERSED; who, when and why are kept on it and on the timeline."""
    refund = await _locked(session, refund_pk)
    effect = release_effect(RefundStatus(refund.status))
    if effect is None or refund.reversal_released_at is not None:
        return None
    at = utcnow()
    marked = await session.exec(
        sa.update(Refund)
        .where(
            col(Refund.id) == refund_pk,
            col(Refund.status) == refund.status,
            col(Refund.reversal_released_at).is_(None),
        )
        .values(
            reversal_released_at=at,
            reversal_released_by=cause.actor_id,
            reversal_note=note.strip()[:500] or None,
            updated_at=at,
        )
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount != 1:
        raise LedgerError(f"refund {refund_pk} changed under its row lock")
    await _apply_effect(session, refund, effect, at)
    await _event(
        session,
        refund,
        cause,
        summary,
        {"note": note.strip()[:500], "released_minor": refund.amount_minor},
        from_status=None,
        to_status=None,
        action=audit.Action.REFUND_REVERSAL_RELEASED,
    )
    fresh = await session.get(Refund, refund_pk, populate_existing=True)
    assert fresh is not None
    return typed(fresh)


# ---------------------------------------------------------------- the timeline


async def record_event(
    session: AsyncSession,
    refund: Refund,
    *,
    cause: Cause,
    summary: str,
    detail: dict[str, Any] | None = None,
) -> RefundEvent:
    """A timeline entry that changes nothing (a re-send, a person's note, …)."""
    return await _event(session, refund, cause, summary, detail, from_status=None, to_status=None)


async def _event(
    session: AsyncSession,
    refund: Refund,
    cause: Cause,
    summary: str,
    detail: dict[str, Any] | None,
    *,
    from_status: RefundStatus | None,
    to_status: RefundStatus | None,
    action: audit.Action | None = None,
) -> RefundEvent:
    """One timeline entry; with ``action``, its audit row too (same transaction)."""
    assert refund.id is not None
    event = RefundEvent(
        refund_pk=refund.id,
        at=utcnow(),
        source=cause.source,
        actor_id=cause.actor_id,
        from_status=from_status,
        to_status=to_status,
        summary=clip(summary),
        detail=_jsonable(detail),
        request_id=cause.request_id,
    )
    session.add(event)
    if action is not None:
        await audit.record(
            session,
            action,
            cause.actor(),
            object_type="refund",
            object_id=refund.refund_request_id,
            after={"status": to_status.value} if to_status is not None else None,
            detail={
                "summary": event.summary,
                "amount_minor": refund.amount_minor,
                "currency": refund.currency,
            },
        )
    await session.flush()
    return event


def clip(text: str, limit: int = SUMMARY_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    if detail is None:
        return None
    value: dict[str, Any] = json.loads(json.dumps(detail, default=str))
    return value


# Every column of the refunds table, in order: what an UPDATE ... RETURNING hands back.
_REFUND_COLUMNS = tuple(Refund.__table__.c)  # type: ignore[attr-defined]


def _as_written(refund: Refund, row: sa.Row[Any]) -> Refund:
    """``refund`` set to the row an UPDATE ... RETURNING ``_REFUND_COLUMNS`` returned, as
    loaded state (nothing for the session to flush)."""
    for column, value in zip(_REFUND_COLUMNS, row, strict=True):
        set_committed_value(refund, column.key, value)
    return typed(refund)


def typed(refund: Refund) -> Refund:
    """The status as the RefundStatus its annotation promises (the column holds a string),
    so callers may compare with ``is``."""
    set_committed_value(refund, "status", RefundStatus(refund.status))
    return refund


# ---------------------------------------------------------------- payments


async def create_payment(session: AsyncSession, payment: Payment) -> Payment:
    """Store a payment the desk has just learnt of (webhook or inquiry), with the buyer
    and order details the merchant's order feed sent before it arrived, if any."""
    if payment.captured_minor > payment.amount_minor:
        payment.captured_minor = payment.amount_minor
    session.add(payment)
    await session.flush()
    await orders.attach_waiting(session, payment)
    return payment


async def set_captured(session: AsyncSession, payment: Payment, captured_minor: int) -> None:
    """Raise the captured amount to what Antom reports; it never goes down (a lower figure
    is an older view) and never above the payment."""
    target = min(captured_minor, payment.amount_minor)
    await session.exec(
        sa.update(Payment)
        .where(col(Payment.id) == payment.id, col(Payment.captured_minor) < target)
        .values(captured_minor=target, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await _reload(session, payment)


async def add_capture(session: AsyncSession, payment: Payment, amount_minor: int) -> None:
    """One capture more (each is applied once: its notification's dedupe key)."""
    total = col(Payment.captured_minor) + amount_minor
    await session.exec(
        sa.update(Payment)
        .where(col(Payment.id) == payment.id)
        .values(
            captured_minor=sa.case(
                (total > col(Payment.amount_minor), col(Payment.amount_minor)), else_=total
            ),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    await _reload(session, payment)


async def _reload(session: AsyncSession, payment: Payment) -> None:
    """The caller's object gets the new figures; touching it also tells open pages
    (``web/live.py`` announces the payments a commit flushed)."""
    await session.refresh(payment)
    payment.updated_at = utcnow()
