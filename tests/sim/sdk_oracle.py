# mypy: ignore-errors
"""Runs INSIDE an isolated environment with Antom's official Python SDK (1.7.1).

Reads a JSON job on stdin, drives the simulator through ``DefaultAlipayClient`` (its
transport patched to plain HTTP on the simulator's port, keeping the absolute-form
request target the SDK sends), prints a JSON report. The SDK verifies every response
signature itself, so a report at all means the simulator's signatures passed.
"""

from __future__ import annotations

import http.client
import json
import sys
import urllib.parse

import com.alipay.ams.api.default_alipay_client as client_module
from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.exception.exception import AlipayApiException
from com.alipay.ams.api.model.amount import Amount
from com.alipay.ams.api.request.pay.alipay_inquiry_refund_request import (
    AlipayInquiryRefundRequest,
)
from com.alipay.ams.api.request.pay.alipay_pay_query_request import AlipayPayQueryRequest
from com.alipay.ams.api.request.pay.alipay_refund_request import AlipayRefundRequest
from com.alipay.ams.api.tools.webhook_tool import check_signature

PORT = 0
SEEN_TARGETS: list[str] = []


def do_post(url, headers=None, req_body=None, charset="UTF-8"):
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, PORT, timeout=15)
    conn.request("POST", url, body=req_body.encode(charset), headers=headers)
    SEEN_TARGETS.append(url)
    response = conn.getresponse()
    if response.status != 200:
        raise AlipayApiException("invalid http status " + str(response.status))
    result = response.getheaders(), response.read()
    conn.close()
    return result


def main() -> None:
    global PORT
    job = json.loads(sys.stdin.read())
    PORT = job["port"]
    client_module.do_post = do_post
    client = DefaultAlipayClient(
        job["gateway"], job["client_id"], job["merchant_private_key"], job["antom_public_key"]
    )
    report: dict[str, object] = {}

    refund = AlipayRefundRequest()
    refund.refund_request_id = job["refund_request_id"]
    refund.payment_id = job["payment_id"]
    refund.refund_amount = Amount(job["currency"], job["value"])
    refund.refund_reason = "oracle"
    report["refund"] = json.loads(client.execute(refund))

    inquiry = AlipayInquiryRefundRequest()
    inquiry.refund_request_id = job["refund_request_id"]
    report["inquiry_refund"] = json.loads(client.execute(inquiry))

    pay_query = AlipayPayQueryRequest()
    pay_query.payment_id = job["payment_id"]
    report["inquiry_payment"] = json.loads(client.execute(pay_query))

    bad = DefaultAlipayClient(
        job["gateway"], job["client_id"], job["stranger_private_key"], job["antom_public_key"]
    )
    try:
        bad.execute(inquiry)
        report["bad_signature"] = "accepted"
    except AlipayApiException as exc:
        report["bad_signature"] = str(exc)

    notes = []
    for n in job.get("notifications", []):
        notes.append(
            check_signature(
                "POST",
                n["path"],
                n["client_id"],
                n["request_time"],
                n["body"],
                n["signature"],
                job["antom_public_key"],
            )
        )
    report["notifications_verified"] = notes
    report["targets"] = SEEN_TARGETS
    print(json.dumps(report))


if __name__ == "__main__":
    main()
