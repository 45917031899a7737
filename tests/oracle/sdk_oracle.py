"""Antom's official Python SDK (global-open-sdk-python 1.7.1) as a test oracle.

Runs ONLY in an isolated environment (the SDK pins an old cryptography):

    uv run --no-project --isolated --with global-open-sdk-python==1.7.1 \\
        python tests/oracle/sdk_oracle.py < checks.json

stdin: ``{"checks": [{"op": ..., ...}, ...]}``; stdout: ``{"results": [...]}``, one result
per check, in order. Every op reports an SDK exception as ``{"error": "..."}`` instead of
failing the batch, because "the SDK refuses this" is often the answer being tested.

ops:
- ``sign``: signature_tool.sign → ``{"value"}``
- ``verify``: signature_tool.verify (value after ``signature=``) → ``{"ok"}``
- ``check_signature``: webhook_tool.check_signature (whole header) → ``{"ok"}``
- ``refund`` / ``inquiry_refund`` / ``inquiry_payment``: DefaultAlipayClient.execute
  against ``gateway_url`` over plain HTTP → ``{"body", "target"}`` (the raw response the
  SDK accepted and the request target it sent) or ``{"error"}``
"""

from __future__ import annotations

import http.client
import json
import sys
import urllib.parse
from typing import Any

import com.alipay.ams.api.default_alipay_client as default_alipay_client
from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.exception.exception import AlipayApiException
from com.alipay.ams.api.model.amount import Amount
from com.alipay.ams.api.request.pay.alipay_inquiry_refund_request import (
    AlipayInquiryRefundRequest,
)
from com.alipay.ams.api.request.pay.alipay_pay_query_request import AlipayPayQueryRequest
from com.alipay.ams.api.request.pay.alipay_refund_request import AlipayRefundRequest
from com.alipay.ams.api.tools import signature_tool, webhook_tool

# The request targets plain_http_post sent, so a client op can report its own.
SENT_TARGETS: list[str] = []


def plain_http_post(
    url: str,
    headers: dict[str, str] | None = None,
    req_body: str | None = None,
    charset: str = "UTF-8",
) -> tuple[list[tuple[str, str]], bytes]:
    """The SDK's do_post over plain HTTP on the URL's own port.

    Everything else is kept as the SDK does it: the absolute request target, header
    casing as given, non-200 raising, raw headers and bytes returned.
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=15)
    try:
        connection.connect()
    except Exception as e:
        raise AlipayApiException("connect failed. " + str(e)) from e
    SENT_TARGETS.append(url)
    connection.request("POST", url, body=(req_body or "").encode(charset), headers=headers or {})
    response = connection.getresponse()
    if response.status != 200:
        raise AlipayApiException("invalid http status " + str(response.status))
    result = response.getheaders(), response.read()
    connection.close()
    return result


default_alipay_client.do_post = plain_http_post


def run(check: dict[str, Any]) -> dict[str, Any]:
    op = check["op"]
    if op == "sign":
        return {
            "value": signature_tool.sign(
                "POST",
                check["path"],
                check["client_id"],
                check["time"],
                check["body"],
                check["private_key"],
            )
        }
    if op in ("verify", "check_signature"):
        # verify takes the value after "signature=", check_signature the whole header.
        verify = signature_tool.verify if op == "verify" else webhook_tool.check_signature
        ok = verify(
            "POST",
            check["path"],
            check["client_id"],
            check["time"],
            check["body"],
            check["signature"],
            check["public_key"],
        )
        return {"ok": bool(ok)}
    if op in ("refund", "inquiry_refund", "inquiry_payment"):
        client = DefaultAlipayClient(
            check["gateway_url"], check["client_id"], check["private_key"], check["public_key"]
        )
        request: Any
        if op == "refund":
            request = AlipayRefundRequest()
            request.refund_request_id = check["refund_request_id"]
            request.payment_id = check["payment_id"]
            request.refund_amount = Amount(check["currency"], check["value"])
            if check.get("reason"):
                request.refund_reason = check["reason"]
        elif op == "inquiry_refund":
            request = AlipayInquiryRefundRequest()
            request.refund_request_id = check.get("refund_request_id")
            request.refund_id = check.get("refund_id")
        else:
            request = AlipayPayQueryRequest()
            request.payment_id = check.get("payment_id")
            request.payment_request_id = check.get("payment_request_id")
        body = client.execute(request)
        return {"body": body, "target": SENT_TARGETS[-1]}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    checks = json.load(sys.stdin)["checks"]
    results = []
    for check in checks:
        try:
            results.append(run(check))
        except Exception as e:  # the SDK raises for rejections; report them as data
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
