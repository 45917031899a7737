"""Antom's official Python SDK (1.7.1, isolated environment) against the simulator.

The SDK runs through the one oracle script in ``tests/oracle/``; it verifies every
response signature itself, so a ``body`` in its answer means the simulator's signature passed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.oracle.oracle import run_oracle, sdk_private_key, sdk_public_key
from tests.sim.helpers import Gateway, code, running_sink
from tests.support import keys
from tests.support.simulator import running_simulator
from web.antom.keys import load_private_key, load_public_key


@pytest.mark.oracle
def test_official_sdk_accepts_simulator_responses_and_notifications(tmp_path: Path) -> None:
    with (
        running_sink("/hooks/antom?shop=1") as sink,
        running_simulator(tmp_path, notify_url=sink.url) as sim,
    ):
        payment = sim.create_payment(method="ALIPAY_CN", currency="USD", amount_minor=5000)
        antom_public_key = sdk_public_key(load_public_key(keys.ANTOM_PUBLIC_PEM))
        client: dict[str, Any] = {
            "gateway_url": sim.base_url,
            "client_id": sim.client_id,
            "private_key": sdk_private_key(load_private_key(keys.MERCHANT_PRIVATE_PEM)),
            "public_key": antom_public_key,
        }
        # A refund made beforehand, so its REFUND_RESULT notification can be checked too.
        gw = Gateway(sim)
        assert code(gw.refund(payment["paymentId"], 250, "pre-oracle")) == ("SUCCESS", "S")
        gw.close()
        notes = sim.wait_for(lambda: sink.snapshot() if len(sink) >= 2 else None)
        checks: list[dict[str, Any]] = [
            {
                **client,
                "op": "refund",
                "refund_request_id": "oracle-refund-1",
                "payment_id": payment["paymentId"],
                "currency": "USD",
                "value": "1250",
                "reason": "oracle",
            },
            {**client, "op": "inquiry_refund", "refund_request_id": "oracle-refund-1"},
            {**client, "op": "inquiry_payment", "payment_id": payment["paymentId"]},
            # Signed with a key Antom does not know.
            {
                **client,
                "op": "inquiry_refund",
                "refund_request_id": "oracle-refund-1",
                "private_key": sdk_private_key(load_private_key(keys.STRANGER_PRIVATE_PEM)),
            },
            *(
                {
                    "op": "check_signature",
                    "path": n.uri,
                    "client_id": n.headers["client-id"],
                    "time": n.headers["request-time"],
                    "body": n.body.decode(),
                    "signature": n.headers["signature"],
                    "public_key": antom_public_key,
                }
                for n in notes
            ),
        ]
        results = run_oracle(checks)

    answered = results[:3]
    for result in answered:
        assert "body" in result, result  # the SDK accepted the simulator's signature
    refund, inquiry, paid = (json.loads(r["body"]) for r in answered)
    assert refund["result"]["resultCode"] == "SUCCESS"
    assert refund["refundAmount"] == {"currency": "USD", "value": "1250"}
    assert inquiry["refundStatus"] == "SUCCESS"
    assert inquiry["refundId"] == refund["refundId"]
    # The seed guide's APO fields are part of the bytes the SDK verified.
    assert refund["acquirerReferenceNo"] and refund["acquirerInfo"]["acquirerTransactionId"]
    assert inquiry["acquirerInfo"] == refund["acquirerInfo"]
    assert paid["paymentStatus"] == "SUCCESS"
    assert sorted(t["transactionRequestId"] for t in paid["transactions"]) == [
        "oracle-refund-1",
        "pre-oracle",
    ]
    # The SDK sends an absolute-form request target; the simulator must take it.
    assert all(str(r["target"]).startswith("http://") for r in answered)
    # The unsigned INVALID_SIGNATURE reply makes the SDK raise rather than hand back a
    # parsed result.
    stranger = results[3]
    assert "body" not in stranger and "signature" in stranger.get("error", ""), stranger
    assert [r["ok"] for r in results[4:]] == [True, True]
    assert {n.uri for n in notes} == {"/hooks/antom?shop=1"}
