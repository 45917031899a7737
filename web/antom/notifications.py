"""Antom notifications (webhooks): signature check, the fixed acknowledgement, parsing.

Antom signs ``POST <our notify path>\\n<client-id>.<request-time>.<raw body>`` with its
private key. Verification runs over the raw bytes received, before any JSON parsing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from web.antom import signing
from web.antom.messages import wire_money, wire_text
from web.antom.money import Money

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
    refund_status: str  # SUCCESS / FAIL
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
        if refund_status not in ("SUCCESS", "FAIL"):
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
