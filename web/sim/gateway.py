"""What the simulated Antom gateway does with a verified request. No web framework here.

Each ``handle_*`` function runs inside one database transaction on the simulator's DB
thread (see ``web.sim.db``), so a refund's checks and its insert are atomic.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from web.antom.money import Money, MoneyError
from web.rules.refunds import Code, PaymentFacts, check_refund, profile_for
from web.sim import db
from web.sim.config import SimConfig, is_sandbox_client
from web.sim.faults import Dice, Fault, FaultRates, magic_fault

Body = dict[str, Any]

PAYMENT_SUCCESS = "SUCCESS"
PAYMENT_CANCELLED = "CANCELLED"
REFUND_PROCESSING = "PROCESSING"
REFUND_SUCCESS = "SUCCESS"
REFUND_FAIL = "FAIL"
ASYNC_FAIL_CODE = "PROCESS_FAIL"

# The acquirer the simulated refunds go through (the seed guide's sample names a real one;
# a stand-in should not). One merchant id per simulator, like one acquiring contract.
ACQUIRER_NAME = "SIM_ACQUIRER"
ACQUIRER_MERCHANT_ID = "764764000000001"


class ParamError(ValueError):
    """A missing or malformed field: answered with PARAM_ILLEGAL."""


@dataclass(slots=True)
class Reply:
    body: bytes
    http_status: int = 200
    hang: bool = False  # hold the connection past the client's timeout, then drop it
    wake: bool = False  # new notifications or timers: wake the background worker


@dataclass(slots=True)
class Context:
    config: SimConfig
    client_id: str
    now: float
    rates: FaultRates = field(default_factory=FaultRates)
    dice: Dice = field(default_factory=lambda: Dice(None))
    sandbox_path: bool = False  # the request came in on /ams/sandbox/api/...

    @property
    def sandbox(self) -> bool:
        """Whether what this request causes happens in Antom's sandbox."""
        return self.sandbox_path or is_sandbox_client(self.client_id)


def dumps(body: Body) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def result_obj(code: str, status: str, message: str) -> Body:
    return {"resultCode": code, "resultStatus": status, "resultMessage": message}


def result(code: str, status: str, message: str) -> Body:
    return {"result": result_obj(code, status, message)}


def reply(code: str, status: str, message: str, **extra: Any) -> Reply:
    return Reply(dumps({**result(code, status, message), **extra}))


def success(**extra: Any) -> Body:
    return {**result("SUCCESS", "S", "success"), **extra}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def as_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def random_digits(count: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(count))


def new_id(kind: str, now: float) -> str:
    """Antom-looking ids: date, a kind marker, random digits (35 characters)."""
    return f"{datetime.fromtimestamp(now, UTC):%Y%m%d}1940108{kind}{random_digits(19)}"


def new_acquirer_fields(now: float) -> tuple[str, Body]:
    """A refund's acquirerReferenceNo and acquirerInfo, shaped like the seed guide's
    sample: 31-digit references led by the time, a 9-digit acquirer transaction id."""
    stamp = f"{datetime.fromtimestamp(now, UTC):%Y%m%d%H%M%S}"
    info: Body = {
        "acquirerMerchantId": ACQUIRER_MERCHANT_ID,
        "acquirerName": ACQUIRER_NAME,
        "acquirerTransactionId": str(10**8 + secrets.randbelow(9 * 10**8)),
        "referenceRequestId": f"{stamp}030{random_digits(14)}",
    }
    return f"{stamp}000103{random_digits(11)}", info


def wire(minor: int, currency: str) -> dict[str, str]:
    return Money(minor, currency).to_wire()


# --- request field parsing ------------------------------------------------------------


def parse_body(raw: bytes) -> Body:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ParamError("request body is not JSON") from None
    if not isinstance(body, dict):
        raise ParamError("request body must be a JSON object")
    return body


def text(body: Body, name: str, max_len: int, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ParamError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise ParamError(f"{name} must be a string")
    if len(value) > max_len:
        raise ParamError(f"{name} exceeds {max_len} characters")
    return value


def required_text(body: Body, name: str, max_len: int) -> str:
    value = text(body, name, max_len, required=True)
    assert value is not None
    return value


def amount(body: Body, name: str) -> Money:
    value = body.get(name)
    if not isinstance(value, dict):
        raise ParamError(f"{name} is required")
    try:
        return Money.from_wire(value)
    except MoneyError as exc:
        raise ParamError(f"{name}: {exc}") from None


def nested(body: Body, name: str) -> Body:
    """An optional sub-object; anything that is not an object counts as absent."""
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def url(body: Body, name: str) -> str | None:
    value = text(body, name, 1024)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ParamError(f"{name} must be an http(s) URL")
    return value


# --- shared lookups and writes ----------------------------------------------------------


def payment_row(conn: Connection, payment_id: str) -> RowMapping | None:
    return (
        conn.execute(sa.select(db.payments).where(db.payments.c.payment_id == payment_id))
        .mappings()
        .first()
    )


def find_payment(
    conn: Connection, client_id: str, payment_id: str | None, payment_request_id: str | None
) -> RowMapping | None:
    if payment_id:
        row = payment_row(conn, payment_id)
        return row if row is not None and row["client_id"] == client_id else None
    return (
        conn.execute(
            sa.select(db.payments).where(
                db.payments.c.client_id == client_id,
                db.payments.c.payment_request_id == payment_request_id,
            )
        )
        .mappings()
        .first()
    )


def payment_facts(conn: Connection, p: RowMapping) -> PaymentFacts:
    r = db.refunds.c
    totals = conn.execute(
        sa.select(
            sa.func.coalesce(
                sa.func.sum(sa.case((r.status == REFUND_SUCCESS, r.amount_minor), else_=0)), 0
            ),
            sa.func.coalesce(
                sa.func.sum(sa.case((r.status == REFUND_PROCESSING, r.amount_minor), else_=0)), 0
            ),
            sa.func.count().filter(r.status.in_((REFUND_SUCCESS, REFUND_PROCESSING))),
        ).where(r.payment_id == p["payment_id"])
    ).one()
    return PaymentFacts(
        method=p["method"],
        currency=p["currency"],
        amount_minor=p["amount_minor"],
        captured_minor=p["captured_minor"],
        succeeded=p["status"] == PAYMENT_SUCCESS,
        dispute_open=bool(p["dispute_open"]),
        paid_at=as_datetime(p["paid_at"] if p["paid_at"] is not None else p["created_at"]),
        refunded_minor=int(totals[0]),
        in_flight_minor=int(totals[1]),
        refund_count=int(totals[2]),
    )


def balance(conn: Connection, currency: str) -> int | None:
    value = conn.execute(
        sa.select(db.balances.c.balance_minor).where(db.balances.c.currency == currency)
    ).scalar()
    return None if value is None else int(value)


def adjust_balance(conn: Connection, currency: str, delta_minor: int) -> bool:
    """Move a configured balance; currencies without one are unlimited (nothing to move)."""
    done = conn.execute(
        sa.update(db.balances)
        .where(db.balances.c.currency == currency)
        .values(balance_minor=db.balances.c.balance_minor + delta_minor)
    )
    return done.rowcount > 0


def enqueue_notification(
    conn: Connection,
    *,
    notify_type: str,
    object_id: str,
    url: str | None,
    body: Body,
    now: float,
    sandbox: bool,
) -> int | None:
    """Queue a notification for its first delivery now; no URL anywhere means none is sent.

    ``sandbox``: it was caused in the sandbox, so it gets one attempt and no retries.
    """
    if not url:
        return None
    inserted = conn.execute(
        sa.insert(db.notifications).values(
            notify_type=notify_type,
            object_id=object_id,
            url=url,
            body=dumps(body).decode(),
            created_at=now,
            next_attempt_at=now,
            attempts=0,
            status="pending",
            sandbox=sandbox,
        )
    )
    pk = inserted.inserted_primary_key
    return int(pk[0]) if pk else None


Idem = RowMapping


def idempotency_row(conn: Connection, client_id: str, kind: str, key: str) -> Idem | None:
    i = db.idempotency.c
    return (
        conn.execute(
            sa.select(db.idempotency).where(
                i.client_id == client_id, i.kind == kind, i.request_key == key
            )
        )
        .mappings()
        .first()
    )


def remember(
    conn: Connection,
    ctx: Context,
    kind: str,
    key: str,
    fingerprint: str,
    *,
    object_id: str | None,
    response: bytes | None,
) -> None:
    conn.execute(
        sa.insert(db.idempotency).values(
            client_id=ctx.client_id,
            kind=kind,
            request_key=key,
            fingerprint=fingerprint,
            object_id=object_id,
            response_body=None if response is None else response.decode(),
            created_at=ctx.now,
        )
    )


def set_final_response(
    conn: Connection, client_id: str, kind: str, key: str, response: bytes
) -> None:
    i = db.idempotency.c
    conn.execute(
        sa.update(db.idempotency)
        .where(i.client_id == client_id, i.kind == kind, i.request_key == key)
        .values(response_body=response.decode())
    )


def fire_once(conn: Connection, ctx: Context, key: str, fault: Fault) -> bool:
    """True the first time ``fault`` is seen for this request id (then it is remembered)."""
    f = db.fault_hits.c
    seen = conn.execute(
        sa.select(f.fault).where(
            f.client_id == ctx.client_id, f.request_key == key, f.fault == fault.value
        )
    ).first()
    if seen is not None:
        return False
    conn.execute(
        sa.insert(db.fault_hits).values(
            client_id=ctx.client_id, request_key=key, fault=fault.value, created_at=ctx.now
        )
    )
    return True


def fault_reply(fault: Fault) -> Reply:
    if fault in (Fault.HTTP_500, Fault.HTTP_500_AFTER_COMMIT):
        return Reply(b"Internal Server Error", http_status=500)
    if fault is Fault.RATE_LIMITED:
        return reply("REQUEST_TRAFFIC_EXCEED_LIMIT", "U", "request traffic exceeds the limit")
    return reply("UNKNOWN_EXCEPTION", "U", "unknown exception, please retry with the same id")


# --- payments -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewPayment:
    method: str
    currency: str
    amount_minor: int
    captured: bool = True
    paid_at: float | None = None
    payment_request_id: str | None = None
    buyer_email: str | None = None
    buyer_name: str | None = None
    reference_order_id: str | None = None
    notify_url: str | None = None
    request_body: str | None = None


def create_payment(conn: Connection, ctx: Context, new: NewPayment) -> RowMapping:
    """Insert a successful payment and queue its PAYMENT_RESULT notification."""
    payment_id = new_id("01", ctx.now)
    paid_at = new.paid_at if new.paid_at is not None else ctx.now
    card_like = profile_for(new.method).needs_capture
    conn.execute(
        sa.insert(db.payments).values(
            payment_id=payment_id,
            client_id=ctx.client_id,
            payment_request_id=new.payment_request_id or f"PAY_{secrets.token_hex(12)}",
            method=new.method,
            currency=new.currency,
            amount_minor=new.amount_minor,
            # Wallets settle on payment; cards are captured below, as a capture record.
            captured_minor=new.amount_minor if new.captured and not card_like else 0,
            status=PAYMENT_SUCCESS,
            dispute_open=False,
            paid_at=paid_at,
            created_at=min(paid_at, ctx.now),
            buyer_email=new.buyer_email,
            buyer_name=new.buyer_name,
            reference_order_id=new.reference_order_id,
            notify_url=new.notify_url,
            request_body=new.request_body,
            sandbox=ctx.sandbox,
        )
    )
    row = payment_row(conn, payment_id)
    assert row is not None
    enqueue_notification(
        conn,
        notify_type="PAYMENT_RESULT",
        object_id=payment_id,
        url=row["notify_url"] or ctx.config.notify_url,
        body={
            "notifyType": "PAYMENT_RESULT",
            **result("SUCCESS", "S", "success"),
            "paymentRequestId": row["payment_request_id"],
            "paymentId": payment_id,
            "paymentAmount": wire(row["amount_minor"], row["currency"]),
            "paymentCreateTime": iso(row["created_at"]),
            "paymentTime": iso(row["paid_at"]),
            "paymentMethodType": row["method"],
        },
        now=ctx.now,
        sandbox=ctx.sandbox,
    )
    if new.captured and card_like:
        # An auto-captured card payment: inquiryPayment lists the CAPTURE, as Antom does.
        capture_ctx = dataclasses.replace(ctx, now=paid_at)
        _, refusal = capture_payment(
            conn, capture_ctx, row, Money(new.amount_minor, new.currency), f"CAP_{payment_id}"
        )
        assert refusal is None
        row = payment_row(conn, payment_id)
        assert row is not None
    return row


def handle_pay(conn: Connection, ctx: Context, body: Body) -> Reply:
    request_id = required_text(body, "paymentRequestId", 64)
    money = amount(body, "paymentAmount")
    method = nested(body, "paymentMethod").get("paymentMethodType")
    if not isinstance(method, str) or not method or len(method) > 32:
        raise ParamError("paymentMethod.paymentMethodType is required")
    if money.minor <= 0:
        raise ParamError("paymentAmount.value must be positive")
    notify_url = url(body, "paymentNotifyUrl")
    order = nested(body, "order")
    buyer = nested(order, "buyer")
    full_name = nested(buyer, "buyerName").get("fullName")
    factor = nested(body, "paymentFactor")
    authorise_only = str(factor.get("isAuthorization", "")).lower() == "true" or (
        factor.get("captureMode") == "MANUAL"
    )

    fingerprint = json.dumps([money.currency, money.minor, method])
    seen = idempotency_row(conn, ctx.client_id, "pay", request_id)
    if seen is not None:
        if seen["fingerprint"] != fingerprint:
            return inconsistent("paymentRequestId")
        return Reply(seen["response_body"].encode())

    row = create_payment(
        conn,
        ctx,
        NewPayment(
            method=method,
            currency=money.currency,
            amount_minor=money.minor,
            captured=not authorise_only,
            payment_request_id=request_id,
            buyer_email=_short(buyer.get("buyerEmail"), 254),
            buyer_name=_short(full_name, 120),
            reference_order_id=_short(order.get("referenceOrderId"), 64),
            notify_url=notify_url,
            request_body=json.dumps(body),
        ),
    )
    response = dumps(
        success(
            paymentId=row["payment_id"],
            paymentRequestId=request_id,
            paymentAmount=money.to_wire(),
            paymentCreateTime=iso(row["created_at"]),
            paymentTime=iso(row["paid_at"]),
        )
    )
    remember(
        conn, ctx, "pay", request_id, fingerprint, object_id=row["payment_id"], response=response
    )
    return Reply(response, wake=True)


def _short(value: object, max_len: int) -> str | None:
    return value[:max_len] if isinstance(value, str) and value else None


def inconsistent(field_name: str) -> Reply:
    return reply(
        "REPEAT_REQ_INCONSISTENT",
        "F",
        f"a request with this {field_name} was already received with different content",
    )


def capture_payment(
    conn: Connection, ctx: Context, p: RowMapping, money: Money, capture_request_id: str
) -> tuple[RowMapping | None, Reply | None]:
    """Capture part of an authorised payment; returns (capture row, refusal)."""
    if p["status"] != PAYMENT_SUCCESS:
        return None, reply("ORDER_STATUS_INVALID", "F", "the payment is not authorised")
    if money.currency != p["currency"]:
        return None, reply("CURRENCY_NOT_SUPPORT", "F", "capture currency differs from payment")
    if money.minor <= 0:
        return None, reply("PARAM_ILLEGAL", "F", "captureAmount.value must be positive")
    if money.minor > p["amount_minor"] - p["captured_minor"]:
        return None, reply(
            "CAPTURE_AMOUNT_EXCEED_AUTH_LIMIT", "F", "capture exceeds the authorised amount"
        )
    capture_id = new_id("03", ctx.now)
    conn.execute(
        sa.insert(db.captures).values(
            capture_id=capture_id,
            capture_request_id=capture_request_id,
            payment_id=p["payment_id"],
            amount_minor=money.minor,
            status="SUCCESS",
            created_at=ctx.now,
        )
    )
    conn.execute(
        sa.update(db.payments)
        .where(db.payments.c.payment_id == p["payment_id"])
        .values(captured_minor=db.payments.c.captured_minor + money.minor)
    )
    row = (
        conn.execute(sa.select(db.captures).where(db.captures.c.capture_id == capture_id))
        .mappings()
        .one()
    )
    enqueue_notification(
        conn,
        notify_type="CAPTURE_RESULT",
        object_id=capture_id,
        url=p["notify_url"] or ctx.config.notify_url,
        body={
            "notifyType": "CAPTURE_RESULT",
            **result("SUCCESS", "S", "success"),
            "captureRequestId": capture_request_id,
            "captureId": capture_id,
            "paymentId": p["payment_id"],
            "captureAmount": money.to_wire(),
            "captureTime": iso(ctx.now),
        },
        now=ctx.now,
        # Captured on the sandbox path, or an admin capture of a sandbox payment.
        sandbox=ctx.sandbox or bool(p["sandbox"]),
    )
    return row, None


def handle_capture(conn: Connection, ctx: Context, body: Body) -> Reply:
    request_id = required_text(body, "captureRequestId", 64)
    payment_id = required_text(body, "paymentId", 64)
    money = amount(body, "captureAmount")
    fingerprint = json.dumps([payment_id, money.currency, money.minor])
    seen = idempotency_row(conn, ctx.client_id, "capture", request_id)
    if seen is not None:
        if seen["fingerprint"] != fingerprint:
            return inconsistent("captureRequestId")
        return Reply(seen["response_body"].encode())

    def refuse(refusal: Reply) -> Reply:
        remember(
            conn, ctx, "capture", request_id, fingerprint, object_id=None, response=refusal.body
        )
        return refusal

    p = find_payment(conn, ctx.client_id, payment_id, None)
    if p is None:
        return refuse(reply("ORDER_NOT_EXIST", "F", "the payment does not exist"))
    row, refusal = capture_payment(conn, ctx, p, money, request_id)
    if refusal is not None:
        return refuse(refusal)
    assert row is not None
    response = dumps(
        success(
            captureRequestId=request_id,
            captureId=row["capture_id"],
            paymentId=payment_id,
            captureAmount=money.to_wire(),
            captureTime=iso(row["created_at"]),
        )
    )
    remember(
        conn,
        ctx,
        "capture",
        request_id,
        fingerprint,
        object_id=row["capture_id"],
        response=response,
    )
    return Reply(response, wake=True)


def named_payment(conn: Connection, ctx: Context, body: Body) -> RowMapping | Reply:
    """The payment a request names by paymentId or paymentRequestId, or the refusal."""
    payment_id = text(body, "paymentId", 64)
    payment_request_id = text(body, "paymentRequestId", 64)
    if not payment_id and not payment_request_id:
        raise ParamError("paymentId or paymentRequestId is required")
    p = find_payment(conn, ctx.client_id, payment_id, payment_request_id)
    if p is None:
        return reply("ORDER_NOT_EXIST", "F", "the payment does not exist")
    return p


def handle_cancel(conn: Connection, ctx: Context, body: Body) -> Reply:
    p = named_payment(conn, ctx, body)
    if isinstance(p, Reply):
        return p
    facts = payment_facts(conn, p)
    if p["status"] != PAYMENT_CANCELLED:
        if p["captured_minor"] > 0 or facts.refund_count or p["status"] != PAYMENT_SUCCESS:
            return reply(
                "ORDER_STATUS_INVALID", "F", "only an uncaptured authorisation can be cancelled"
            )
        conn.execute(
            sa.update(db.payments)
            .where(db.payments.c.payment_id == p["payment_id"])
            .values(status=PAYMENT_CANCELLED)
        )
    return Reply(
        dumps(
            success(
                paymentId=p["payment_id"],
                paymentRequestId=p["payment_request_id"],
                cancelTime=iso(ctx.now),
            )
        )
    )


def transactions(conn: Connection, p: RowMapping) -> list[Body]:
    found: list[tuple[float, Body]] = []
    for c in conn.execute(
        sa.select(db.captures).where(db.captures.c.payment_id == p["payment_id"])
    ).mappings():
        found.append(
            (
                c["created_at"],
                {
                    "transactionType": "CAPTURE",
                    "transactionStatus": c["status"],
                    "transactionResult": result_obj("SUCCESS", "S", "success"),
                    "transactionAmount": wire(c["amount_minor"], p["currency"]),
                    "transactionId": c["capture_id"],
                    "transactionRequestId": c["capture_request_id"],
                    "transactionTime": iso(c["created_at"]),
                },
            )
        )
    for r in conn.execute(
        sa.select(db.refunds).where(db.refunds.c.payment_id == p["payment_id"])
    ).mappings():
        found.append((r["created_at"], {"transactionType": "REFUND", **refund_transaction(r)}))
    return [body for _, body in sorted(found, key=lambda item: item[0])]


def refund_result(r: RowMapping) -> Body:
    if r["status"] == REFUND_SUCCESS:
        return result_obj("SUCCESS", "S", "success")
    if r["status"] == REFUND_FAIL:
        return result_obj(ASYNC_FAIL_CODE, "F", "the refund failed")
    return result_obj("REFUND_IN_PROCESS", "U", "the refund is being processed")


def refund_transaction(r: RowMapping) -> Body:
    return {
        "transactionStatus": r["status"],
        "transactionResult": refund_result(r),
        "transactionAmount": wire(r["amount_minor"], r["currency"]),
        "transactionId": r["refund_id"],
        "transactionRequestId": r["refund_request_id"],
        "transactionTime": iso(r["finished_at"] or r["created_at"]),
    }


def handle_inquiry_payment(conn: Connection, ctx: Context, body: Body) -> Reply:
    p = named_payment(conn, ctx, body)
    if isinstance(p, Reply):
        return p
    extra: Body = {
        "paymentStatus": p["status"],
        "paymentRequestId": p["payment_request_id"],
        "paymentId": p["payment_id"],
        "paymentAmount": wire(p["amount_minor"], p["currency"]),
        "paymentCreateTime": iso(p["created_at"]),
        "paymentMethodType": p["method"],
        "transactions": transactions(conn, p),
    }
    if p["status"] == PAYMENT_SUCCESS:
        extra["paymentTime"] = iso(p["paid_at"])
    return Reply(dumps(success(**extra)))


# --- refunds --------------------------------------------------------------------------


def refund_row(conn: Connection, refund_id: str) -> RowMapping | None:
    return (
        conn.execute(sa.select(db.refunds).where(db.refunds.c.refund_id == refund_id))
        .mappings()
        .first()
    )


def acquirer_info(r: RowMapping) -> Body | None:
    raw = r["acquirer_info"]
    return json.loads(raw) if raw else None


def refund_response(r: RowMapping) -> bytes:
    res = refund_result(r)
    body: Body = {
        "result": res,
        "refundRequestId": r["refund_request_id"],
        "refundId": r["refund_id"],
        "paymentId": r["payment_id"],
        "refundAmount": wire(r["amount_minor"], r["currency"]),
        "refundTime": iso(r["finished_at"] or r["created_at"]),
    }
    # Absent only on refunds stored by a simulator older than these fields.
    if r["acquirer_reference_no"]:
        body["acquirerReferenceNo"] = r["acquirer_reference_no"]
    info = acquirer_info(r)
    if info is not None:
        body["acquirerInfo"] = info
    return dumps(body)


def _rules_now(ctx: Context) -> datetime:
    return as_datetime(ctx.now)


def handle_refund(conn: Connection, ctx: Context, body: Body) -> Reply:
    request_id = required_text(body, "refundRequestId", 64)
    payment_id = required_text(body, "paymentId", 64)
    money = amount(body, "refundAmount")
    reason = text(body, "refundReason", 256)
    notify_url = url(body, "refundNotifyUrl")
    metadata = text(body, "metadata", 2048)
    # Accepted and length-checked, but nothing here depends on them.
    text(body, "referenceRefundId", 64)
    text(body, "captureId", 64)

    fingerprint = json.dumps([payment_id, money.currency, money.minor])
    seen = idempotency_row(conn, ctx.client_id, "refund", request_id)
    if seen is not None:
        if seen["fingerprint"] != fingerprint:
            return inconsistent("refundRequestId")
        if seen["response_body"] is not None:
            return Reply(seen["response_body"].encode())
        r = refund_row(conn, seen["object_id"])
        assert r is not None
        return Reply(refund_response(r))

    fault = magic_fault(money.minor, money.currency) if ctx.config.magic_amounts else None
    if fault is not None and fault.before_commit and fire_once(conn, ctx, request_id, fault):
        return fault_reply(fault)

    def refuse(code: str, message: str) -> Reply:
        refusal = reply(code, "F", message)
        remember(
            conn, ctx, "refund", request_id, fingerprint, object_id=None, response=refusal.body
        )
        return refusal

    p = find_payment(conn, ctx.client_id, payment_id, None)
    if p is None:
        return refuse(Code.ORDER_NOT_EXIST, "the payment does not exist")
    facts = payment_facts(conn, p)
    violations = check_refund(
        facts, money.currency, money.minor, _rules_now(ctx), balance(conn, money.currency)
    )
    if violations:
        return refuse(violations[0].code, violations[0].message)
    if fault is Fault.BALANCE_NOT_ENOUGH:
        return refuse(Code.MERCHANT_BALANCE_NOT_ENOUGH, "the merchant balance is not enough")

    profile = profile_for(p["method"])
    outcome = (
        REFUND_FAIL
        if fault is Fault.ASYNC_FAIL or ctx.dice.roll(ctx.rates.async_fail)
        else REFUND_SUCCESS
    )
    asynchronous = (
        profile.asynchronous
        or fault in (Fault.ASYNC_FAIL, Fault.ASYNC_SUCCESS)
        or (outcome == REFUND_FAIL)
    )
    reversal = fault is Fault.REVERSAL or ctx.dice.roll(ctx.rates.reversal)
    settle_at = ctx.now + ctx.config.scaled(ctx.config.refund_delay_s) if asynchronous else None
    final_at = settle_at if settle_at is not None else ctx.now
    refund_id = new_id("02", ctx.now)
    reference_no, info = new_acquirer_fields(ctx.now)
    conn.execute(
        sa.insert(db.refunds).values(
            refund_id=refund_id,
            client_id=ctx.client_id,
            refund_request_id=request_id,
            payment_id=payment_id,
            currency=money.currency,
            amount_minor=money.minor,
            reason=reason,
            notify_url=notify_url,
            metadata=metadata,
            status=REFUND_PROCESSING if asynchronous else REFUND_SUCCESS,
            planned_outcome=outcome,
            settle_at=settle_at,
            reverse_at=final_at + ctx.config.scaled(ctx.config.reversal_delay_s)
            if reversal
            else None,
            balance_debited=adjust_balance(conn, money.currency, -money.minor),
            created_at=ctx.now,
            finished_at=None if asynchronous else ctx.now,
            # Asked for in the sandbox, or of a sandbox payment: so are its notifications,
            # including the one sent when it settles later.
            sandbox=ctx.sandbox or bool(p["sandbox"]),
            acquirer_reference_no=reference_no,
            acquirer_info=json.dumps(info),
        )
    )
    r = refund_row(conn, refund_id)
    assert r is not None
    response = refund_response(r)
    remember(
        conn,
        ctx,
        "refund",
        request_id,
        fingerprint,
        object_id=refund_id,
        response=None if asynchronous else response,
    )
    if not asynchronous:
        notify_refund(conn, ctx.config, r, p, ctx.now)

    if fault is not None and fault.after_commit and fire_once(conn, ctx, request_id, fault):
        if fault is Fault.HANG_AFTER_COMMIT:
            return Reply(response, hang=True, wake=True)
        after = fault_reply(fault)
        after.wake = True
        return after
    if ctx.dice.roll(ctx.rates.hang_after_commit):
        return Reply(response, hang=True, wake=True)
    return Reply(response, wake=True)


def notify_refund(
    conn: Connection, config: SimConfig, r: RowMapping, p: RowMapping, now: float
) -> None:
    res = refund_result(r)
    body: Body = {
        "notifyType": "REFUND_RESULT",
        "result": res,
        "refundStatus": r["status"],
        "refundRequestId": r["refund_request_id"],
        "refundId": r["refund_id"],
        "paymentId": p["payment_id"],
        "paymentRequestId": p["payment_request_id"],
        "refundAmount": wire(r["amount_minor"], r["currency"]),
    }
    if r["status"] == REFUND_SUCCESS:
        body["refundTime"] = iso(r["finished_at"])
    if r["metadata"]:
        body["metadata"] = r["metadata"]
    enqueue_notification(
        conn,
        notify_type="REFUND_RESULT",
        object_id=r["refund_id"],
        url=r["notify_url"] or config.notify_url,
        body=body,
        now=now,
        sandbox=bool(r["sandbox"]),
    )


def settle_refund(
    conn: Connection, config: SimConfig, refund_id: str, outcome: str | None, now: float
) -> RowMapping | None:
    """Move a PROCESSING refund to its final state (planned, or ``outcome`` if forced).

    Returns the refund row after the change, or None when it was not PROCESSING.
    """
    r = refund_row(conn, refund_id)
    if r is None or r["status"] != REFUND_PROCESSING:
        return None
    final = outcome or r["planned_outcome"]
    if final == REFUND_FAIL and r["balance_debited"]:
        adjust_balance(conn, r["currency"], r["amount_minor"])
    conn.execute(
        sa.update(db.refunds)
        .where(db.refunds.c.refund_id == refund_id, db.refunds.c.status == REFUND_PROCESSING)
        .values(
            status=final,
            finished_at=now,
            settle_at=None,
            reverse_at=r["reverse_at"] if final == REFUND_SUCCESS else None,
        )
    )
    after = refund_row(conn, refund_id)
    assert after is not None
    set_final_response(
        conn, after["client_id"], "refund", after["refund_request_id"], refund_response(after)
    )
    p = payment_row(conn, after["payment_id"])
    assert p is not None
    notify_refund(conn, config, after, p, now)
    return after


def reverse_refund(conn: Connection, refund_id: str, now: float) -> bool:
    """A succeeded refund bounced at the buyer's bank: the money comes back by settlement."""
    r = refund_row(conn, refund_id)
    if r is None or r["status"] != REFUND_SUCCESS or r["reversed_at"] is not None:
        return False
    conn.execute(
        sa.update(db.refunds)
        .where(db.refunds.c.refund_id == refund_id)
        .values(reversed_at=now, reverse_at=None)
    )
    if r["balance_debited"]:
        adjust_balance(conn, r["currency"], r["amount_minor"])
    return True


def handle_inquiry_refund(conn: Connection, ctx: Context, body: Body) -> Reply:
    refund_id = text(body, "refundId", 64)
    refund_request_id = text(body, "refundRequestId", 64)
    if not refund_id and not refund_request_id:
        raise ParamError("refundId or refundRequestId is required")
    query = sa.select(db.refunds).where(db.refunds.c.client_id == ctx.client_id)
    if refund_id:
        query = query.where(db.refunds.c.refund_id == refund_id)
    else:
        query = query.where(db.refunds.c.refund_request_id == refund_request_id)
    r = conn.execute(query).mappings().first()
    if r is None:
        return reply("REFUND_NOT_EXIST", "F", "the refund does not exist")
    extra: Body = {
        "refundId": r["refund_id"],
        "refundRequestId": r["refund_request_id"],
        "refundAmount": wire(r["amount_minor"], r["currency"]),
        "refundStatus": r["status"],
    }
    if r["status"] == REFUND_SUCCESS:
        extra["refundTime"] = iso(r["finished_at"])
    if r["metadata"]:
        extra["metadata"] = r["metadata"]
    # The seed guide's inquiryRefund sample has acquirerInfo, but no acquirerReferenceNo.
    info = acquirer_info(r)
    if info is not None:
        extra["acquirerInfo"] = info
    return Reply(dumps(success(**extra)))


Handler = Callable[[Connection, Context, Body], Reply]

ENDPOINTS: dict[str, Handler] = {
    "pay": handle_pay,
    "inquiryPayment": handle_inquiry_payment,
    "capture": handle_capture,
    "cancel": handle_cancel,
    "refund": handle_refund,
    "inquiryRefund": handle_inquiry_refund,
}


def handle(conn: Connection, ctx: Context, endpoint: str, raw: bytes) -> Reply:
    try:
        return ENDPOINTS[endpoint](conn, ctx, parse_body(raw))
    except ParamError as exc:
        return reply("PARAM_ILLEGAL", "F", f"illegal parameter: {exc}")
