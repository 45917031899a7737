"""Antom's official Python SDK (1.7.1, isolated environment) against the simulator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.sim.helpers import Gateway, code, running_sink
from tests.support import keys
from tests.support.simulator import running_simulator
from web.antom.keys import bare_base64

ORACLE = Path(__file__).with_name("sdk_oracle.py")


def run_oracle(job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [
            "uv",
            "run",
            "--no-project",
            "--isolated",
            "--quiet",
            "--with",
            "global-open-sdk-python==1.7.1",
            "python",
            str(ORACLE),
        ],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if done.returncode:
        pytest.fail(f"oracle failed:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.oracle
def test_official_sdk_accepts_simulator_responses_and_notifications(tmp_path: Path) -> None:
    with (
        running_sink("/hooks/antom?shop=1") as sink,
        running_simulator(tmp_path, notify_url=sink.url) as sim,
    ):
        payment = sim.create_payment(method="ALIPAY_CN", currency="USD", amount_minor=5000)
        port = urlsplit(sim.base_url).port
        # The SDK sends absolute-form targets with a host it would reach on 443; the patched
        # transport connects to the simulator's port and keeps that request line.
        job: dict[str, Any] = {
            "port": port,
            "gateway": f"http://127.0.0.1:{port}",
            "client_id": sim.client_id,
            "merchant_private_key": bare_base64(keys.MERCHANT_PRIVATE_PEM),
            "stranger_private_key": bare_base64(keys.STRANGER_PRIVATE_PEM),
            "antom_public_key": bare_base64(keys.ANTOM_PUBLIC_PEM),
            "payment_id": payment["paymentId"],
            "refund_request_id": "oracle-refund-1",
            "currency": "USD",
            "value": "1250",
        }
        # A refund made beforehand, so its REFUND_RESULT notification can be checked too.
        gw = Gateway(sim)
        assert code(gw.refund(payment["paymentId"], 250, "pre-oracle")) == ("SUCCESS", "S")
        gw.close()
        notes = sim.wait_for(lambda: sink.snapshot() if len(sink) >= 2 else None)
        job["notifications"] = [
            {
                "path": n.uri,
                "client_id": n.headers["client-id"],
                "request_time": n.headers["request-time"],
                "body": n.body.decode(),
                "signature": n.headers["signature"],
            }
            for n in notes
        ]
        report = run_oracle(job)

    refund = report["refund"]
    assert isinstance(refund, dict)
    assert refund["result"]["resultCode"] == "SUCCESS"
    assert refund["refundAmount"] == {"currency": "USD", "value": "1250"}
    inquiry = report["inquiry_refund"]
    assert isinstance(inquiry, dict)
    assert inquiry["refundStatus"] == "SUCCESS"
    assert inquiry["refundId"] == refund["refundId"]
    paid = report["inquiry_payment"]
    assert isinstance(paid, dict)
    assert paid["paymentStatus"] == "SUCCESS"
    assert sorted(t["transactionRequestId"] for t in paid["transactions"]) == [
        "oracle-refund-1",
        "pre-oracle",
    ]
    # Signed with a key Antom does not know: the unsigned INVALID_SIGNATURE reply makes
    # the SDK raise rather than hand back a parsed result.
    assert report["bad_signature"] != "accepted"
    assert report["notifications_verified"] == [True, True]
    assert {n.uri for n in notes} == {"/hooks/antom?shop=1"}
    targets = report["targets"]
    assert isinstance(targets, list) and all(str(t).startswith("http://") for t in targets)
