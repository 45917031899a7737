"""The simulator's back office: what the admin API and page do. No web framework here.

Every function takes a ``Connection`` and runs inside one transaction on the DB thread.
JSON keys are camelCase, like Antom's own.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from web.antom.money import Money, format_minor
from web.sim import db
from web.sim.config import SimConfig
from web.sim.faults import FaultRates
from web.sim.gateway import (
    ACQUIRER_NAME,
    REFUND_PROCESSING,
    REFUND_SUCCESS,
    Context,
    NewPayment,
    acquirer_info,
    capture_payment,
    enqueue_notification,
    iso,
    new_id,
    payment_facts,
    payment_row,
    refund_row,
    reverse_refund,
    settle_refund,
    wire,
)
from web.sim.gateway import create_payment as insert_payment

Json = dict[str, Any]


class AdminError(ValueError):
    """A request the admin API refuses; ``str()`` is the message, status 400 (404 if missing)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def payment_json(conn: Connection, p: RowMapping) -> Json:
    facts = payment_facts(conn, p)
    return {
        "paymentId": p["payment_id"],
        "paymentRequestId": p["payment_request_id"],
        "clientId": p["client_id"],
        "method": p["method"],
        "currency": p["currency"],
        "amountMinor": p["amount_minor"],
        "capturedMinor": p["captured_minor"],
        "refundedMinor": facts.refunded_minor,
        "inFlightMinor": facts.in_flight_minor,
        "refundableMinor": facts.refundable_minor,
        "amount": format_minor(p["amount_minor"], p["currency"]),
        "paymentAmount": wire(p["amount_minor"], p["currency"]),
        "status": p["status"],
        "disputeOpen": bool(p["dispute_open"]),
        "disputeId": p["dispute_id"],
        "paidAt": iso(p["paid_at"]),
        "createdAt": iso(p["created_at"]),
        "buyerEmail": p["buyer_email"],
        "buyerName": p["buyer_name"],
        "referenceOrderId": p["reference_order_id"],
        "notifyUrl": p["notify_url"],
        "sandbox": bool(p["sandbox"]),
    }


def refund_json(r: RowMapping) -> Json:
    return {
        "refundId": r["refund_id"],
        "refundRequestId": r["refund_request_id"],
        "paymentId": r["payment_id"],
        "currency": r["currency"],
        "amountMinor": r["amount_minor"],
        "amount": format_minor(r["amount_minor"], r["currency"]),
        "status": r["status"],
        "plannedOutcome": r["planned_outcome"],
        "reason": r["reason"],
        "notifyUrl": r["notify_url"],
        "createdAt": iso(r["created_at"]),
        "finishedAt": iso(r["finished_at"]),
        "settleAt": iso(r["settle_at"]),
        "reverseAt": iso(r["reverse_at"]),
        "reversedAt": iso(r["reversed_at"]),
        "sandbox": bool(r["sandbox"]),
        "acquirerReferenceNo": r["acquirer_reference_no"],
        "acquirerInfo": acquirer_info(r),
    }


def capture_json(c: RowMapping, currency: str) -> Json:
    return {
        "captureId": c["capture_id"],
        "captureRequestId": c["capture_request_id"],
        "paymentId": c["payment_id"],
        "amountMinor": c["amount_minor"],
        "captureAmount": wire(c["amount_minor"], currency),
        "status": c["status"],
        "createdAt": iso(c["created_at"]),
    }


def require_payment(conn: Connection, payment_id: str) -> RowMapping:
    p = payment_row(conn, payment_id)
    if p is None:
        raise AdminError(f"no payment {payment_id}", status=404)
    return p


def create_payment(conn: Connection, ctx: Context, new: NewPayment) -> Json:
    if new.amount_minor <= 0:
        raise AdminError("amountMinor must be positive")
    taken = conn.execute(
        sa.select(db.payments.c.payment_id).where(
            db.payments.c.client_id == ctx.client_id,
            db.payments.c.payment_request_id == new.payment_request_id,
        )
    ).first()
    if new.payment_request_id and taken is not None:
        raise AdminError(f"paymentRequestId {new.payment_request_id} already exists", status=409)
    return payment_json(conn, insert_payment(conn, ctx, new))


def payment_detail(conn: Connection, payment_id: str) -> Json:
    p = require_payment(conn, payment_id)
    out = payment_json(conn, p)
    out["refunds"] = [
        refund_json(r)
        for r in conn.execute(
            sa.select(db.refunds)
            .where(db.refunds.c.payment_id == payment_id)
            .order_by(db.refunds.c.created_at)
        ).mappings()
    ]
    out["captures"] = [
        capture_json(c, p["currency"])
        for c in conn.execute(
            sa.select(db.captures)
            .where(db.captures.c.payment_id == payment_id)
            .order_by(db.captures.c.created_at)
        ).mappings()
    ]
    return out


def list_payments(conn: Connection, limit: int = 200) -> list[Json]:
    rows = conn.execute(
        sa.select(db.payments).order_by(db.payments.c.created_at.desc()).limit(limit)
    ).mappings()
    return [payment_json(conn, p) for p in rows]


def list_refunds(conn: Connection, payment_id: str | None = None, limit: int = 500) -> list[Json]:
    query = sa.select(db.refunds).order_by(db.refunds.c.created_at.desc()).limit(limit)
    if payment_id:
        query = query.where(db.refunds.c.payment_id == payment_id)
    return [refund_json(r) for r in conn.execute(query).mappings()]


def get_refund(conn: Connection, refund_id: str) -> Json:
    r = refund_row(conn, refund_id)
    if r is None:
        raise AdminError(f"no refund {refund_id}", status=404)
    return refund_json(r)


def capture(conn: Connection, ctx: Context, payment_id: str, amount_minor: int | None) -> Json:
    p = require_payment(conn, payment_id)
    minor = amount_minor if amount_minor is not None else p["amount_minor"] - p["captured_minor"]
    _, refusal = capture_payment(
        conn, ctx, p, Money(minor, p["currency"]), f"CAP_{new_id('09', ctx.now)[-16:]}"
    )
    if refusal is not None:
        res = json.loads(refusal.body)["result"]
        raise AdminError(f"{res['resultCode']}: {res['resultMessage']}")
    return payment_detail(conn, payment_id)


def dispute_body(p: RowMapping, kind: str, now: float, **extra: Any) -> Json:
    return {
        "paymentRequestId": p["payment_request_id"],
        "paymentId": p["payment_id"],
        "disputeId": p["dispute_id"],
        "disputeNotificationType": kind,
        "disputeTime": iso(now),
        "disputeAmount": wire(p["captured_minor"] or p["amount_minor"], p["currency"]),
        "disputeReasonMsg": "Buyer disputes the charge",
        "disputeReasonCode": "4853",
        "defendable": "true",
        **extra,
    }


JUDGED_RESULTS = ("ACCEPT_BY_CUSTOMER", "ACCEPT_BY_MERCHANT", "VALIDATE_SUCCESS", "VALIDATE_FAIL")


def open_chargeback(conn: Connection, ctx: Context, payment_id: str) -> Json:
    p = require_payment(conn, payment_id)
    if p["dispute_open"]:
        raise AdminError("a chargeback is already open on this payment", status=409)
    conn.execute(
        sa.update(db.payments)
        .where(db.payments.c.payment_id == payment_id)
        .values(dispute_open=True, dispute_id=new_id("05", ctx.now))
    )
    p = require_payment(conn, payment_id)
    enqueue_notification(
        conn,
        notify_type="DISPUTE_CREATED",
        object_id=p["dispute_id"],
        url=ctx.config.notify_url,
        body=dispute_body(p, "DISPUTE_CREATED", ctx.now),
        now=ctx.now,
        sandbox=bool(p["sandbox"]),  # a chargeback on a sandbox payment stays in the sandbox
    )
    return payment_json(conn, p)


def close_chargeback(conn: Connection, ctx: Context, payment_id: str, judged: str) -> Json:
    if judged not in JUDGED_RESULTS:
        raise AdminError(f"result must be one of {', '.join(JUDGED_RESULTS)}")
    p = require_payment(conn, payment_id)
    if not p["dispute_open"]:
        raise AdminError("no chargeback is open on this payment", status=409)
    conn.execute(
        sa.update(db.payments)
        .where(db.payments.c.payment_id == payment_id)
        .values(dispute_open=False)
    )
    enqueue_notification(
        conn,
        notify_type="DISPUTE_JUDGED",
        object_id=p["dispute_id"],
        url=ctx.config.notify_url,
        body=dispute_body(
            p,
            "DISPUTE_JUDGED",
            ctx.now,
            disputeJudgedTime=iso(ctx.now),
            disputeJudgedResult=judged,
            disputeJudgedAmount=wire(p["captured_minor"] or p["amount_minor"], p["currency"]),
        ),
        now=ctx.now,
        sandbox=bool(p["sandbox"]),
    )
    return payment_json(conn, require_payment(conn, payment_id))


def settle(conn: Connection, config: SimConfig, refund_id: str, outcome: str, now: float) -> Json:
    if outcome not in (REFUND_SUCCESS, "FAIL"):
        raise AdminError("outcome must be SUCCESS or FAIL")
    r = refund_row(conn, refund_id)
    if r is None:
        raise AdminError(f"no refund {refund_id}", status=404)
    if r["status"] != REFUND_PROCESSING:
        raise AdminError(f"the refund is already {r['status']}", status=409)
    after = settle_refund(conn, config, refund_id, outcome, now)
    assert after is not None
    return refund_json(after)


def reverse(conn: Connection, refund_id: str, now: float) -> Json:
    if refund_row(conn, refund_id) is None:
        raise AdminError(f"no refund {refund_id}", status=404)
    if not reverse_refund(conn, refund_id, now):
        raise AdminError("only a succeeded, not yet reversed refund can be reversed", status=409)
    r = refund_row(conn, refund_id)
    assert r is not None
    return refund_json(r)


def list_notifications(conn: Connection, limit: int = 200) -> list[Json]:
    n = db.notifications.c
    a = db.delivery_attempts.c
    rows = list(
        conn.execute(sa.select(db.notifications).order_by(n.id.desc()).limit(limit)).mappings()
    )
    attempts: dict[int, list[Json]] = {}
    if rows:
        for at in conn.execute(
            sa.select(db.delivery_attempts)
            .where(a.notification_id.in_([r["id"] for r in rows]))
            .order_by(a.id)
        ).mappings():
            attempts.setdefault(at["notification_id"], []).append(
                {
                    "attemptedAt": iso(at["attempted_at"]),
                    "attemptedAtEpoch": at["attempted_at"],
                    "requestTime": at["request_time"],
                    "httpStatus": at["http_status"],
                    "acknowledged": bool(at["acknowledged"]),
                    "error": at["error"],
                    "responseExcerpt": at["response_excerpt"],
                }
            )
    return [
        {
            "id": r["id"],
            "notifyType": r["notify_type"],
            "objectId": r["object_id"],
            "url": r["url"],
            "body": json.loads(r["body"]),
            "status": r["status"],
            "attempts": r["attempts"],
            "sandbox": bool(r["sandbox"]),
            "createdAt": iso(r["created_at"]),
            "nextAttemptAt": iso(r["next_attempt_at"]),
            "nextAttemptAtEpoch": r["next_attempt_at"],
            "deliveries": attempts.get(r["id"], []),
        }
        for r in rows
    ]


FAULTS_KEY = "fault_rates"


def load_fault_rates(conn: Connection, config: SimConfig) -> FaultRates:
    raw = conn.execute(
        sa.select(db.settings.c.value).where(db.settings.c.key == FAULTS_KEY)
    ).scalar()
    if raw is None:
        return FaultRates(
            rate_limit_per_s=config.rate_limit_per_s, rate_limit_burst=config.rate_limit_burst
        )
    return FaultRates.from_json(json.loads(raw))


def save_fault_rates(conn: Connection, rates: FaultRates) -> None:
    value = json.dumps(rates.to_json())
    done = conn.execute(
        sa.update(db.settings).where(db.settings.c.key == FAULTS_KEY).values(value=value)
    )
    if not done.rowcount:
        conn.execute(sa.insert(db.settings).values(key=FAULTS_KEY, value=value))


def list_balances(conn: Connection) -> list[Json]:
    return [
        {"currency": c, "balanceMinor": b, "balance": format_minor(b, c)}
        for c, b in conn.execute(
            sa.select(db.balances.c.currency, db.balances.c.balance_minor).order_by(
                db.balances.c.currency
            )
        )
    ]


def set_balance(conn: Connection, currency: str, balance_minor: int | None) -> list[Json]:
    conn.execute(sa.delete(db.balances).where(db.balances.c.currency == currency))
    if balance_minor is not None:
        conn.execute(sa.insert(db.balances).values(currency=currency, balance_minor=balance_minor))
    return list_balances(conn)


# The settlement details report (docs.antom.com/ac/reconcile/settlement_details): a header
# line of parameter names, one line per settled transaction, and ``<END>`` as the last
# line. Amount units and signs are not documented: see ``settlement_csv``.
SETTLEMENT_COLUMNS = (
    "settlementBatchId",
    "customerId",
    "acquirer",
    "acquirerReferenceNo",
    "transactionId",
    "originalTransactionId",
    "transactionRequestId",
    "referenceTransactionId",
    "paymentMethodType",
    "transactionType",
    "transactionTime",
    "transactionAmountValue",
    "transactionCurrency",
    "settlementAmountValue",
    "settlementCurrency",
    "feeAmountValue",
    "feeCurrency",
    "settlementTime",
)
SETTLEMENT_END = "<END>"
# What the simulator charges on a payment, in basis points (refunds and reversals: none).
PAYMENT_FEE_BP = 300


def settlement_batch_id(at: float) -> str:
    """One batch per UTC day of the transaction: ``SIM`` + ``YYYYMMDD`` + ``0001``."""
    return batch_of_day(settlement_day(at))


def batch_of_day(day: str) -> str:
    return f"SIM{day}0001"


def settlement_day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y%m%d")


def settlement_filename(customer_id: str, day: str, batch_id: str) -> str:
    """As Antom names settlement files: ``<MID>_settle_<YYYYMMDD>_<BatchID>.csv``
    (docs.antom.com/ac/amsapi/settlement)."""
    return f"{customer_id}_settle_{day}_{batch_id}.csv"


def settlement_csv(conn: Connection, *, day: str | None = None) -> str:
    """The settlement details report: every captured payment, succeeded refund and refund
    reversal, oldest first, one batch per UTC day (``day``, ``YYYYMMDD``: that batch only).

    Assumed, not documented: amounts are minor units of their currency, as in the API's
    ``Amount.value``, signed from the merchant's side (payments and reversals positive,
    refunds negative, fees negative); settlement amount = transaction amount + fee, in the
    transaction's currency. A REFUND row's ``transactionId`` is the refundId and its
    ``transactionRequestId`` the refundRequestId; a REFUND_REVERSAL's ``transactionId`` is
    its own id (the refundId + ``R``) and its ``transactionRequestId`` the refund's
    refundRequestId; both name the payment as ``originalTransactionId``.
    """
    rows: list[tuple[float, int, dict[str, object]]] = []
    payments = {p["payment_id"]: p for p in conn.execute(sa.select(db.payments)).mappings()}

    def add(at: float, order: int, p: RowMapping, amount: int, fee: int, **cols: object) -> None:
        rows.append(
            (
                at,
                order,
                {
                    # The simulator settles each transaction the moment it happens.
                    "settlementBatchId": settlement_batch_id(at),
                    "customerId": p["client_id"],
                    "acquirer": ACQUIRER_NAME,
                    "paymentMethodType": p["method"],
                    "transactionTime": iso(at),
                    "transactionAmountValue": amount,
                    "transactionCurrency": p["currency"],
                    "settlementAmountValue": amount + fee,
                    "settlementCurrency": p["currency"],
                    "feeAmountValue": fee,
                    "feeCurrency": p["currency"],
                    "settlementTime": iso(at),
                    "referenceTransactionId": "",
                    **cols,
                },
            )
        )

    for p in payments.values():
        if p["captured_minor"] <= 0 or p["status"] != "SUCCESS":
            continue
        captured = p["captured_minor"]
        add(
            p["paid_at"] or p["created_at"],
            0,
            p,
            captured,
            -(captured * PAYMENT_FEE_BP // 10_000),
            transactionType="PAYMENT",
            transactionId=p["payment_id"],
            transactionRequestId=p["payment_request_id"],
            originalTransactionId="",
            acquirerReferenceNo="",  # the simulator keeps none for payments
        )
    for r in conn.execute(
        sa.select(db.refunds).where(db.refunds.c.status == REFUND_SUCCESS)
    ).mappings():
        p = payments[r["payment_id"]]
        reference = r["acquirer_reference_no"] or ""
        add(
            r["finished_at"],
            1,
            p,
            -r["amount_minor"],
            0,
            transactionType="REFUND",
            transactionId=r["refund_id"],
            transactionRequestId=r["refund_request_id"],
            originalTransactionId=r["payment_id"],
            acquirerReferenceNo=reference,
        )
        if r["reversed_at"] is not None:
            add(
                r["reversed_at"],
                2,
                p,
                r["amount_minor"],
                0,
                transactionType="REFUND_REVERSAL",
                transactionId=f"{r['refund_id']}R",
                transactionRequestId=r["refund_request_id"],
                originalTransactionId=r["payment_id"],
                # The bounce comes back through the refund's acquirer transaction.
                acquirerReferenceNo=reference,
            )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SETTLEMENT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for at, _, row in sorted(rows, key=lambda item: (item[0], item[1])):
        if day is None or settlement_day(at) == day:
            writer.writerow(row)
    out.write(SETTLEMENT_END + "\n")
    return out.getvalue()
