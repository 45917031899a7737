"""DefaultAlipayClient (SDK 1.7.1) and our AntomClient against the same scripted gateway.

The gateway verifies every request signature with our verifier over the exact bytes
received, and answers each scenario the same way to both clients. The SDK's accept /
reject decision is the oracle for our trust rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.antom.keypairs import keypair
from tests.antom.scripted_server import (
    Received,
    Scripted,
    ScriptedServer,
    antom_response,
    running_scripted_server,
)
from tests.oracle.oracle import run_oracle, sdk_private_key, sdk_public_key
from web.antom import signing
from web.antom.client import AntomClient
from web.antom.messages import Answer, RefundRequest
from web.antom.money import Money

pytestmark = pytest.mark.oracle

CLIENT_ID = "SANDBOX_5X00000000000000"
EMPTY_VALUE = [
    ("client-id", CLIENT_ID),
    ("response-time", ""),
    ("signature", "algorithm=RSA256,keyVersion=1,signature="),
]


def result(code: str, status: str) -> dict[str, Any]:
    return {"result": {"resultCode": code, "resultStatus": status, "resultMessage": code.lower()}}


SUCCESS = {**result("SUCCESS", "S"), "refundId": "ref-1", "refundTime": "2026-11-25T12:00:00+08:00"}


@dataclass(frozen=True)
class Scenario:
    name: str
    payload: dict[str, Any]
    sdk_accepts: bool
    our_answer: Answer
    options: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    sdk_says: str = ""  # why the SDK refused it (so a refusal for another reason fails)
    # Why we deliberately refuse an answer the SDK accepts (empty when we agree).
    stricter: str = ""


SCENARIOS = [
    Scenario("signed-S", SUCCESS, True, Answer.SUCCESS),
    Scenario(
        "rotated-key-S",
        SUCCESS,
        False,  # the SDK holds one Antom key; we hold the rotation pair
        Answer.SUCCESS,
        {"key": "antom-next"},
        sdk_says="response verify failed",
    ),
    Scenario(
        "unsigned-S",
        SUCCESS,
        False,
        Answer.UNKNOWN,
        {"key": None},
        sdk_says="signature not exist",
    ),
    Scenario(
        "empty-value-S",
        SUCCESS,
        False,
        Answer.UNKNOWN,
        {"headers": EMPTY_VALUE},
        sdk_says="unsigned response with resultStatus=S is not accepted",
    ),
    Scenario(
        "tampered-S",
        SUCCESS,
        False,
        Answer.UNKNOWN,
        {"tamper": True},
        sdk_says="response verify failed",
    ),
    Scenario(
        "foreign-key-S",
        SUCCESS,
        False,
        Answer.UNKNOWN,
        {"key": "stranger"},
        sdk_says="response verify failed",
    ),
    Scenario("signed-F", result("REFUND_AMOUNT_EXCEED", "F"), True, Answer.FAIL),
    Scenario(
        "empty-value-F",
        result("INVALID_SIGNATURE", "F"),
        True,
        Answer.NOT_PROCESSED,
        {"headers": EMPTY_VALUE},
    ),
    # Deliberate difference: the SDK takes any unsigned F with empty headers; we take an
    # unsigned F only when it is a gateway refusal (the request never ran). An unsigned
    # business F could release money, so it is an unknown answer here.
    Scenario(
        "empty-value-business-F",
        result("REFUND_AMOUNT_EXCEED", "F"),
        True,
        Answer.UNKNOWN,
        {"headers": EMPTY_VALUE},
        stricter="an unsigned business-level F is never trusted",
    ),
    Scenario(
        "empty-value-U",
        result("UNKNOWN_EXCEPTION", "U"),
        True,
        Answer.UNKNOWN,
        {"headers": EMPTY_VALUE},
    ),
    # With the signature headers absent altogether the SDK's header parser raises before
    # its F/U rule runs; we follow it: the answer is unknown, never a failure.
    Scenario(
        "absent-headers-F",
        result("INVALID_SIGNATURE", "F"),
        False,
        Answer.UNKNOWN,
        {"key": None},
        sdk_says="signature not exist",
    ),
    Scenario(
        "incomplete-F",
        result("PARAM_ILLEGAL", "F"),
        False,
        Answer.UNKNOWN,
        {"drop": "response-time"},
        sdk_says="response-time not exist",
    ),
    Scenario(
        "http-500",
        SUCCESS,
        False,
        Answer.UNKNOWN,
        status=500,
        sdk_says="invalid http status 500",
    ),
]
BY_ID = {f"rr-{s.name}": s for s in SCENARIOS}


@dataclass
class Gateway:
    server: ScriptedServer
    verified: list[tuple[str, bool]] = field(default_factory=list)  # (request uri, signature ok)
    targets: list[str] = field(default_factory=list)

    def __call__(self, request: Received) -> Scripted:
        ok = signing.verify(
            keypair("merchant").public_key(),
            uri=request.uri,
            client_id=request.headers["client-id"],
            time=request.headers["request-time"],
            body=request.body,
            header=request.headers["signature"],
        )
        self.verified.append((request.uri, ok))
        self.targets.append(request.target)
        ids = request.json()
        if "refundAmount" not in ids:  # inquiryRefund
            payload = {
                **SUCCESS,
                "refundStatus": "SUCCESS",
                "refundRequestId": ids["refundRequestId"],
            }
            return antom_response(request, payload, key=keypair("antom"))
        scenario = BY_ID[ids["refundRequestId"]]
        opts = scenario.options
        key_name = opts.get("key", "antom")
        reply = antom_response(
            request,
            scenario.payload,
            key=keypair(key_name) if key_name else None,
            headers=opts.get("headers"),
            sent_body=json.dumps({**scenario.payload, "refundId": "forged"}).encode()
            if opts.get("tamper")
            else None,
        )
        headers = [(k, v) for k, v in reply.headers if k != opts.get("drop")]
        return Scripted(scenario.status, reply.body, headers)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with running_scripted_server() as server:
        gw = Gateway(server)
        server.reply(gw)
        yield gw


@pytest.fixture(scope="module")
def sdk_answers(gateway: Gateway) -> dict[str, dict[str, Any]]:
    common = {
        "gateway_url": gateway.server.base_url,
        "client_id": CLIENT_ID,
        "private_key": sdk_private_key(keypair("merchant")),
        "public_key": sdk_public_key(keypair("antom").public_key()),
    }
    refunds = [
        {
            "op": "refund",
            **common,
            "refund_request_id": rid,
            "payment_id": "pay-1",
            "currency": "USD",
            "value": "1250",
            "reason": "返品 ✓",
        }
        for rid in BY_ID
    ]
    inquiry = {"op": "inquiry_refund", **common, "refund_request_id": "rr-signed-S"}
    gateway.verified.clear()
    gateway.targets.clear()
    results = run_oracle([*refunds, inquiry])
    answers = dict(zip([*BY_ID, "inquiry"], results, strict=True))
    answers["_requests"] = {"verified": list(gateway.verified), "targets": list(gateway.targets)}
    return answers


def test_sdk_requests_verify_at_the_gateway(sdk_answers: dict[str, Any], gateway: Gateway) -> None:
    verified = sdk_answers["_requests"]["verified"]
    assert len(verified) == len(SCENARIOS) + 1
    assert all(ok for _uri, ok in verified), verified
    # The SDK sends absolute-form targets; the gateway signs and verifies the path only.
    targets = sdk_answers["_requests"]["targets"]
    assert all(t.startswith(gateway.server.base_url + "/ams/sandbox/api/") for t in targets)
    # The SDK rewrote the path for the sandbox client id before signing, as we do.
    assert {uri for uri, _ok in verified} == {
        "/ams/sandbox/api/v1/payments/refund",
        "/ams/sandbox/api/v1/payments/inquiryRefund",
    }


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_trust_rule_matches_the_sdk(
    sdk_answers: dict[str, Any], gateway: Gateway, scenario: Scenario
) -> None:
    sdk = sdk_answers[f"rr-{scenario.name}"]
    assert ("body" in sdk) is scenario.sdk_accepts, sdk
    if not scenario.sdk_accepts:
        assert scenario.sdk_says in sdk["error"]

    client = AntomClient(
        gateway_url=gateway.server.base_url,
        client_id=CLIENT_ID,
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key(), keypair("antom-next").public_key()],
        timeout=5,
    )
    try:
        req = RefundRequest(f"rr-{scenario.name}", "pay-1", Money(1250, "USD"), reason="返品 ✓")
        res = await client.refund(req)
    finally:
        await client.aclose()
    assert res.answer is scenario.our_answer
    if "body" in sdk and not scenario.stricter:  # what the SDK accepted, we read the same
        assert res.result_code == json.loads(sdk["body"])["result"]["resultCode"]
    assert gateway.verified[-1] == ("/ams/sandbox/api/v1/payments/refund", True)


def test_sdk_inquiry_refund_accepts_our_signed_response(sdk_answers: dict[str, Any]) -> None:
    body = json.loads(sdk_answers["inquiry"]["body"])
    assert body["refundStatus"] == "SUCCESS"
    assert body["refundRequestId"] == "rr-signed-S"
