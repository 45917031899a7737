"""AntomClient over real HTTP against a scripted server playing Antom's gateway."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from tests.antom.conftest import CLIENT_ID
from tests.antom.keypairs import keypair
from tests.antom.scripted_server import (
    Received,
    Scripted,
    ScriptedServer,
    antom_response,
)
from tests.support.net import free_port
from web.antom import signing
from web.antom.client import AntomClient
from web.antom.keys import private_key_pem
from web.antom.messages import Answer, Exchange, RefundRequest, explain_code
from web.antom.money import Money

REQ = RefundRequest(
    refund_request_id="rr-0001",
    payment_id="pay-0001",
    amount=Money(1250, "USD"),
    reason="Damaged item",
    notify_url="https://desk.example.com/webhooks/antom",
)

SUCCESS = {
    "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success."},
    "refundRequestId": "rr-0001",
    "refundId": "2026112519401089010011",
    "paymentId": "pay-0001",
    "refundAmount": {"currency": "USD", "value": "1250"},
    "refundTime": "2026-11-25T12:00:00+08:00",
}


def result(code: str, status: str, message: str = "msg") -> dict[str, Any]:
    return {"result": {"resultCode": code, "resultStatus": status, "resultMessage": message}}


def antom(payload: dict[str, Any] | bytes, **kwargs: Any) -> Any:
    """A responder answering every request as Antom (signed with the Antom key by default)."""
    kwargs.setdefault("key", keypair("antom"))
    return lambda request: antom_response(request, payload, **kwargs)


def assert_request_signed_by_merchant(request: Received, uri: str) -> None:
    """What Antom's gateway does: verify over the exact bytes and path received."""
    assert signing.verify(
        keypair("merchant").public_key(),
        uri=uri,
        client_id=request.headers["client-id"],
        time=request.headers["request-time"],
        body=request.body,
        header=request.headers["signature"],
    )


async def test_signed_success_is_succeeded(server: ScriptedServer, client: AntomClient) -> None:
    server.reply(antom(SUCCESS))
    res = await client.refund(REQ)
    assert res.answer is Answer.SUCCESS
    assert res.verified
    assert res.result_code == "SUCCESS"
    assert res.refund_id == "2026112519401089010011"
    assert res.refund_time == "2026-11-25T12:00:00+08:00"
    assert res.refund_amount == Money(1250, "USD")
    assert res.rate_limited is False


async def test_request_is_signed_over_exact_bytes_sent(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(antom(SUCCESS))
    await client.refund(REQ)
    [request] = server.received
    assert request.method == "POST"
    assert request.target == "/ams/api/v1/payments/refund"
    assert request.headers["content-type"] == "application/json; charset=UTF-8"
    assert request.headers["client-id"] == CLIENT_ID
    assert request.headers["request-time"].isdigit()
    assert len(request.headers["request-time"]) == 13  # epoch milliseconds
    assert request.headers["signature"].startswith("algorithm=RSA256,keyVersion=1,signature=")
    assert_request_signed_by_merchant(request, "/ams/api/v1/payments/refund")
    # compact JSON, every scalar a string, amount as {currency, value}
    assert b" " not in request.body.replace(b"Damaged item", b"")
    assert request.json() == {
        "refundRequestId": "rr-0001",
        "paymentId": "pay-0001",
        "refundAmount": {"currency": "USD", "value": "1250"},
        "refundReason": "Damaged item",
        "refundNotifyUrl": "https://desk.example.com/webhooks/antom",
    }


async def test_key_version_goes_in_the_signature_header(server: ScriptedServer) -> None:
    client = AntomClient(
        gateway_url=server.base_url,
        client_id=CLIENT_ID,
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key()],
        key_version="2",
    )
    server.reply(antom(SUCCESS))
    try:
        await client.refund(REQ)
    finally:
        await client.aclose()
    [request] = server.received
    parsed = signing.parse_signature_header(request.headers["signature"])
    assert parsed.key_version == "2"
    assert_request_signed_by_merchant(request, "/ams/api/v1/payments/refund")


async def test_unicode_reason_is_sent_as_utf8_and_signed(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(antom(SUCCESS))
    req = RefundRequest("rr-u", "pay-u", Money(100, "JPY"), reason="返品 — café ✓")
    await client.refund(req)
    [request] = server.received
    assert "返品 — café ✓".encode() in request.body
    assert_request_signed_by_merchant(request, "/ams/api/v1/payments/refund")


async def test_unsigned_success_is_not_trusted(server: ScriptedServer, client: AntomClient) -> None:
    server.reply(antom(SUCCESS, key=None))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.verified is False
    assert res.result_code is None
    assert res.refund_id is None
    assert res.error is not None and "unsigned" in res.error


async def test_success_with_empty_signature_headers_is_not_trusted(
    server: ScriptedServer, client: AntomClient
) -> None:
    empty = [("client-id", CLIENT_ID), ("response-time", ""), ("signature", "")]
    server.reply(antom(SUCCESS, headers=empty))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN


async def test_tampered_success_is_not_trusted(server: ScriptedServer, client: AntomClient) -> None:
    tampered = json.dumps({**SUCCESS, "refundAmount": {"currency": "USD", "value": "9999"}})
    server.reply(antom(SUCCESS, sent_body=tampered.encode()))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.error == "response signature did not verify"


@pytest.mark.parametrize(
    ("key", "state"),
    [("stranger", Answer.UNKNOWN), ("antom-next", Answer.SUCCESS)],
    ids=["unknown-key-not-trusted", "rotated-key-trusted"],
)
async def test_success_is_trusted_only_under_a_configured_key(
    server: ScriptedServer, client: AntomClient, key: str, state: Answer
) -> None:
    server.reply(antom(SUCCESS, key=keypair(key)))
    res = await client.refund(REQ)
    assert res.answer is state


async def test_response_signed_over_another_path_is_not_trusted(
    server: ScriptedServer, client: AntomClient
) -> None:
    def reply(request: Received) -> Scripted:
        moved = Received(request.method, "/ams/api/v1/payments/pay", request.headers, request.body)
        return antom_response(moved, SUCCESS, key=keypair("antom"))

    server.reply(reply)
    assert (await client.refund(REQ)).answer is Answer.UNKNOWN


UNSIGNED_HEADERS = {
    "absent": None,  # no signature headers at all (how Antom answers INVALID_SIGNATURE)
    "empty": [("client-id", CLIENT_ID), ("response-time", ""), ("signature", "")],
    "empty-value": [
        ("response-time", ""),
        ("signature", "algorithm=RSA256,keyVersion=1,signature="),
    ],
}


def unsigned(payload: dict[str, Any], headers: list[tuple[str, str]] | None) -> Scripted | Any:
    return antom(payload, key=None) if headers is None else antom(payload, headers=headers)


@pytest.mark.parametrize("headers", UNSIGNED_HEADERS.values(), ids=UNSIGNED_HEADERS.keys())
async def test_unsigned_business_failure_is_not_trusted(
    server: ScriptedServer, client: AntomClient, headers: list[tuple[str, str]] | None
) -> None:
    # An unsigned F could release money (or be forged to): only gateway refusals, which
    # Antom cannot always sign, are taken unsigned.
    server.reply(unsigned(result("REFUND_WINDOW_EXCEED", "F", "window exceeded"), headers))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.result_code is None
    assert res.verified is False


@pytest.mark.parametrize("headers", UNSIGNED_HEADERS.values(), ids=UNSIGNED_HEADERS.keys())
async def test_unsigned_gateway_refusal_is_trusted_only_with_empty_headers(
    server: ScriptedServer, client: AntomClient, headers: list[tuple[str, str]] | None
) -> None:
    # SDK 1.7.1: headers present but empty are an unsigned answer; headers missing
    # altogether make it raise (protocol notes §16): untrusted, the outcome is unknown.
    server.reply(unsigned(result("INVALID_SIGNATURE", "F", "invalid signature"), headers))
    res = await client.refund(REQ)
    if headers is None:
        assert res.answer is Answer.UNKNOWN
        assert res.result_code is None
        assert res.error == "unsigned response: it carries no signature headers"
    else:
        assert res.answer is Answer.NOT_PROCESSED
        assert res.result_code == "INVALID_SIGNATURE"
        assert res.result_message == "invalid signature"
    assert res.verified is False


async def test_signed_failure_is_failed(server: ScriptedServer, client: AntomClient) -> None:
    server.reply(antom(result("REFUND_AMOUNT_EXCEED", "F")))
    res = await client.refund(REQ)
    assert res.answer is Answer.FAIL
    assert res.verified is True
    assert "more than the amount still refundable" in explain_code(res.result_code)


async def test_failure_with_bad_signature_is_not_trusted(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(antom(result("REFUND_AMOUNT_EXCEED", "F"), key=keypair("stranger")))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.result_code is None


async def test_failure_with_incomplete_signature_headers_is_not_trusted(
    server: ScriptedServer, client: AntomClient
) -> None:
    def reply(request: Received) -> Scripted:
        signed = antom_response(request, result("PARAM_ILLEGAL", "F"), key=keypair("antom"))
        kept = [(k, v) for k, v in signed.headers if k != "response-time"]
        return Scripted(200, signed.body, kept)

    server.reply(reply)
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.error == "response signature headers are incomplete"


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("code", ["UNKNOWN_EXCEPTION", "REFUND_IN_PROCESS"])
async def test_unknown_result_is_processing(
    server: ScriptedServer, client: AntomClient, code: str, signed: bool
) -> None:
    # Unsigned as SDK 1.7.1 accepts it: the signature headers present but empty.
    payload = result(code, "U")
    server.reply(antom(payload) if signed else unsigned(payload, UNSIGNED_HEADERS["empty"]))
    res = await client.refund(REQ)
    expected = Answer.IN_PROCESS if code == "REFUND_IN_PROCESS" else Answer.UNKNOWN
    assert res.answer is expected
    assert res.result_code == code
    assert res.rate_limited is False


async def test_repeat_request_inconsistent_is_not_failed(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(antom(result("REPEAT_REQ_INCONSISTENT", "F")))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.result_code == "REPEAT_REQ_INCONSISTENT"


async def test_rate_limit_is_processing_and_flagged(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(unsigned(result("REQUEST_TRAFFIC_EXCEED_LIMIT", "U"), UNSIGNED_HEADERS["empty"]))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.rate_limited is True


async def test_http_429_is_processing_and_flagged(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(Scripted(429, b"slow down"))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.rate_limited is True


@pytest.mark.parametrize("status", [500, 502, 503, 404])
async def test_non_200_is_processing(
    server: ScriptedServer, client: AntomClient, recorded: list[Exchange], status: int
) -> None:
    # Even a signed F inside a non-200 reply is not a definite answer.
    def reply(request: Received) -> Scripted:
        signed = antom_response(request, result("PROCESS_FAIL", "F"), key=keypair("antom"))
        return Scripted(status, signed.body, signed.headers)

    server.reply(reply)
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.error == f"HTTP {status} from Antom"
    assert recorded[0].status == status


async def test_non_json_is_processing(server: ScriptedServer, client: AntomClient) -> None:
    server.reply(Scripted(200, b"<html>gateway</html>", [("content-type", "text/html")]))
    res = await client.refund(REQ)
    assert res.answer is Answer.UNKNOWN
    assert res.error == "response is not a JSON object"


async def test_read_timeout_is_processing(
    server: ScriptedServer, impatient_client: AntomClient, recorded: list[Exchange]
) -> None:
    answer = threading.Event()  # the gateway answers only after the client gave up

    def slow(request: Received) -> Scripted:
        reply = antom_response(request, SUCCESS, key=keypair("antom"))
        return Scripted(reply.status, reply.body, reply.headers, hold=answer)

    server.reply(slow)
    try:
        res = await impatient_client.refund(REQ)
    finally:
        answer.set()
    assert res.answer is Answer.UNKNOWN
    assert res.error is not None and "Timeout" in res.error
    assert len(server.received) == 1  # the request did reach the gateway
    [exchange] = recorded
    assert exchange.status is None and exchange.response_body is None
    assert exchange.latency_ms >= 400  # it waited for its 0.5 s timeout first


async def test_connection_refused_is_processing(recorded: list[Exchange]) -> None:
    client = AntomClient(
        gateway_url=f"http://127.0.0.1:{free_port()}",
        client_id=CLIENT_ID,
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key()],
        timeout=0.5,
        recorder=recorded.append,
    )
    try:
        res = await client.refund(REQ)
    finally:
        await client.aclose()
    assert res.answer is Answer.UNKNOWN
    assert res.error is not None and res.error.startswith("ConnectError")
    assert recorded[0].error == res.error


async def test_sandbox_client_id_rewrites_path_before_signing(server: ScriptedServer) -> None:
    client = AntomClient(
        gateway_url=server.base_url + "/",
        client_id="SANDBOX_5X00000000000000",
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key()],
    )
    server.reply(antom(SUCCESS))
    try:
        res = await client.refund(REQ)
    finally:
        await client.aclose()
    [request] = server.received
    assert request.target == "/ams/sandbox/api/v1/payments/refund"
    assert_request_signed_by_merchant(request, "/ams/sandbox/api/v1/payments/refund")
    assert not signing.verify(
        keypair("merchant").public_key(),
        uri="/ams/api/v1/payments/refund",
        client_id=request.headers["client-id"],
        time=request.headers["request-time"],
        body=request.body,
        header=request.headers["signature"],
    )
    # The response was signed over the sandbox path too, and accepted.
    assert res.answer is Answer.SUCCESS


async def test_every_exchange_is_recorded_with_signatures_redacted(
    server: ScriptedServer, client: AntomClient, recorded: list[Exchange]
) -> None:
    server.reply(antom(SUCCESS))
    res = await client.refund(REQ)
    [exchange] = recorded
    assert exchange is res.exchange
    assert exchange.method == "POST"
    assert exchange.url == server.base_url + "/ams/api/v1/payments/refund"
    assert exchange.status == 200
    assert exchange.request_body == server.received[0].body.decode()
    assert json.loads(exchange.response_body or "") == SUCCESS
    sent_signature = server.received[0].headers["signature"]
    assert exchange.request_headers["signature"] == (
        "algorithm=RSA256,keyVersion=1,signature=[redacted]"
    )
    assert exchange.response_headers["signature"].endswith("signature=[redacted]")
    assert sent_signature.split("signature=")[1] not in repr(exchange)
    assert exchange.request_headers["client-id"] == CLIENT_ID
    assert exchange.response_headers["response-time"] == "2026-11-25T12:00:00+08:00"
    assert exchange.error is None


async def test_no_key_material_or_signature_in_logs(
    server: ScriptedServer, client: AntomClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.reply(antom(SUCCESS))
    with caplog.at_level(logging.DEBUG):
        await client.refund(REQ)
    text = caplog.text
    assert "/ams/api/v1/payments/refund" in text  # the call is logged …
    secret_lines = private_key_pem(keypair("merchant")).splitlines()[1:-1]
    assert not any(line in text for line in secret_lines)  # … the key never is
    assert server.received[0].headers["signature"].split("signature=")[1] not in text


async def test_a_failing_recorder_does_not_lose_the_result(server: ScriptedServer) -> None:
    def broken(_exchange: Exchange) -> None:
        raise RuntimeError("database is down")

    client = AntomClient(
        gateway_url=server.base_url,
        client_id=CLIENT_ID,
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key()],
        recorder=broken,
    )
    server.reply(antom(SUCCESS))
    try:
        res = await client.refund(REQ)
    finally:
        await client.aclose()
    assert res.answer is Answer.SUCCESS


# ------------------------------------------------------------------ inquiryRefund

INQUIRY_SUCCESS = {
    **result("SUCCESS", "S", "success"),
    "refundId": "2026112519401089010011",
    "refundRequestId": "rr-0001",
    "refundStatus": "SUCCESS",
    "refundAmount": {"currency": "JPY", "value": "1200"},
    "refundTime": "2026-11-25T12:00:00+08:00",
}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("SUCCESS", Answer.SUCCESS),
        ("FAIL", Answer.FAIL),
        ("PROCESSING", Answer.IN_PROCESS),
    ],
)
async def test_inquiry_refund_reads_refund_status(
    server: ScriptedServer, client: AntomClient, status: str, outcome: Answer
) -> None:
    server.reply(antom({**INQUIRY_SUCCESS, "refundStatus": status}))
    res = await client.inquiry_refund(refund_request_id="rr-0001")
    [request] = server.received
    assert request.target == "/ams/api/v1/payments/inquiryRefund"
    assert request.json() == {"refundRequestId": "rr-0001"}
    assert_request_signed_by_merchant(request, "/ams/api/v1/payments/inquiryRefund")
    assert res.found
    assert res.refund_status == status
    assert res.answer is outcome
    assert res.refund_amount == Money(1200, "JPY")
    assert res.refund_id == "2026112519401089010011"
    assert res.refund_time == "2026-11-25T12:00:00+08:00"
    assert res.not_exist is False


async def test_inquiry_refund_not_exist_is_distinguishable(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(antom(result("REFUND_NOT_EXIST", "F")))
    res = await client.inquiry_refund(refund_id="r-1", refund_request_id="rr-1")
    assert server.received[0].json() == {"refundRequestId": "rr-1", "refundId": "r-1"}
    assert res.not_exist is True
    assert res.found is False
    assert res.answer is Answer.ABSENT  # re-send with the same id, never release the money


async def test_inquiry_refund_unsigned_not_exist_is_not_trusted(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(antom(result("REFUND_NOT_EXIST", "F"), key=None))
    res = await client.inquiry_refund(refund_request_id="rr-1")
    assert res.not_exist is False
    assert res.answer is Answer.UNKNOWN


async def test_inquiry_refund_unsigned_success_is_an_error(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(antom(INQUIRY_SUCCESS, key=None))
    res = await client.inquiry_refund(refund_request_id="rr-0001")
    assert res.found is False
    assert res.refund_status is None
    assert res.refund_amount is None
    assert res.result_code is None
    assert res.error is not None
    assert res.answer is Answer.UNKNOWN


async def test_inquiry_refund_rate_limited(server: ScriptedServer, client: AntomClient) -> None:
    server.reply(antom(result("REQUEST_TRAFFIC_EXCEED_LIMIT", "U")))
    res = await client.inquiry_refund(refund_request_id="rr-0001")
    assert res.rate_limited is True
    assert res.found is False


async def test_inquiry_needs_an_id(client: AntomClient) -> None:
    with pytest.raises(ValueError, match="refundRequestId, refundId"):
        await client.inquiry_refund()


# ------------------------------------------------------------------ inquiryPayment

PAYMENT = {
    **result("SUCCESS", "S", "success"),
    "paymentId": "pay-0001",
    "paymentRequestId": "order-77",
    "paymentStatus": "SUCCESS",
    "paymentAmount": {"currency": "USD", "value": "5000"},
    "paymentMethodType": "ALIPAY_CN",
    "paymentTime": "2026-11-20T10:00:00+08:00",
    "paymentCreateTime": "2026-11-20T09:59:00+08:00",
    "transactions": [
        {
            "transactionType": "REFUND",
            "transactionStatus": "SUCCESS",
            "transactionResult": {"resultCode": "SUCCESS", "resultStatus": "S"},
            "transactionAmount": {"currency": "USD", "value": "1250"},
            "transactionId": "ref-1",
            "transactionRequestId": "rr-0001",
            "transactionTime": "2026-11-21T10:00:00+08:00",
        },
        {
            "transactionType": "REFUND",
            "transactionStatus": "PROCESSING",
            "transactionAmount": {"currency": "USD", "value": "100"},
            "transactionId": "ref-2",
            "transactionRequestId": "rr-0002",
        },
    ],
}


async def test_inquiry_payment_is_typed(server: ScriptedServer, client: AntomClient) -> None:
    server.reply(antom(PAYMENT))
    res = await client.inquiry_payment(payment_id="pay-0001")
    [request] = server.received
    assert request.target == "/ams/api/v1/payments/inquiryPayment"
    assert request.json() == {"paymentId": "pay-0001"}
    assert res.found and res.verified
    assert res.payment_id == "pay-0001"
    assert res.payment_request_id == "order-77"
    assert res.payment_status == "SUCCESS"
    assert res.payment_amount == Money(5000, "USD")
    assert res.payment_method_type == "ALIPAY_CN"
    assert res.payment_time == "2026-11-20T10:00:00+08:00"
    assert res.payment_create_time == "2026-11-20T09:59:00+08:00"
    first, second = res.transactions
    assert (first.type, first.status, first.amount) == ("REFUND", "SUCCESS", Money(1250, "USD"))
    assert (first.transaction_id, first.transaction_request_id) == ("ref-1", "rr-0001")
    assert first.time == "2026-11-21T10:00:00+08:00"
    assert first.result_code == "SUCCESS"
    assert (second.status, second.time, second.result_code) == ("PROCESSING", None, None)


async def test_inquiry_payment_tampered_is_not_found(
    server: ScriptedServer, client: AntomClient
) -> None:
    server.reply(
        antom(PAYMENT, sent_body=json.dumps({**PAYMENT, "paymentStatus": "FAIL"}).encode())
    )
    res = await client.inquiry_payment(payment_request_id="order-77")
    assert server.received[0].json() == {"paymentRequestId": "order-77"}
    assert res.found is False
    assert res.payment_status is None
    assert res.transactions == []
