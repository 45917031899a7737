"""Antom notifications (webhooks): signature check, the fixed acknowledgement, parsing.

Antom signs ``POST <our notify path>\\n<client-id>.<request-time>.<raw body>`` with its
private key. Verification runs over the raw bytes received, before any JSON parsing
(``verify``). Only a verified body is parsed (``parse``): into a ``Notification`` the
desk can act on, or ``NotificationError`` for a verified body it cannot use, which the
desk still acknowledges and keeps (Antom would otherwise re-send it for a day).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from web.antom import signing
from web.antom.messages import wire_money, wire_text
from web.antom.money import Money, MoneyError

MAX_BODY_BYTES = 64 * 1024
REFUND_STATUSES = ("SUCCESS", "FAIL", "PROCESSING")

# Antom retries until it receives exactly this body (protocol notes §4.3).
NOTIFICATION_ACK = (
    b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
)


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def verify_notification(
    public_keys: list[RSAPublicKey],
    *,
    notify_path: str,
    headers: Mapping[str, str],
    body: bytes,
    expected_client_id: str,
) -> bool:
    """True only for a notification to our client id, signed by one of Antom's keys.

    ``notify_path`` is the path (plus query, if any) of the URL given to Antom, which is
    what Antom signs; behind a proxy it may differ from the path the app sees.
    """
    client_id = _header(headers, "client-id")
    request_time = _header(headers, "request-time")
    signature = _header(headers, "signature")
    if client_id != expected_client_id or not request_time or not signature:
        return False
    return signing.verify_any(
        public_keys,
        uri=notify_path,
        client_id=client_id,
        time=request_time,
        body=body,
        header=signature,
    )


class NotificationError(ValueError):
    """A verified notification whose body is not a usable refund result."""


@dataclass(frozen=True, slots=True)
class RefundNotification:
    """A ``REFUND_RESULT`` notification; ``payment_id`` is optional (not in the spec)."""

    refund_request_id: str
    refund_id: str | None
    refund_status: str  # SUCCESS / FAIL / PROCESSING
    refund_amount: Money | None
    refund_time: str | None
    result_code: str | None
    result_status: str | None
    payment_id: str | None
    body: dict[str, Any]

    @classmethod
    def parse(cls, body: bytes) -> RefundNotification:
        try:
            data = json.loads(body)
        except ValueError:
            raise NotificationError("notification body is not JSON") from None
        if not isinstance(data, dict) or data.get("notifyType") != "REFUND_RESULT":
            raise NotificationError("not a REFUND_RESULT notification")
        refund_request_id, refund_status = data.get("refundRequestId"), data.get("refundStatus")
        if not isinstance(refund_request_id, str) or not refund_request_id:
            raise NotificationError("notification has no refundRequestId")
        if refund_status not in REFUND_STATUSES:
            raise NotificationError(f"unexpected refundStatus {refund_status!r}")
        result = data.get("result")
        result = result if isinstance(result, dict) else {}
        return cls(
            refund_request_id=refund_request_id,
            refund_id=wire_text(data, "refundId"),
            refund_status=refund_status,
            refund_amount=wire_money(data, "refundAmount"),
            refund_time=wire_text(data, "refundTime"),
            result_code=wire_text(result, "resultCode"),
            result_status=wire_text(result, "resultStatus"),
            payment_id=wire_text(data, "paymentId"),
            body=data,
        )


# ---------------------------------------------------------------- checking a delivery


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


# ---------------------------------------------------------------- reading a verified body


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
    result_code: str | None = None
    result_message: str | None = None


def dedupe_key(*parts: str | None) -> str:
    """Type + object id + status: a re-delivery of the same fact has the same key."""
    key = ":".join(p or "-" for p in parts)
    # Ids are at most 64 characters each, but a hostile-yet-signed body is still bounded.
    return key if len(key) <= 200 else key[:135] + ":" + hashlib.sha256(key.encode()).hexdigest()


def unusable_key(body: bytes) -> str:
    """The dedupe key of a verified body that could not be parsed: its digest."""
    return dedupe_key("UNUSABLE", hashlib.sha256(body).hexdigest())


def parse(body: bytes) -> Notification:
    """Parse a verified body; raise ``NotificationError`` if the desk cannot use it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise NotificationError("body is not JSON") from None
    if not isinstance(data, dict):
        raise NotificationError("body is not a JSON object")
    result = data.get("result")
    result = result if isinstance(result, dict) else {}
    result_status = wire_text(result, "resultStatus")
    notify_type = wire_text(data, "notifyType")
    dispute_type = wire_text(data, "disputeNotificationType")
    if notify_type is None and dispute_type is not None:
        notify_type = "DISPUTE"  # notifyDispute carries no notifyType (protocol notes §11)
    if notify_type is None:
        raise NotificationError("no notifyType")

    def amount(name: str) -> Money | None:
        raw = data.get(name)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise NotificationError(f"{name} is not an amount")
        try:
            return Money.from_wire(raw)
        except MoneyError as exc:
            raise NotificationError(f"{name}: {exc}") from None

    payment_id = wire_text(data, "paymentId")
    common: dict[str, Any] = {
        "notify_type": notify_type,
        "body": data,
        "payment_id": payment_id,
        "payment_request_id": wire_text(data, "paymentRequestId"),
        "result_code": wire_text(result, "resultCode"),
        "result_message": wire_text(result, "resultMessage"),
    }
    if notify_type == "REFUND_RESULT":
        refund = RefundNotification.parse(body)
        return Notification(
            dedupe_key=dedupe_key(notify_type, refund.refund_request_id, refund.refund_status),
            status=refund.refund_status,
            refund_request_id=refund.refund_request_id,
            refund_id=refund.refund_id,
            amount=amount("refundAmount"),
            **common,
        )
    if notify_type in ("PAYMENT_RESULT", "PAYMENT_PENDING"):
        if payment_id is None:
            raise NotificationError("no paymentId")
        return Notification(
            dedupe_key=dedupe_key(notify_type, payment_id, result_status),
            status=result_status,
            amount=amount("paymentAmount"),
            **common,
        )
    if notify_type == "CAPTURE_RESULT":
        capture = wire_text(data, "captureId") or wire_text(data, "captureRequestId")
        if payment_id is None or capture is None:
            raise NotificationError("no paymentId or captureId")
        return Notification(
            dedupe_key=dedupe_key(notify_type, capture, result_status),
            status=result_status,
            amount=amount("captureAmount"),
            **common,
        )
    if notify_type == "DISPUTE":
        dispute_id = wire_text(data, "disputeId")
        if dispute_id is None or payment_id is None:
            raise NotificationError("no disputeId or paymentId")
        return Notification(
            dedupe_key=dedupe_key(notify_type, dispute_id, dispute_type),
            status=dispute_type,
            **common,
        )
    # A type the desk does not act on is still stored: acknowledged, never lost.
    digest = hashlib.sha256(body).hexdigest()
    return Notification(dedupe_key=dedupe_key(notify_type, digest), status=result_status, **common)
