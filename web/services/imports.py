"""Find a payment in Antom: ``inquiryPayment``, then store what it says.

The payment is created or refreshed (a payment the desk knows is refreshed too: its
capture may have arrived since), its captured amount raised through the ledger, and
every refund listed in its transactions recorded: the desk's own through the outcome
policy like any other answer, others booked as external refunds. Notifications that
arrived before the payment did (``web.services.webhooks``) are applied once it exists.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.client import AntomClient
from web.antom.messages import InquiryPaymentResult, PaymentTransaction, explain_code, parse_time
from web.models import EventSource, Payment, Refund, RefundStatus, utcnow
from web.rules.outcomes import Observation
from web.rules.refunds import profile_for
from web.services import ledger, listing, webhooks

log = logging.getLogger(__name__)


class PaymentImportError(Exception):
    """A payment could not be imported; ``str()`` is fit to show an agent."""


class PaymentNotFound(PaymentImportError):
    pass


class AntomUnavailable(PaymentImportError):
    pass


@dataclass(frozen=True, slots=True)
class Found:
    """What "Find a payment in Antom" came to: the payment (if any), what to tell the
    agent, and whether the message is a problem."""

    payment: Payment | None
    message: str | None
    problem: bool = False


async def find_in_antom(
    session: AsyncSession, antom: AntomClient | None, ref: str, *, request_id: str | None
) -> Found:
    """The payment with this id or request id, fresh from Antom: a payment the desk knows
    is refreshed too (a capture or a refund may have happened since); when Antom cannot
    be asked, a known payment still opens, with a word on why it may be out of date."""
    ref = ref.strip()
    if not ref:
        return Found(None, "Paste an Antom paymentId or paymentRequestId", problem=True)
    known = await listing.find_payment(session, ref)
    if antom is None:
        if known is not None:
            return Found(known, None)
        return Found(
            None,
            "Antom is not configured on this desk, so unknown payments cannot be fetched",
            problem=True,
        )
    try:
        payment = await import_payment(session, antom, ref, request_id=request_id)
    except PaymentImportError as exc:
        if known is None:
            return Found(None, str(exc), problem=True)
        return Found(known, f"Shown as last known: Antom could not be asked ({exc})", problem=True)
    verb = "refreshed" if known is not None else "loaded"
    return Found(payment, f"Payment {payment.payment_id} {verb} from Antom")


async def import_payment(
    session: AsyncSession, antom: AntomClient, ident: str, *, request_id: str | None = None
) -> Payment:
    """Find a payment at Antom by paymentId, else by paymentRequestId, and store it.

    Antom is asked before the database is touched, so no transaction waits on the
    network. Does not commit.
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
    cause = ledger.Cause(EventSource.RECONCILIATION, request_id)

    payment = (
        await session.exec(select(Payment).where(Payment.payment_id == found.payment_id))
    ).first()
    if payment is None:
        payment = await ledger.create_payment(
            session,
            Payment(
                payment_id=found.payment_id,
                payment_request_id=found.payment_request_id or found.payment_id,
                method=method,
                currency=amount.currency,
                amount_minor=amount.minor,
                captured_minor=captured,
                status=status,
                paid_at=paid_at,
                # Lists sort by when the payment was made at Antom, not when the desk
                # learnt of it.
                created_at=parse_time(found.payment_create_time) or paid_at or utcnow(),
            ),
        )
    else:
        payment.method = method
        payment.status = status
        payment.paid_at = paid_at or payment.paid_at
        payment.updated_at = utcnow()
        await session.flush()
        await ledger.set_captured(session, payment, captured)

    for tx in found.transactions:
        if tx.type == "REFUND":
            await _import_refund(session, payment, tx, cause)
    await webhooks.apply_waiting(session, payment, request_id=request_id)
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
    if not profile_for(method).needs_capture:
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
    session: AsyncSession, payment: Payment, tx: PaymentTransaction, cause: ledger.Cause
) -> None:
    assert payment.id is not None
    refund_request_id = tx.transaction_request_id or (
        f"ext_{tx.transaction_id}" if tx.transaction_id else None
    )
    if not refund_request_id or len(refund_request_id) > 64:
        return
    detail = {"transaction": _transaction_detail(tx)}
    seen = Observation.of_transaction(tx)
    known = (
        await session.exec(select(Refund).where(Refund.refund_request_id == refund_request_id))
    ).first()
    if known is None and tx.transaction_id:
        known = (
            await session.exec(select(Refund).where(Refund.refund_id == tx.transaction_id))
        ).first()
    if known is not None:
        assert known.id is not None
        if known.payment_pk == payment.id and not RefundStatus(known.status).final:
            await ledger.observe(session, known.id, seen, cause=cause, detail=detail)
        return
    if tx.amount is None or tx.amount.minor <= 0:
        log.warning(
            "payment %s: refund %s has no usable amount", payment.payment_id, refund_request_id
        )
        return
    refund = await ledger.book_external(
        session,
        payment,
        refund_request_id=refund_request_id,
        refund_id=tx.transaction_id,
        amount=tx.amount,
        cause=cause,
        summary=ledger.clip(
            f"Found at Antom: a refund of {tx.amount} made outside the desk "
            f"({tx.status or 'status unknown'})"
        ),
        detail=detail,
    )
    if refund is None:
        log.error(
            "payment %s: Antom's refund %s of %s does not fit the desk's books",
            payment.payment_id,
            refund_request_id,
            tx.amount,
        )
        return
    assert refund.id is not None
    await ledger.observe(session, refund.id, seen, cause=cause, detail=detail)


def _transaction_detail(tx: PaymentTransaction) -> dict[str, Any]:
    data: dict[str, Any] = dataclasses.asdict(tx)
    data["amount"] = str(tx.amount) if tx.amount is not None else None
    return data
