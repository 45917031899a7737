"""Antom notifications: verify, store, then apply. No web framework here.

The order is the point (reliability notes §2.2):

1. Verify the RSA signature over the exact bytes received, the configured notify path,
   our client id and the sender's ``request-time``. Anything that fails is refused with
   a reason, logged, and kept only in ``rejected_webhooks`` (capped) for diagnosis.
2. Store the notification in ``webhook_events`` under a dedupe key, in its own
   transaction: once that commits, the fact cannot be lost, and a re-delivery of the same
   fact hits the unique key and changes nothing.
3. Apply it in a following transaction. Refund statuses go through
   ``apply_antom_status`` (forward only); payments and disputes are updated here.
   A crash between 2 and 3 leaves ``processed_at`` empty: the next delivery or the
   poller's start-up recovery (``process_pending``) finishes the job.

Nothing here calls Antom: the acknowledgement must be fast and must not depend on
anyone else being up.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom import signing
from web.antom.money import Money, MoneyError
from web.antom.notifications import NotificationError, RefundNotification, verify_notification
from web.db import session_scope
from web.models import (
    Alert,
    AlertKind,
    EventSource,
    Payment,
    Refund,
    RefundStatus,
    RejectedWebhook,
    WebhookEvent,
    utcnow,
)
from web.rules import profile_for

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# Rejected attempts are evidence, not data: keep the newest few, bounded in size.
REJECTED_KEEP = 500
REJECTED_EXCERPT = 4096

REFUND_STATUS_MAP: dict[str, RefundStatus] = {
    "SUCCESS": RefundStatus.SUCCEEDED,
    "FAIL": RefundStatus.FAILED,
    "PROCESSING": RefundStatus.PROCESSING,
}
# Dispute notifications that open or close a dispute; others are stored only.
DISPUTE_OPENING = frozenset({"DISPUTE_CREATED"})
DISPUTE_CLOSING = frozenset({"DISPUTE_JUDGED", "DISPUTE_CANCELLED"})
# Antom's paymentStatus values, ordered: a payment's recorded status never moves back.
PAYMENT_STATUS_RANK = {"PENDING": 0, "PROCESSING": 1, "FAIL": 2, "CANCELLED": 2, "SUCCESS": 3}


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What a notification is checked against; the keys never come from the request."""

    client_id: str
    notify_path: str
    public_keys: tuple[RSAPublicKey, ...]


class Rejected(Exception):
    """A notification that must not be trusted; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str, status_code: int = 401) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class Notification:
    """The parts of a verified notification the desk acts on."""

    notify_type: str
    dedupe_key: str
    body: dict[str, Any]
    status: str | None = None
    refund_request_id: str | None = None
    refund_id: str | None = None
    payment_id: str | None = None
    payment_request_id: str | None = None
    amount: Money | None = None


@dataclass(slots=True)
class IngestResult:
    status_code: int
    accepted: bool
    reason: str | None = None  # why it was refused
    outcome: str | None = None  # what applying it did (applied, duplicate, stale, ...)
    event_id: int | None = None
    refund_pks: list[int] = field(default_factory=list)
    payment_pks: list[int] = field(default_factory=list)


def verify(config: WebhookConfig, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """Check the signature; return (client_id, request_time) or raise ``Rejected``.

    ``headers`` must be case-insensitive (Litestar's and httpx's are).
    """
    if len(body) > MAX_BODY_BYTES:
        raise Rejected("too_large", f"{len(body)} bytes", 413)
    client_id = headers.get("client-id")
    request_time = headers.get("request-time")
    signature = headers.get("signature")
    missing = [
        n
        for n, v in (
            ("client-id", client_id),
            ("request-time", request_time),
            ("signature", signature),
        )
        if not v
    ]
    if missing or client_id is None or request_time is None or signature is None:
        raise Rejected("missing_header", ", ".join(missing))
    if client_id != config.client_id:
        raise Rejected("wrong_client_id", f"client-id {client_id[:64]!r} is not ours")
    try:
        # Parsed here only to give a precise reason; verify_any parses it again.
        signing.parse_signature_header(signature)
    except signing.SignatureHeaderError as exc:
        raise Rejected("bad_signature_header", str(exc)) from None
    ok = verify_notification(
        list(config.public_keys),
        notify_path=config.notify_path,
        headers=headers,
        body=body,
        expected_client_id=config.client_id,
    )
    if not ok:
        raise Rejected("bad_signature", "signature does not verify with any configured key")
    return client_id, request_time


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def _key(*parts: str | None) -> str:
    key = ":".join(p or "-" for p in parts)
    # Ids are at most 64 characters each, but a hostile-yet-signed body is still bounded.
    return key if len(key) <= 200 else key[:135] + ":" + hashlib.sha256(key.encode()).hexdigest()


def parse(body: bytes) -> Notification:
    """Parse a verified body into a ``Notification``; raise ``Rejected`` (400) if unusable."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected("malformed", "body is not JSON", 400) from None
    if not isinstance(data, dict):
        raise Rejected("malformed", "body is not a JSON object", 400)
    result = data.get("result")
    result_status = _text(result, "resultStatus") if isinstance(result, dict) else None
    notify_type = _text(data, "notifyType")
    dispute_type = _text(data, "disputeNotificationType")
    if notify_type is None and dispute_type is not None:
        notify_type = "DISPUTE"  # notifyDispute carries no notifyType (protocol notes §11)
    if notify_type is None:
        raise Rejected("malformed", "no notifyType", 400)

    def amount(name: str) -> Money | None:
        raw = data.get(name)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise Rejected("malformed", f"{name} is not an amount", 400)
        try:
            return Money.from_wire(raw)
        except MoneyError as exc:
            raise Rejected("malformed", f"{name}: {exc}", 400) from None

    payment_id = _text(data, "paymentId")
    common: dict[str, Any] = {
        "notify_type": notify_type,
        "body": data,
        "payment_id": payment_id,
        "payment_request_id": _text(data, "paymentRequestId"),
    }
    if notify_type == "REFUND_RESULT":
        try:
            refund = RefundNotification.parse(body)
        except NotificationError as exc:
            raise Rejected("malformed", str(exc), 400) from None
        return Notification(
            dedupe_key=_key(notify_type, refund.refund_request_id, refund.refund_status),
            status=refund.refund_status,
            refund_request_id=refund.refund_request_id,
            refund_id=refund.refund_id,
            amount=amount("refundAmount"),
            **common,
        )
    if notify_type in ("PAYMENT_RESULT", "PAYMENT_PENDING"):
        if payment_id is None:
            raise Rejected("malformed", "no paymentId", 400)
        return Notification(
            dedupe_key=_key(notify_type, payment_id, result_status),
            status=result_status,
            amount=amount("paymentAmount"),
            **common,
        )
    if notify_type == "CAPTURE_RESULT":
        capture = _text(data, "captureId") or _text(data, "captureRequestId")
        if payment_id is None or capture is None:
            raise Rejected("malformed", "no paymentId or captureId", 400)
        return Notification(
            dedupe_key=_key(notify_type, capture, result_status),
            status=result_status,
            amount=amount("captureAmount"),
            **common,
        )
    if notify_type == "DISPUTE":
        dispute_id = _text(data, "disputeId")
        if dispute_id is None or payment_id is None:
            raise Rejected("malformed", "no disputeId or paymentId", 400)
        return Notification(
            dedupe_key=_key(notify_type, dispute_id, dispute_type),
            status=dispute_type,
            **common,
        )
    # A type the desk does not act on is still stored: acknowledged, never lost.
    digest = hashlib.sha256(body).hexdigest()
    return Notification(dedupe_key=_key(notify_type, digest), status=result_status, **common)


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
        notification = parse(body)
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

    event_id, fresh = await _store(engine, notification, body, client_id, request_time, request_id)
    applied = await _apply_stored(engine, event_id, request_id=request_id)
    result = IngestResult(status_code=200, accepted=True, event_id=event_id)
    if applied is None:
        # Stored and applied before (or being applied right now by a twin delivery).
        result.outcome = "duplicate" if not fresh else "in_progress"
    else:
        result.outcome = applied.outcome
        result.refund_pks, result.payment_pks = applied.refund_pks, applied.payment_pks
    log.info(
        "webhook accepted type=%s key=%s outcome=%s event=%s request_id=%s",
        notification.notify_type,
        notification.dedupe_key,
        result.outcome,
        event_id,
        request_id,
    )
    return result


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
            event = WebhookEvent(
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


@dataclass(slots=True)
class Applied:
    outcome: str
    refund_pks: list[int] = field(default_factory=list)
    payment_pks: list[int] = field(default_factory=list)


async def _apply_stored(
    engine: AsyncEngine, event_id: int, *, request_id: str | None
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
    if n.notify_type == "REFUND_RESULT":
        return await _apply_refund(session, n, event_id=event_id, request_id=request_id)
    if n.notify_type in ("PAYMENT_RESULT", "PAYMENT_PENDING"):
        return await _apply_payment(session, n)
    if n.notify_type == "CAPTURE_RESULT":
        return await _apply_capture(session, n)
    if n.notify_type == "DISPUTE":
        return await _apply_dispute(session, n, event_id=event_id)
    return Applied("ignored")


async def raise_alert(
    session: AsyncSession,
    kind: AlertKind,
    subject: str,
    message: str,
    *,
    refund_pk: int | None = None,
    payment_pk: int | None = None,
    webhook_event_pk: int | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Flag something for leads once; False when the same alert is already open."""
    key = f"{kind.value}:{subject}"
    exists = (await session.exec(select(Alert.id).where(Alert.dedupe_key == key))).first()
    if exists is not None:
        return False
    session.add(
        Alert(
            dedupe_key=key,
            kind=kind,
            refund_pk=refund_pk,
            payment_pk=payment_pk,
            webhook_event_pk=webhook_event_pk,
            message=message[:256],
            detail=detail,
        )
    )
    log.warning("alert raised kind=%s subject=%s %s", kind.value, subject, message)
    return True


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
    session: AsyncSession, n: Notification, *, event_id: int | None, request_id: str | None
) -> Applied:
    from web.services.refunds import apply_antom_status  # the one place a status changes

    new_status = REFUND_STATUS_MAP[n.status or ""]
    refund = await _find_refund(session, n)
    if refund is None:
        return await _ingest_external(
            session, n, new_status, event_id=event_id, request_id=request_id
        )
    assert refund.id is not None
    touched = Applied("applied", [refund.id], [refund.payment_pk])
    if n.amount is not None and (
        n.amount.minor != refund.amount_minor or n.amount.currency != refund.currency
    ):
        await raise_alert(
            session,
            AlertKind.MISMATCH,
            f"refund:{refund.id}",
            f"Antom reports {n.amount} for refund {refund.refund_request_id}, "
            f"the desk recorded {Money(refund.amount_minor, refund.currency)}",
            refund_pk=refund.id,
            payment_pk=refund.payment_pk,
            webhook_event_pk=event_id,
        )
        touched.outcome = "mismatch"
        return touched
    current = RefundStatus(refund.status)
    if current.final and new_status.final and current is not new_status:
        await raise_alert(
            session,
            AlertKind.CONTRADICTION,
            f"refund:{refund.id}",
            f"Antom notified {n.status} for refund {refund.refund_request_id}, "
            f"which the desk holds as {current.value}",
            refund_pk=refund.id,
            payment_pk=refund.payment_pk,
            webhook_event_pk=event_id,
        )
        touched.outcome = "contradiction"
        return touched
    result = n.body.get("result")
    code = result.get("resultCode") if isinstance(result, dict) else None
    message = result.get("resultMessage") if isinstance(result, dict) else None
    changed = await apply_antom_status(
        session,
        refund,
        new_status,
        source=EventSource.WEBHOOK,
        summary=f"Antom notified {n.status}",
        detail=_event_detail(n, event_id, request_id),
        request_id=request_id,
        refund_id=n.refund_id,
        result_code=code if isinstance(code, str) else None,
        result_message=message if isinstance(message, str) else None,
        refunded_at=parse_time(_text(n.body, "refundTime")),
    )
    touched.outcome = "applied" if changed else "stale"
    return touched


def _event_detail(n: Notification, event_id: int | None, request_id: str | None) -> dict[str, Any]:
    result = n.body.get("result")
    return {
        "notification": n.notify_type,
        "webhook_event": event_id,
        "request_id": request_id,
        "refund_id": n.refund_id,
        "refund_time": _text(n.body, "refundTime"),
        "result": result if isinstance(result, dict) else None,
    }


async def _payment_by_antom_id(session: AsyncSession, payment_id: str | None) -> Payment | None:
    if not payment_id:
        return None
    return (await session.exec(select(Payment).where(Payment.payment_id == payment_id))).first()


async def _ingest_external(
    session: AsyncSession,
    n: Notification,
    new_status: RefundStatus,
    *,
    event_id: int | None,
    request_id: str | None,
) -> Applied:
    """A refund the desk never issued (made in Antom Dashboard): book it so the
    refundable amount stays right, and flag it for leads."""
    payment = await _payment_by_antom_id(session, n.payment_id)
    subject = f"refund_request:{n.refund_request_id or n.refund_id}"
    if payment is None or n.amount is None or n.refund_request_id is None:
        # No paymentId in the body (Antom's documented notifyRefund has none) and no
        # mapping: keep the event and ask a lead; inquiryPayment can settle it later.
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
    refund = await book_external_refund(
        session,
        payment,
        refund_request_id=n.refund_request_id,
        refund_id=n.refund_id,
        amount=n.amount,
        status=new_status,
        source=EventSource.WEBHOOK,
        summary=f"Antom notified {n.status} for a refund made outside the desk",
        detail=_event_detail(n, event_id, request_id),
        request_id=request_id,
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


async def book_external_refund(
    session: AsyncSession,
    payment: Payment,
    *,
    refund_request_id: str,
    refund_id: str | None,
    amount: Money,
    status: RefundStatus,
    source: EventSource,
    summary: str,
    detail: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> Refund | None:
    """Record a refund Antom made without the desk; None if the desk's books cannot hold it.

    It is booked like a desk refund that was just accepted (amount reserved, counted),
    then moved to Antom's status through ``apply_antom_status`` so the money moves
    the one usual way.
    """
    from web.services.refunds import EXTERNAL_REASON, apply_antom_status

    if amount.currency != payment.currency:
        return None
    reserved = await session.exec(
        sa.update(Payment)
        .where(
            col(Payment.id) == payment.id,
            col(Payment.refunded_minor) + col(Payment.reserved_minor) + amount.minor
            <= col(Payment.captured_minor),
        )
        .values(
            reserved_minor=col(Payment.reserved_minor) + amount.minor,
            refund_count=col(Payment.refund_count) + 1,
        )
    )
    if reserved.rowcount != 1:
        return None
    await session.refresh(payment)
    refund = Refund(
        refund_request_id=refund_request_id,
        payment_pk=payment.id or 0,
        refund_id=refund_id,
        currency=amount.currency,
        amount_minor=amount.minor,
        status=RefundStatus.PROCESSING,
        reason=EXTERNAL_REASON,
        note="Made outside the desk (e.g. Antom Dashboard)",
        external=True,
    )
    session.add(refund)
    await session.flush()
    if status is not RefundStatus.PROCESSING:
        await apply_antom_status(
            session,
            refund,
            status,
            source=source,
            summary=summary,
            detail=detail,
            request_id=request_id,
            refunded_at=parse_time(_text(detail or {}, "refund_time")),
        )
    return refund


async def _apply_payment(session: AsyncSession, n: Notification) -> Applied:
    if n.notify_type == "PAYMENT_PENDING":
        status = "PENDING"
    else:
        status = "SUCCESS" if n.status == "S" else "FAIL" if n.status == "F" else "PROCESSING"
    payment = await _payment_by_antom_id(session, n.payment_id)
    now = utcnow()
    method = _text(n.body, "paymentMethodType") or (payment.method if payment else "UNKNOWN")
    profile = profile_for(method)
    if payment is None:
        if n.amount is None:
            return Applied("ignored")
        payment = Payment(
            payment_id=n.payment_id or "",
            payment_request_id=n.payment_request_id or n.payment_id or "",
            method=method[:32],
            currency=n.amount.currency,
            amount_minor=n.amount.minor,
            status=status,
        )
        session.add(payment)
    elif PAYMENT_STATUS_RANK.get(status, 0) < PAYMENT_STATUS_RANK.get(payment.status, 0):
        assert payment.id is not None
        return Applied("stale", [], [payment.id])
    payment.status = status
    if status == "SUCCESS":
        payment.paid_at = payment.paid_at or parse_time(_text(n.body, "paymentTime")) or now
        if not profile.needs_capture:
            # Wallets capture with the payment; cards wait for CAPTURE_RESULT.
            payment.captured_minor = max(payment.captured_minor, payment.amount_minor)
    payment.updated_at = now
    await session.flush()
    assert payment.id is not None
    return Applied("applied", [], [payment.id])


async def _apply_capture(session: AsyncSession, n: Notification) -> Applied:
    payment = await _payment_by_antom_id(session, n.payment_id)
    if payment is None:
        await raise_alert(
            session,
            AlertKind.ORPHAN_NOTIFICATION,
            f"payment:{n.payment_id}",
            f"Antom notified a capture on payment {n.payment_id}, unknown to the desk",
        )
        return Applied("orphan")
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
    payment.captured_minor = min(payment.amount_minor, payment.captured_minor + n.amount.minor)
    payment.updated_at = utcnow()
    return Applied("applied", [], [payment.id])


async def _apply_dispute(
    session: AsyncSession, n: Notification, *, event_id: int | None
) -> Applied:
    payment = await _payment_by_antom_id(session, n.payment_id)
    if payment is None:
        await raise_alert(
            session,
            AlertKind.ORPHAN_NOTIFICATION,
            f"payment:{n.payment_id}",
            f"Antom notified a dispute on payment {n.payment_id}, unknown to the desk",
            webhook_event_pk=event_id,
        )
        return Applied("orphan")
    assert payment.id is not None
    if n.status in DISPUTE_OPENING:
        # A late CREATED must not reopen a dispute whose close was already received.
        dispute_id = _text(n.body, "disputeId")
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


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
