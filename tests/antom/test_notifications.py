"""Webhook helpers: signature check over raw bytes, the fixed ack, REFUND_RESULT parsing."""

from __future__ import annotations

import json

import pytest

from tests.antom.keypairs import keypair
from web.antom import signing
from web.antom.money import Money
from web.antom.notifications import (
    NOTIFICATION_ACK,
    NotificationError,
    RefundNotification,
    verify_notification,
)

CLIENT_ID = "SANDBOX_5X00000000000000"
PATH = "/webhooks/antom"
BODY = json.dumps(
    {
        "notifyType": "REFUND_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."},
        "refundStatus": "SUCCESS",
        "refundRequestId": "rr-0001",
        "refundId": "2026112519401089010011",
        "refundAmount": {"currency": "USD", "value": "110"},
        "refundTime": "2025-04-30T00:26:58-07:00",
    },
    indent=4,
).encode()
KEYS = [keypair("antom").public_key(), keypair("antom-next").public_key()]


def headers(body: bytes = BODY, *, key: str = "antom", path: str = PATH) -> dict[str, str]:
    time = "2026-11-25T12:00:00Z"
    value = signing.sign(keypair(key), uri=path, client_id=CLIENT_ID, time=time, body=body)
    # Mixed case on purpose: header names are case-insensitive.
    return {
        "Client-Id": CLIENT_ID,
        "REQUEST-TIME": time,
        "Signature": "algorithm=RSA256, keyVersion=1, signature=" + value,
    }


def check(hdrs: dict[str, str], body: bytes = BODY, path: str = PATH) -> bool:
    return verify_notification(
        KEYS, notify_path=path, headers=hdrs, body=body, expected_client_id=CLIENT_ID
    )


def test_signed_notification_verifies() -> None:
    assert check(headers())


def test_notification_signed_with_rotated_key_verifies() -> None:
    assert check(headers(key="antom-next"))


def test_notification_from_unknown_key_is_rejected() -> None:
    assert not check(headers(key="stranger"))


def test_reserialised_body_is_rejected() -> None:
    compact = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    assert not check(headers(), body=compact)


def test_other_path_is_rejected() -> None:
    assert not check(headers(path="/webhooks/other"))


def test_other_client_id_is_rejected() -> None:
    hdrs = headers()
    assert not verify_notification(
        KEYS, notify_path=PATH, headers=hdrs, body=BODY, expected_client_id="ANOTHER"
    )


@pytest.mark.parametrize("missing", ["Client-Id", "REQUEST-TIME", "Signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    hdrs = headers()
    del hdrs[missing]
    assert not check(hdrs)


def test_ack_is_the_fixed_body() -> None:
    assert json.loads(NOTIFICATION_ACK) == {
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}
    }
    assert b" " not in NOTIFICATION_ACK


def test_refund_notification_parses() -> None:
    note = RefundNotification.parse(BODY)
    assert note.refund_request_id == "rr-0001"
    assert note.refund_id == "2026112519401089010011"
    assert note.refund_status == "SUCCESS"
    assert note.refund_amount == Money(110, "USD")
    assert note.refund_time == "2025-04-30T00:26:58-07:00"
    assert (note.result_status, note.result_code) == ("S", "SUCCESS")
    assert note.payment_id is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"notifyType":"PAYMENT_RESULT"}', "not a REFUND_RESULT"),
        (b'{"notifyType":"REFUND_RESULT","refundStatus":"SUCCESS"}', "no refundRequestId"),
        (b'{"notifyType":"REFUND_RESULT","refundRequestId":"r","refundStatus":"MAYBE"}', "MAYBE"),
    ],
)
def test_refund_notification_rejects_bad_bodies(body: bytes, message: str) -> None:
    with pytest.raises(NotificationError, match=message):
        RefundNotification.parse(body)
