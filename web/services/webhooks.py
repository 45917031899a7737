"""Antom notifications: verify, store, then apply. No web framework here.

The order is the point (reliability notes §2.2):

1. Verify the RSA signature over the exact bytes received (``web.antom.notifications``).
   Anything that fails is refused with a reason, logged, and kept only in
   ``rejected_webhooks`` (capped) for diagnosis.
2. Store the notification in ``webhook_events`` under a dedupe key, in its own
   transaction: once that commits, the fact cannot be lost, and a re-delivery of the same
   fact hits the unique key and changes nothing. A verified body the desk cannot use is
   stored too (under its digest), acknowledged and raised to a lead: refusing it would
   only make Antom re-send it for a day.
3. Apply it in a following transaction. What a refund notification means is the outcome
   policy's call, recorded by the ledger (``web.services.ledger.observe``); payments,
   captures and disputes are updated here, their money through the ledger. A
   notification about a payment the desk does not know yet (a card's ``CAPTURE_RESULT``
   often beats its ``PAYMENT_RESULT``) is kept as *waiting* and applied as soon as the
   payment arrives (``apply_waiting``), by notification or by "Find a payment in Antom".
   A crash between 2 and 3 leaves ``processed_at`` empty: the next delivery or the
   poller's start-up recovery (``process_pending``) finishes the job.

Nothing here calls Antom: the acknowledgement must be fast and must not depend on
anyone else being up.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.messages import parse_time, wire_text
from web.antom.notifications import (
    Notification,
    NotificationError,
    Rejected,
    WebhookConfig,
    parse,
    unusable_key,
    verify,
)
from web.db import session_scope
from web.models import (
    AlertKind,
    EventSource,
    Payment,
    Refund,
    RejectedWebhook,
    WebhookEvent,
    utcnow,
)
from web.rules.outcomes import Observation
from web.rules.refunds import profile_for
from web.services import ledger
from web.services.alerts import raise_alert

log = logging.getLogger(__name__)

# Rejected attempts are evidence, not data: keep the newest few, bounded in size.
REJECTED_KEEP = 500
REJECTED_EXCERPT = 4096
UNUSABLE_TYPE = "UNUSABLE"
# Dispute notifications that open or close a dispute; others are stored only.
DISPUTE_OPENING = frozenset({"DISPUTE_CREATED"})
DISPUTE_CLOSING = frozenset({"DISPUTE_JUDGED", "DISPUTE_CANCELLED"})
# Antom's paymentStatus values, ordered: a payment's recorded status never moves back.
PAYMENT_STATUS_RANK = {"PENDING": 0, "PROCESSING": 1, "FAIL": 2, "CANCELLED": 2, "SUCCESS": 3}
# Stored, about a payment the desk does not know yet: applied when the payment arrives.
WAITING = "waiting"


@dataclass(slots=True)
class IngestResult:
    status_code: int
    accepted: bool
    reason: str | None = None  # why it was refused
    outcome: str | None = None  # what applying it did (applied, duplicate, stale, ...)
    event_id: int | None = None
    refund_pks: list[int] = field(default_factory=list)
    payment_pks: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Applied:
    outcome: str
    refund_pks: list[int] = field(default_factory=list)
    payment_pks: list[int] = field(default_factory=list)


async def record_rejection(
    engine: AsyncEngine,
    *,
    reason: str,
    detail: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None,
    remote_addr: str | None,
    request_id: str | None,
    now: datetime | None = None,
) -> None:
    """Keep a refused attempt for diagnosis; the table never grows past ``REJECTED_KEEP``."""
    raw = body or b""
    row = RejectedWebhook(
        received_at=now or utcnow(),
        reason=reason[:32],
        detail=detail[:256],
        path=path[:256],
        client_id=(headers.get("client-id") or None) and headers["client-id"][:128],
        request_time=(headers.get("request-time") or None) and headers["request-time"][:64],
        signature=(headers.get("signature") or None) and headers["signature"][:1024],
        body_size=len(raw),
        body_sha256=hashlib.sha256(raw).hexdigest(),
        body_excerpt=raw[:REJECTED_EXCERPT].decode("utf-8", errors="replace"),
        remote_addr=remote_addr[:64] if remote_addr else None,
        request_id=request_id,
    )
    try:
        async with session_scope(engine) as session:
            session.add(row)
            await session.flush()
            # Trim in the same transaction, so a flood cannot grow the table.
            cutoff = (row.id or 0) - REJECTED_KEEP
            if cutoff > 0:
                await session.exec(
                    sa.delete(RejectedWebhook).where(col(RejectedWebhook.id) <= cutoff)
                )
    except Exception:
        # Diagnosis storage must never turn a refusal into a 500 (or a 2xx).
        log.exception("webhook rejected-attempt storage failed reason=%s", reason)


async def ingest(
    engine: AsyncEngine,
    config: WebhookConfig,
    *,
    headers: Mapping[str, str],
    body: bytes,
    path: str,
    remote_addr: str | None = None,
    request_id: str | None = None,
) -> IngestResult:
    """Verify, store and apply one notification. Never raises for a bad notification."""
    try:
        client_id, request_time = verify(config, headers, body)
    except Rejected as exc:
        log.warning(
            "webhook refused reason=%s detail=%s path=%s client_id=%s bytes=%d "
            "remote=%s request_id=%s",
            exc.reason,
            exc.detail,
            path,
            (headers.get("client-id") or "")[:64],
            len(body),
            remote_addr,
            request_id,
        )
        await record_rejection(
            engine,
            reason=exc.reason,
            detail=exc.detail,
            path=path,
            headers=headers,
            body=body,
            remote_addr=remote_addr,
            request_id=request_id,
        )
        return IngestResult(status_code=exc.status_code, accepted=False, reason=exc.reason)

    try:
        notification = parse(body)
    except NotificationError as exc:
        return await _keep_unusable(engine, body, str(exc), client_id, request_time, request_id)

    row = _inbox_row(notification, body, client_id, request_time, request_id)
    once = await _store_and_apply(engine, row, notification, request_id=request_id)
    if once is not None:
        event_id, applied_once = once
        result = IngestResult(200, True, outcome=applied_once.outcome, event_id=event_id)
        result.refund_pks, result.payment_pks = applied_once.refund_pks, applied_once.payment_pks
        _log_accepted(notification, result, request_id)
        return result

    # A re-delivery (the dedupe key exists), or a race with a twin delivery: store and
    # apply in two steps, each of which tolerates the other having happened already.
    event_id, fresh = await _store(engine, notification, body, client_id, request_time, request_id)
    result = IngestResult(status_code=200, accepted=True, event_id=event_id)
    try:
        applied = await _apply_stored(engine, event_id, notification, request_id=request_id)
    except Exception:
        # Stored, so acknowledged: start-up recovery (process_pending) applies it again.
        log.exception("webhook event=%s stored but not applied request_id=%s", event_id, request_id)
        await _alert_unapplied(engine, event_id, "applying it failed; it is retried at start-up")
        result.outcome = "unapplied"
        return result
    if applied is None:
        # Stored and applied before (or being applied right now by a twin delivery).
        result.outcome = "duplicate" if not fresh else "in_progress"
    else:
        result.outcome = applied.outcome
        result.refund_pks, result.payment_pks = applied.refund_pks, applied.payment_pks
    _log_accepted(notification, result, request_id)
    return result


def _log_accepted(n: Notification, result: IngestResult, request_id: str | None) -> None:
    log.info(
        "webhook accepted type=%s key=%s outcome=%s event=%s request_id=%s",
        n.notify_type,
        n.dedupe_key,
        result.outcome,
        result.event_id,
        request_id,
    )


def _inbox_row(
    n: Notification, body: bytes, client_id: str, request_time: str, request_id: str | None
) -> WebhookEvent:
    return WebhookEvent(
        dedupe_key=n.dedupe_key,
        notify_type=n.notify_type[:40],
        refund_request_id=n.refund_request_id,
        refund_id=n.refund_id,
        payment_id=n.payment_id,
        status=n.status[:32] if n.status else None,
        body=body.decode("utf-8", errors="replace"),
        client_id=client_id[:128],
        request_time=request_time[:64],
        request_id=request_id,
    )


async def _store_and_apply(
    engine: AsyncEngine, row: WebhookEvent, n: Notification, *, request_id: str | None
) -> tuple[int, Applied] | None:
    """The common case in one transaction: a new fact is stored and applied together, so
    it is durable exactly when its effects are. None when the transaction could not
    commit as a whole (a re-delivery's dedupe key, a twin delivery's row, a failure while
    applying): nothing of it stayed, and the two-step path takes over."""
    try:
        async with session_scope(engine) as session:
            row.processed_at = utcnow()
            session.add(row)
            await session.flush()
            assert row.id is not None
            applied = await apply_notification(session, n, event_id=row.id, request_id=request_id)
            row.outcome = applied.outcome
            return row.id, applied
    except IntegrityError:
        return None
    except Exception:
        log.exception("webhook key=%s: applying failed; storing it first", n.dedupe_key)
        return None


async def _keep_unusable(
    engine: AsyncEngine,
    body: bytes,
    problem: str,
    client_id: str,
    request_time: str,
    request_id: str | None,
) -> IngestResult:
    """A verified body the desk cannot use: stored, acknowledged, raised to a lead."""
    log.warning("webhook verified but unusable (%s) request_id=%s", problem, request_id)
    n = Notification(notify_type=UNUSABLE_TYPE, dedupe_key=unusable_key(body), body={})
    event_id, fresh = await _store(engine, n, body, client_id, request_time, request_id)
    if fresh:
        async with session_scope(engine) as session:
            await session.exec(
                sa.update(WebhookEvent)
                .where(col(WebhookEvent.id) == event_id)
                .values(processed_at=utcnow(), outcome="unusable")
            )
        await _alert_unapplied(engine, event_id, f"the desk cannot read it ({problem})")
    return IngestResult(status_code=200, accepted=True, outcome="unusable", event_id=event_id)


async def _alert_unapplied(engine: AsyncEngine, event_id: int, why: str) -> None:
    async with session_scope(engine) as session:
        await raise_alert(
            session,
            AlertKind.UNAPPLIED_NOTIFICATION,
            f"webhook_event:{event_id}",
            f"A verified Antom notification (event {event_id}) was kept but not applied: {why}",
            webhook_event_pk=event_id,
        )


async def _store(
    engine: AsyncEngine,
    n: Notification,
    body: bytes,
    client_id: str,
    request_time: str,
    request_id: str | None,
) -> tuple[int, bool]:
    """Insert the inbox row in its own transaction; (id, False) if it was already there."""
    try:
        async with session_scope(engine) as session:
            event = _inbox_row(n, body, client_id, request_time, request_id)
            session.add(event)
            await session.flush()
            assert event.id is not None
            return event.id, True
    except IntegrityError:
        async with session_scope(engine) as session:
            existing = (
                await session.exec(
                    select(WebhookEvent).where(WebhookEvent.dedupe_key == n.dedupe_key)
                )
            ).one()
            assert existing.id is not None
            return existing.id, False


async def _apply_stored(
    engine: AsyncEngine,
    event_id: int,
    notification: Notification | None = None,
    *,
    request_id: str | None,
) -> Applied | None:
    """Apply a stored event once; None when someone already applied it."""
    try:
        async with session_scope(engine) as session:
            # Claim the event: the conditional UPDATE serialises concurrent deliveries of
            # the same fact (PostgreSQL row lock, SQLite's single writer).
            claimed = await session.exec(
                sa.update(WebhookEvent)
                .where(col(WebhookEvent.id) == event_id, col(WebhookEvent.processed_at).is_(None))
                .values(processed_at=utcnow())
            )
            if claimed.rowcount != 1:
                return None
            event = await session.get(WebhookEvent, event_id)
            assert event is not None
            if notification is None:
                notification = parse(event.body.encode("utf-8"))
            # Finished by recovery: the timeline still names the delivery that brought it.
            applied = await apply_notification(
                session, notification, event_id=event_id, request_id=request_id or event.request_id
            )
            event.outcome = applied.outcome
            return applied
    except IntegrityError:
        # A concurrent delivery created the same external refund first: nothing to add.
        log.info("webhook event=%s lost a race to an identical delivery", event_id)
        async with session_scope(engine) as session:
            await session.exec(
                sa.update(WebhookEvent)
                .where(col(WebhookEvent.id) == event_id, col(WebhookEvent.processed_at).is_(None))
                .values(processed_at=utcnow(), outcome="duplicate")
            )
        return Applied("duplicate")


async def process_pending(engine: AsyncEngine, *, limit: int = 500) -> list[Applied]:
    """Finish events stored but never applied (a crash between the two transactions)."""
    async with session_scope(engine) as session:
        ids = list(
            (
                await session.exec(
                    select(WebhookEvent.id)
                    .where(col(WebhookEvent.processed_at).is_(None))
                    .order_by(col(WebhookEvent.id))
                    .limit(limit)
                )
            ).all()
        )
    done: list[Applied] = []
    for event_id in ids:
        if event_id is None:
            continue
        applied = await _apply_stored(engine, event_id, request_id=None)
        if applied:
            done.append(applied)
    return done


async def apply_notification(
    session: AsyncSession, n: Notification, *, event_id: int | None, request_id: str | None
) -> Applied:
    cause = ledger.Cause(EventSource.WEBHOOK, request_id)
    if n.notify_type == "REFUND_RESULT":
        return await _apply_refund(session, n, event_id=event_id, cause=cause)
    if n.notify_type in ("PAYMENT_RESULT", "PAYMENT_PENDING"):
        return await _apply_payment(session, n, request_id=request_id)
    if n.notify_type == "CAPTURE_RESULT":
        return await _apply_capture(session, n)
    if n.notify_type == "DISPUTE":
        return await _apply_dispute(session, n)
    return Applied("ignored")


async def apply_waiting(session: AsyncSession, payment: Payment, *, request_id: str | None) -> int:
    """Apply, in the order they came, notifications that arrived before ``payment``."""
    waiting = list(
        (
            await session.exec(
                select(WebhookEvent)
                .where(
                    WebhookEvent.payment_id == payment.payment_id,
                    WebhookEvent.outcome == WAITING,
                )
                .order_by(col(WebhookEvent.id))
            )
        ).all()
    )
    for event in waiting:
        applied = await apply_notification(
            session,
            parse(event.body.encode("utf-8")),
            event_id=event.id,
            request_id=request_id or event.request_id,
        )
        event.outcome = applied.outcome if applied.outcome != WAITING else "orphan"
        log.info("webhook event=%s applied late: %s", event.id, event.outcome)
    return len(waiting)


async def _find_refund(session: AsyncSession, n: Notification) -> Refund | None:
    if n.refund_request_id:
        found = (
            await session.exec(
                select(Refund).where(Refund.refund_request_id == n.refund_request_id)
            )
        ).first()
        if found is not None:
            return found
    if n.refund_id:
        return (await session.exec(select(Refund).where(Refund.refund_id == n.refund_id))).first()
    return None


async def _apply_refund(
    session: AsyncSession, n: Notification, *, event_id: int | None, cause: ledger.Cause
) -> Applied:
    refund = await _find_refund(session, n)
    if refund is None:
        return await _ingest_external(session, n, event_id=event_id, cause=cause)
    assert refund.id is not None
    verdict, _ = await ledger.observe(
        session,
        refund.id,
        Observation.of_notification(n),
        cause=cause,
        detail=_event_detail(n, event_id, cause.request_id),
    )
    outcome = "applied" if verdict.to is not None else verdict.label
    return Applied(outcome, [refund.id], [refund.payment_pk])


def _event_detail(n: Notification, event_id: int | None, request_id: str | None) -> dict[str, Any]:
    result = n.body.get("result")
    return {
        "notification": n.notify_type,
        "webhook_event": event_id,
        "request_id": request_id,
        "refund_id": n.refund_id,
        "refund_time": wire_text(n.body, "refundTime"),
        "result": result if isinstance(result, dict) else None,
    }


async def _payment_by_antom_id(session: AsyncSession, payment_id: str | None) -> Payment | None:
    if not payment_id:
        return None
    return (await session.exec(select(Payment).where(Payment.payment_id == payment_id))).first()


async def _ingest_external(
    session: AsyncSession, n: Notification, *, event_id: int | None, cause: ledger.Cause
) -> Applied:
    """A refund the desk never issued (made in Antom Dashboard): book it so the
    refundable amount stays right, and flag it for leads."""
    payment = await _payment_by_antom_id(session, n.payment_id)
    subject = f"refund_request:{n.refund_request_id or n.refund_id}"
    if payment is None and n.payment_id:
        return Applied(WAITING)
    if payment is None or n.amount is None or n.refund_request_id is None:
        # No paymentId in the body (Antom's documented notifyRefund has none): keep the
        # event and ask a lead; "Find a payment in Antom" books it from inquiryPayment.
        await raise_alert(
            session,
            AlertKind.ORPHAN_NOTIFICATION,
            subject,
            f"Antom notified refund {n.refund_request_id or n.refund_id} "
            f"({n.status}) for a payment the desk cannot identify",
            payment_pk=payment.id if payment else None,
            webhook_event_pk=event_id,
        )
        return Applied("orphan")
    assert payment.id is not None
    detail = _event_detail(n, event_id, cause.request_id)
    refund = await ledger.book_external(
        session,
        payment,
        refund_request_id=n.refund_request_id,
        refund_id=n.refund_id,
        amount=n.amount,
        cause=cause,
        summary=f"Antom notified {n.status} for a refund made outside the desk",
        detail=detail,
    )
    if refund is None:
        await raise_alert(
            session,
            AlertKind.MISMATCH,
            subject,
            f"Antom refunded {n.amount} on payment {payment.payment_id}, more than the desk "
            "thinks is refundable",
            payment_pk=payment.id,
            webhook_event_pk=event_id,
        )
        return Applied("mismatch", [], [payment.id])
    assert refund.id is not None
    await ledger.observe(
        session, refund.id, Observation.of_notification(n), cause=cause, detail=detail
    )
    await raise_alert(
        session,
        AlertKind.EXTERNAL_REFUND,
        f"refund:{refund.id}",
        f"Refund {n.refund_request_id} of {n.amount} on payment {payment.payment_id} "
        "was made outside the desk",
        refund_pk=refund.id,
        payment_pk=payment.id,
        webhook_event_pk=event_id,
    )
    return Applied("external", [refund.id], [payment.id])


async def _apply_payment(
    session: AsyncSession, n: Notification, *, request_id: str | None
) -> Applied:
    if n.notify_type == "PAYMENT_PENDING":
        status = "PENDING"
    else:
        status = "SUCCESS" if n.status == "S" else "FAIL" if n.status == "F" else "PROCESSING"
    payment = await _payment_by_antom_id(session, n.payment_id)
    now = utcnow()
    method = wire_text(n.body, "paymentMethodType") or (payment.method if payment else "UNKNOWN")
    created = payment is None
    if payment is None:
        if n.amount is None:
            return Applied("ignored")
        payment = await ledger.create_payment(
            session,
            Payment(
                payment_id=n.payment_id or "",
                payment_request_id=n.payment_request_id or n.payment_id or "",
                method=method[:32],
                currency=n.amount.currency,
                amount_minor=n.amount.minor,
                status=status,
            ),
        )
    elif PAYMENT_STATUS_RANK.get(status, 0) < PAYMENT_STATUS_RANK.get(payment.status, 0):
        assert payment.id is not None
        return Applied("stale", [], [payment.id])
    payment.status = status
    if status == "SUCCESS":
        payment.paid_at = payment.paid_at or parse_time(wire_text(n.body, "paymentTime")) or now
    payment.updated_at = now
    await session.flush()
    if status == "SUCCESS" and not profile_for(method).needs_capture:
        # Wallets capture with the payment; cards wait for CAPTURE_RESULT.
        await ledger.set_captured(session, payment, payment.amount_minor)
    if created:
        await apply_waiting(session, payment, request_id=request_id)
    assert payment.id is not None
    return Applied("applied", [], [payment.id])


async def _apply_capture(session: AsyncSession, n: Notification) -> Applied:
    payment = await _payment_by_antom_id(session, n.payment_id)
    if payment is None:
        return Applied(WAITING)
    assert payment.id is not None
    if n.status != "S" or n.amount is None:
        return Applied("ignored", [], [payment.id])
    if n.amount.currency != payment.currency:
        await raise_alert(
            session,
            AlertKind.MISMATCH,
            f"capture:{n.dedupe_key}",
            f"Capture in {n.amount.currency} on a {payment.currency} payment {payment.payment_id}",
            payment_pk=payment.id,
        )
        return Applied("mismatch", [], [payment.id])
    # Each capture is applied once (dedupe key); the total never exceeds the payment.
    await ledger.add_capture(session, payment, n.amount.minor)
    return Applied("applied", [], [payment.id])


async def _apply_dispute(session: AsyncSession, n: Notification) -> Applied:
    payment = await _payment_by_antom_id(session, n.payment_id)
    if payment is None:
        return Applied(WAITING)
    assert payment.id is not None
    if n.status in DISPUTE_OPENING:
        # A late CREATED must not reopen a dispute whose close was already received.
        dispute_id = wire_text(n.body, "disputeId")
        closed = (
            await session.exec(
                select(WebhookEvent.id).where(
                    WebhookEvent.notify_type == "DISPUTE",
                    col(WebhookEvent.status).in_(DISPUTE_CLOSING),
                    col(WebhookEvent.dedupe_key).startswith(f"DISPUTE:{dispute_id}:"),
                )
            )
        ).first()
        if closed is not None:
            return Applied("stale", [], [payment.id])
        payment.dispute_open = True
    elif n.status in DISPUTE_CLOSING:
        payment.dispute_open = False
    else:
        return Applied("ignored", [], [payment.id])
    payment.updated_at = utcnow()
    return Applied("applied", [], [payment.id])
