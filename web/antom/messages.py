"""Typed Antom messages and the one mapping from a refund call to its outcome.

Everything here is pure: no I/O, no clock. ``client.py`` fills these in from the wire;
the app, the poller and the webhook read them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from web.antom.money import Money, MoneyError

MAX_ID_LENGTH = 64
MAX_REASON_LENGTH = 256
MAX_URL_LENGTH = 1024

RATE_LIMIT_CODE = "REQUEST_TRAFFIC_EXCEED_LIMIT"
REFUND_NOT_EXIST = "REFUND_NOT_EXIST"

# Codes that never prove a refund failed, whatever resultStatus says. REPEAT_REQ_INCONSISTENT
# is an F, but it means another request with this refundRequestId exists and may have
# succeeded; PAYMENT_IN_PROCESS asks to try again later.
NOT_FINAL_CODES = frozenset(
    {
        "REFUND_IN_PROCESS",
        "UNKNOWN_EXCEPTION",
        RATE_LIMIT_CODE,
        "PAYMENT_IN_PROCESS",
        "REPEAT_REQ_INCONSISTENT",
    }
)
IN_PROCESS_CODE = "REFUND_IN_PROCESS"

# Refusals by Antom's gateway, before the request reached the refund service (protocol
# notes §16): they mean "request not processed", never "refund failed". Antom cannot sign
# some of them (INVALID_SIGNATURE), so these are the only F answers trusted unsigned.
GATEWAY_REFUSALS = frozenset(
    {
        "INVALID_SIGNATURE",
        "KEY_NOT_FOUND",
        "INVALID_CLIENT",
        "ACCESS_DENIED",
        "INVALID_API",
        "NO_INTERFACE_DEF",
        "MERCHANT_NOT_REGISTERED",
        "METHOD_NOT_SUPPORTED",
        "MEDIA_TYPE_NOT_ACCEPTABLE",
        "INVALID_ACCESS_TOKEN",
    }
)

# Agent-readable explanations for every refund result code in the protocol notes (§6, §7.4).
REFUND_CODE_EXPLANATIONS: dict[str, str] = {
    "SUCCESS": "The refund succeeded.",
    "REFUND_IN_PROCESS": "Antom accepted the refund and is still processing it.",
    "UNKNOWN_EXCEPTION": (
        "Antom could not say what happened; the refund is retried with the same id."
    ),
    RATE_LIMIT_CODE: "Antom is rate limiting requests; the refund is retried with the same id.",
    "PAYMENT_IN_PROCESS": "The original payment is still processing; the refund is retried later.",
    "REPEAT_REQ_INCONSISTENT": (
        "Antom already has a refund with this id but different details; it needs review."
    ),
    "ACCESS_DENIED": "Antom denied access for this merchant account; contact Antom support.",
    "CURRENCY_NOT_SUPPORT": "The refund currency must be the currency of the original payment.",
    "INVALID_CONTRACT": "The merchant contract does not cover this refund; contact Antom support.",
    "INVALID_MERCHANT_STATUS": "The merchant account is restricted; contact Antom support.",
    "MERCHANT_BALANCE_NOT_ENOUGH": (
        "The merchant balance at Antom is too low to fund the refund; top it up and try again."
    ),
    "ORDER_NOT_EXIST": "Antom has no payment with this payment id.",
    "ORDER_STATUS_INVALID": (
        "The payment is not in a refundable state (not completed, not captured, or disputed)."
    ),
    "ORDER_IS_CANCELED": "The payment was cancelled, so there is nothing to refund.",
    "PARAM_ILLEGAL": "Antom rejected a field of the refund request as missing or invalid.",
    "PROCESS_FAIL": "Antom could not process the refund; contact Antom support before retrying.",
    "REFUND_AMOUNT_EXCEED": "The refund is more than the amount still refundable on the payment.",
    "REFUND_WINDOW_EXCEED": "The payment method's refund window has passed.",
    "PARTIAL_REFUND_NOT_SUPPORTED": (
        "This payment method only accepts a refund of the full amount."
    ),
    "PAYMENT_METHOD_NOT_SUPPORTED": "This payment method does not support refunds.",
    "MULTIPLE_REFUNDS_NOT_SUPPORTED": (
        "This payment method accepts only one refund per payment, and one was already made."
    ),
    "RISK_REJECT": "Antom's risk control rejected the refund.",
    "KEY_NOT_FOUND": "Antom has no key for this client id; upload the merchant public key.",
    "INVALID_SIGNATURE": (
        "Antom could not verify our request signature; check the merchant private key."
    ),
    "INVALID_CLIENT": "Antom does not recognise the client id; check the configuration.",
    "INVALID_API": "This Antom API is not enabled for the merchant account.",
    "NO_INTERFACE_DEF": "Antom does not know this API address; check the gateway URL.",
    "METHOD_NOT_SUPPORTED": "Antom refused the HTTP method of the request.",
    "MEDIA_TYPE_NOT_ACCEPTABLE": "Antom refused the content type of the request.",
    "SYSTEM_ERROR": "Antom reported a system error; contact Antom support before retrying.",
    "MERCHANT_NOT_REGISTERED": "The merchant is not registered with Antom.",
    "MERCHANT_KYB_NOT_QUALIFIED": "The merchant has not passed Antom's business verification.",
    "INVALID_ACCESS_TOKEN": "Antom rejected the access token for this refund.",
    REFUND_NOT_EXIST: "Antom has no refund with this id; it never reached Antom.",
}


def explain_code(code: str | None) -> str:
    """Plain English for a result code; unknown codes are named, not hidden."""
    if not code:
        return "Antom gave no result code."
    return REFUND_CODE_EXPLANATIONS.get(code, f"Antom returned {code}.")


class Answer(enum.StrEnum):
    """What an answer from Antom says, read off the wire: no decision about money.

    ``web/rules/outcomes.py`` decides what each one means for a refund.
    """

    SUCCESS = "success"  # a trusted S for the refund, or an inquiry finding SUCCESS
    FAIL = "fail"  # a trusted business-level F, or an inquiry finding FAIL
    IN_PROCESS = "in_process"  # Antom accepted it and is working on it
    NOT_PROCESSED = "not_processed"  # a gateway-level refusal: the request never ran
    ABSENT = "absent"  # inquiry: REFUND_NOT_EXIST, Antom has no refund with this id
    UNKNOWN = "unknown"  # timeout, non-200, untrusted, U, or a code that proves nothing


def classify_refund(
    transport_error: bool,
    http_status: int | None,
    result_status: str | None,
    result_code: str | None,
) -> Answer:
    """Read one refund call's answer (callers pass ``None`` statuses when untrusted)."""
    if transport_error or http_status != 200:
        return Answer.UNKNOWN
    if result_code == IN_PROCESS_CODE:
        return Answer.IN_PROCESS
    if result_code in NOT_FINAL_CODES:
        return Answer.UNKNOWN
    if result_status == "F" and result_code in GATEWAY_REFUSALS:
        return Answer.NOT_PROCESSED
    if result_status == "S":
        return Answer.SUCCESS
    if result_status == "F":
        return Answer.FAIL
    return Answer.UNKNOWN


def is_rate_limited(http_status: int | None, result_code: str | None) -> bool:
    return http_status == 429 or result_code == RATE_LIMIT_CODE


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP round trip as stored on a refund's timeline. Signatures are redacted."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None
    response_headers: dict[str, str]
    response_body: str | None
    latency_ms: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_request_id: str
    payment_id: str
    amount: Money
    reason: str | None = None
    notify_url: str | None = None

    def __post_init__(self) -> None:
        ids = (("refund_request_id", self.refund_request_id), ("payment_id", self.payment_id))
        for name, value in ids:
            if not value or len(value) > MAX_ID_LENGTH:
                raise ValueError(f"{name} must be 1 to {MAX_ID_LENGTH} characters")
        if self.amount.minor <= 0:
            raise ValueError("refund amount must be positive")
        if self.reason is not None and len(self.reason) > MAX_REASON_LENGTH:
            raise ValueError(f"reason must be at most {MAX_REASON_LENGTH} characters")
        if self.notify_url is not None and len(self.notify_url) > MAX_URL_LENGTH:
            raise ValueError(f"notify_url must be at most {MAX_URL_LENGTH} characters")

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "refundRequestId": self.refund_request_id,
            "paymentId": self.payment_id,
            "refundAmount": self.amount.to_wire(),
        }
        if self.reason:
            body["refundReason"] = self.reason
        if self.notify_url:
            body["refundNotifyUrl"] = self.notify_url
        return body


@dataclass(frozen=True, slots=True)
class Reply:
    """How one response was read, before it is interpreted as a refund or an inquiry.

    ``result_status``/``result_code``/``result_message`` are only filled in when the
    response is trusted; ``error`` says why an answer could not be used.
    """

    transport_error: bool
    http_status: int | None
    body: dict[str, Any] = field(default_factory=dict)
    trusted: bool = False
    verified: bool = False
    result_status: str | None = None
    result_code: str | None = None
    result_message: str | None = None
    error: str | None = None

    @property
    def rate_limited(self) -> bool:
        return is_rate_limited(self.http_status, self.result_code)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """What every call's result carries over from the reply."""

    result_status: str | None  # S / F / U, only when the response is trusted
    result_code: str | None
    result_message: str | None
    exchange: Exchange
    body: dict[str, Any]
    rate_limited: bool
    verified: bool  # the response carried a valid Antom signature
    error: str | None


R = TypeVar("R", bound=CallResult)


def call_result(result_type: type[R], reply: Reply, exchange: Exchange, **fields: Any) -> R:
    """``result_type`` built from the reply, plus the fields particular to that call."""
    return result_type(
        result_status=reply.result_status,
        result_code=reply.result_code,
        result_message=reply.result_message,
        exchange=exchange,
        body=reply.body,
        rate_limited=reply.rate_limited,
        verified=reply.verified,
        error=reply.error,
        **fields,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundCallResult(CallResult):
    answer: Answer
    refund_id: str | None
    refund_time: str | None
    refund_amount: Money | None
    # For reconciling with the settlement bill (seed guide's APO refund response).
    acquirer_reference_no: str | None = None
    acquirer_info: dict[str, Any] | None = None


def wire_text(body: Mapping[str, Any], key: str) -> str | None:
    """A non-empty string field, or None (Antom omits or nulls fields freely)."""
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def parse_time(value: str | None) -> datetime | None:
    """Antom's ISO-8601 time with an offset; None when absent, malformed or naive."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def wire_money(body: Mapping[str, Any], key: str) -> Money | None:
    """An Amount field as Money, or None when absent or malformed."""
    value = body.get(key)
    if not isinstance(value, dict):
        return None
    try:
        return Money.from_wire(value)
    except MoneyError:
        return None


def refund_call_result(reply: Reply, exchange: Exchange) -> RefundCallResult:
    answer = classify_refund(
        reply.transport_error, reply.http_status, reply.result_status, reply.result_code
    )
    body = reply.body if reply.trusted else {}
    acquirer_info = body.get("acquirerInfo")
    return call_result(
        RefundCallResult,
        reply,
        exchange,
        answer=answer,
        refund_id=wire_text(body, "refundId"),
        refund_time=wire_text(body, "refundTime"),
        refund_amount=wire_money(body, "refundAmount"),
        acquirer_reference_no=wire_text(body, "acquirerReferenceNo"),
        acquirer_info=acquirer_info if isinstance(acquirer_info, dict) else None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class InquiryRefundResult(CallResult):
    found: bool  # a trusted S answer naming the refund
    refund_status: str | None  # SUCCESS / FAIL / PROCESSING
    refund_id: str | None
    refund_request_id: str | None
    refund_amount: Money | None
    refund_time: str | None

    @property
    def not_exist(self) -> bool:
        """Antom says it has no refund with this id (unverified code: protocol notes §16)."""
        return self.result_status == "F" and self.result_code == REFUND_NOT_EXIST

    @property
    def answer(self) -> Answer:
        """What the inquiry says about the refund; only a found SUCCESS/FAIL is final."""
        if self.found:
            return _FOUND_STATUS.get(self.refund_status or "", Answer.UNKNOWN)
        if self.not_exist:
            return Answer.ABSENT
        if self.result_status == "F" and self.result_code in GATEWAY_REFUSALS:
            return Answer.NOT_PROCESSED
        return Answer.UNKNOWN


_FOUND_STATUS = {
    "SUCCESS": Answer.SUCCESS,
    "FAIL": Answer.FAIL,
    "PROCESSING": Answer.IN_PROCESS,
}


def inquiry_refund_result(reply: Reply, exchange: Exchange) -> InquiryRefundResult:
    body = reply.body if reply.trusted else {}
    found = reply.result_status == "S"
    return call_result(
        InquiryRefundResult,
        reply,
        exchange,
        found=found,
        refund_status=wire_text(body, "refundStatus") if found else None,
        refund_id=wire_text(body, "refundId"),
        refund_request_id=wire_text(body, "refundRequestId"),
        refund_amount=wire_money(body, "refundAmount"),
        refund_time=wire_text(body, "refundTime"),
    )


@dataclass(frozen=True, slots=True)
class PaymentTransaction:
    """One entry of inquiryPayment ``transactions[]`` (a refund, capture, cancel, …)."""

    type: str | None
    status: str | None
    amount: Money | None
    transaction_id: str | None
    transaction_request_id: str | None
    time: str | None
    result_code: str | None

    @classmethod
    def from_wire(cls, item: Mapping[str, Any]) -> PaymentTransaction:
        result = item.get("transactionResult")
        return cls(
            type=wire_text(item, "transactionType"),
            status=wire_text(item, "transactionStatus"),
            amount=wire_money(item, "transactionAmount"),
            transaction_id=wire_text(item, "transactionId"),
            transaction_request_id=wire_text(item, "transactionRequestId"),
            time=wire_text(item, "transactionTime"),
            result_code=wire_text(result, "resultCode") if isinstance(result, dict) else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InquiryPaymentResult(CallResult):
    found: bool
    payment_id: str | None
    payment_request_id: str | None
    payment_status: str | None  # SUCCESS / FAIL / PROCESSING / CANCELLED / PENDING
    payment_amount: Money | None
    payment_method_type: str | None
    payment_time: str | None
    payment_create_time: str | None
    transactions: list[PaymentTransaction]


def inquiry_payment_result(reply: Reply, exchange: Exchange) -> InquiryPaymentResult:
    found = reply.result_status == "S"
    body = reply.body if found else {}
    raw_transactions = body.get("transactions")
    transactions = [
        PaymentTransaction.from_wire(item)
        for item in (raw_transactions if isinstance(raw_transactions, list) else [])
        if isinstance(item, dict)
    ]
    return call_result(
        InquiryPaymentResult,
        reply,
        exchange,
        found=found,
        payment_id=wire_text(body, "paymentId"),
        payment_request_id=wire_text(body, "paymentRequestId"),
        payment_status=wire_text(body, "paymentStatus"),
        payment_amount=wire_money(body, "paymentAmount"),
        payment_method_type=wire_text(body, "paymentMethodType"),
        payment_time=wire_text(body, "paymentTime"),
        payment_create_time=wire_text(body, "paymentCreateTime"),
        transactions=transactions,
    )
