"""Golden vectors: our signatures are the SDK's, byte for byte, and each side accepts the other's.

All checks go to the SDK in one batch (one isolated subprocess per module).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.antom.keypairs import keypair
from tests.oracle.oracle import run_oracle, sdk_private_key, sdk_public_key
from web.antom import signing

pytestmark = pytest.mark.oracle

REFUND = {
    "refundRequestId": "rr-0001",
    "paymentId": "20241212194010800100188670211082739",
    "refundAmount": {"currency": "USD", "value": "1250"},
    "refundReason": "Damaged item",
}


@dataclass(frozen=True)
class Vector:
    name: str
    path: str
    client_id: str
    time: str
    body: str
    key: str = "merchant"  # requests are signed by the merchant, notifications by Antom


VECTORS = [
    Vector(
        "compact",
        "/ams/api/v1/payments/refund",
        "TEST_CLIENT_1",
        "1685599933871",
        json.dumps(REFUND, separators=(",", ":")),
    ),
    Vector(
        "pretty-sdk-style",
        "/ams/api/v1/payments/refund",
        "TEST_CLIENT_1",
        "2026-10-01T08:00:00+00:00",
        json.dumps(REFUND, indent=3),
    ),
    Vector(
        "unicode-utf8",
        "/ams/api/v1/payments/refund",
        "TEST_CLIENT_1",
        "1685599933871",
        json.dumps({**REFUND, "refundReason": "返品 — café ✓ 🎁"}, ensure_ascii=False),
    ),
    Vector(
        "unicode-escaped",
        "/ams/api/v1/payments/refund",
        "TEST_CLIENT_1",
        "1685599933871",
        json.dumps({**REFUND, "refundReason": "返品 — café ✓ 🎁"}),
    ),
    Vector(
        "sandbox",
        "/ams/sandbox/api/v1/payments/inquiryRefund",
        "SANDBOX_5X00000000000000",
        "2026-10-01T08:00:00+00:00",
        '{"refundRequestId":"rr-0001"}',
    ),
    Vector("empty-object", "/ams/api/v1/payments/inquiryPayment", "C", "1", "{}"),
    Vector(
        "notification-crlf-query",
        "/webhooks/antom?src=antom",
        "SANDBOX_5X00000000000000",
        "2026-11-25T12:00:00Z",
        '{\r\n  "notifyType": "REFUND_RESULT",\r\n  "refundStatus": "SUCCESS"\r\n}',
        key="antom",
    ),
]
IDS = [v.name for v in VECTORS]


def ours(v: Vector, body: str | None = None) -> str:
    raw = (v.body if body is None else body).encode()
    return signing.sign(keypair(v.key), uri=v.path, client_id=v.client_id, time=v.time, body=raw)


def check(op: str, v: Vector, **extra: Any) -> dict[str, Any]:
    base = {"op": op, "path": v.path, "client_id": v.client_id, "time": v.time, "body": v.body}
    return base | extra


@pytest.fixture(scope="module")
def sdk() -> dict[tuple[str, str], dict[str, Any]]:
    """Every SDK answer for every vector, keyed by (check name, vector name)."""
    checks: dict[tuple[str, str], dict[str, Any]] = {}
    for v in VECTORS:
        private, public = (
            sdk_private_key(keypair(v.key)),
            sdk_public_key(keypair(v.key).public_key()),
        )
        ours_value = ours(v)
        checks[("sign", v.name)] = check("sign", v, private_key=private)
        checks[("verify", v.name)] = check("verify", v, signature=ours_value, public_key=public)
        checks[("check_signature", v.name)] = check(
            "check_signature",
            v,
            signature=signing.signature_header(ours_value),
            public_key=public,
        )
        # Negative controls: the oracle must be able to say no.
        checks[("verify_tampered", v.name)] = check(
            "verify", v, body=v.body + " ", signature=ours_value, public_key=public
        )
        checks[("check_other_key", v.name)] = check(
            "check_signature",
            v,
            signature=signing.signature_header(ours_value),
            public_key=sdk_public_key(keypair("stranger").public_key()),
        )
    results = run_oracle(list(checks.values()))
    return dict(zip(checks, results, strict=True))


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_our_signature_equals_the_sdks(sdk: dict[tuple[str, str], Any], v: Vector) -> None:
    assert sdk[("sign", v.name)] == {"value": ours(v)}


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_sdk_verify_accepts_ours(sdk: dict[tuple[str, str], Any], v: Vector) -> None:
    assert sdk[("verify", v.name)] == {"ok": True}


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_sdk_webhook_check_accepts_our_header(sdk: dict[tuple[str, str], Any], v: Vector) -> None:
    assert sdk[("check_signature", v.name)] == {"ok": True}


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_sdk_rejects_tampered_or_foreign(sdk: dict[tuple[str, str], Any], v: Vector) -> None:
    assert sdk[("verify_tampered", v.name)].get("ok") is not True
    assert sdk[("check_other_key", v.name)].get("ok") is not True


@pytest.mark.parametrize("v", VECTORS, ids=IDS)
def test_we_accept_the_sdks_signature(sdk: dict[tuple[str, str], Any], v: Vector) -> None:
    value = sdk[("sign", v.name)]["value"]
    public = keypair(v.key).public_key()
    args = {"uri": v.path, "client_id": v.client_id, "time": v.time}
    header = signing.signature_header(value)
    assert signing.verify(public, body=v.body.encode(), header=header, **args)
    assert not signing.verify(public, body=v.body.encode() + b" ", header=header, **args)
