"""The official SDK and our AntomClient, each against the real simulator, get the same answers.

Both run the same script of calls on their own payment: a refund, an inquiry, an
over-refund, an inquiry for a refund that does not exist, an idempotent replay and a
magic-amount UNKNOWN_EXCEPTION. The SDK verifies every simulator signature itself, so
an SDK answer at all means the simulator signed as Antom does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.oracle.oracle import run_oracle, sdk_private_key, sdk_public_key
from tests.support.simulator import SimHandle
from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.antom.messages import Answer, RefundRequest, classify_refund
from web.antom.money import Money
from web.sim.faults import Fault, magic_amount

pytestmark = pytest.mark.oracle

PAYMENT_MINOR = 10_000_000  # USD 100,000.00: room for the magic amount


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    # A sandbox client id, so both clients take the /ams/sandbox/api path end to end.
    return {"client_id": "SANDBOX_5X00000000000000"}


def script(prefix: str, payment_id: str) -> list[dict[str, Any]]:
    """The calls, in order, as SDK oracle checks (ours replays the same list)."""
    refund = {"op": "refund", "payment_id": payment_id, "currency": "USD"}
    unknown = magic_amount(Fault.UNKNOWN_EXCEPTION, "USD")
    return [
        {**refund, "refund_request_id": f"{prefix}-1", "value": "1250", "reason": "返品 ✓"},
        {"op": "inquiry_refund", "refund_request_id": f"{prefix}-1"},
        {**refund, "refund_request_id": f"{prefix}-2", "value": str(PAYMENT_MINOR * 2)},
        {"op": "inquiry_refund", "refund_request_id": f"{prefix}-never-sent"},
        {**refund, "refund_request_id": f"{prefix}-1", "value": "1250", "reason": "返品 ✓"},
        {**refund, "refund_request_id": f"{prefix}-3", "value": str(unknown)},
    ]


EXPECTED = [
    ("S", "SUCCESS"),
    ("S", "SUCCESS"),
    ("F", "REFUND_AMOUNT_EXCEED"),
    ("F", "REFUND_NOT_EXIST"),
    ("S", "SUCCESS"),
    ("U", "UNKNOWN_EXCEPTION"),
]


async def ours(client: AntomClient, call: dict[str, Any]) -> Any:
    if call["op"] == "inquiry_refund":
        return await client.inquiry_refund(refund_request_id=call["refund_request_id"])
    amount = Money(int(call["value"]), call["currency"])
    req = RefundRequest(call["refund_request_id"], call["payment_id"], amount, call.get("reason"))
    return await client.refund(req)


async def test_sdk_and_our_client_agree_on_the_simulator(simulator: SimHandle) -> None:
    merchant = load_private_key(simulator.merchant_private_key_pem)
    antom = load_public_key(simulator.antom_public_key_pem)
    sdk_payment = simulator.create_payment(method="ALIPAY_CN", amount_minor=PAYMENT_MINOR)
    our_payment = simulator.create_payment(method="ALIPAY_CN", amount_minor=PAYMENT_MINOR)

    common = {
        "gateway_url": simulator.base_url,
        "client_id": simulator.client_id,
        "private_key": sdk_private_key(merchant),
        "public_key": sdk_public_key(antom),
    }
    sdk_calls = script("sdk", sdk_payment["paymentId"])
    sdk_results = run_oracle([{**common, **call} for call in sdk_calls])

    client = AntomClient(
        gateway_url=simulator.base_url,
        client_id=simulator.client_id,
        merchant_private_key=merchant,
        antom_public_keys=[antom],
        timeout=10,
    )
    try:
        our_results = [await ours(client, call) for call in script("our", our_payment["paymentId"])]
    finally:
        await client.aclose()

    sdk_bodies = []
    for call, sdk, (status, code) in zip(sdk_calls, sdk_results, EXPECTED, strict=True):
        assert "body" in sdk, (call, sdk)  # the SDK accepted the simulator's signature
        body = json.loads(sdk["body"])
        assert (body["result"]["resultStatus"], body["result"]["resultCode"]) == (status, code)
        sdk_bodies.append(body)

    for res, (status, code) in zip(our_results, EXPECTED, strict=True):
        assert (res.result_status, res.result_code, res.error) == (status, code, None)

    refund, inquiry, over, missing, replay, unknown = our_results
    assert refund.answer is Answer.SUCCESS and refund.verified
    assert refund.answer is classify_refund(False, 200, *EXPECTED[0])
    assert refund.refund_amount == Money(1250, "USD")
    assert inquiry.answer is Answer.SUCCESS
    assert inquiry.refund_id == refund.refund_id
    assert over.answer is Answer.FAIL
    assert missing.not_exist and missing.answer is Answer.ABSENT
    assert replay.answer is Answer.SUCCESS and replay.refund_id == refund.refund_id
    assert unknown.answer is Answer.UNKNOWN

    # The SDK saw the same shapes: the replay returned the first refund's id.
    assert sdk_bodies[4]["refundId"] == sdk_bodies[0]["refundId"]
    assert sdk_bodies[1]["refundStatus"] == "SUCCESS"
