"""How a refund call's answer is read off the wire, and the agent-facing explanations
(pure, no I/O). What each answer means for money is web/rules/outcomes.py's."""

from __future__ import annotations

import pytest

from web.antom.messages import (
    REFUND_CODE_EXPLANATIONS,
    Answer,
    RefundRequest,
    classify_refund,
    explain_code,
)
from web.antom.money import Money

U, S, F = Answer.UNKNOWN, Answer.SUCCESS, Answer.FAIL
IN, NP = Answer.IN_PROCESS, Answer.NOT_PROCESSED


@pytest.mark.parametrize(
    ("transport_error", "http_status", "status", "code", "expected"),
    [
        (False, 200, "S", "SUCCESS", S),
        (False, 200, "F", "REFUND_WINDOW_EXCEED", F),
        (False, 200, "F", "INVALID_SIGNATURE", NP),  # a gateway refusal: never ran
        (False, 200, "F", "KEY_NOT_FOUND", NP),
        (False, 200, "F", "ACCESS_DENIED", NP),
        (True, None, None, None, U),  # timeout / connection refused
        (True, 200, "F", "PARAM_ILLEGAL", U),  # body cut off mid-stream
        (False, 500, "F", "PROCESS_FAIL", U),
        (False, 502, None, None, U),
        (False, 429, None, None, U),
        (False, 404, "F", "NO_INTERFACE_DEF", U),
        (False, 200, None, None, U),  # non-JSON or untrusted
        (False, 200, "U", "UNKNOWN_EXCEPTION", U),
        (False, 200, "U", "REFUND_IN_PROCESS", IN),
        (False, 200, "S", "REFUND_IN_PROCESS", IN),
        (False, 200, "U", "REQUEST_TRAFFIC_EXCEED_LIMIT", U),
        (False, 200, "F", "REQUEST_TRAFFIC_EXCEED_LIMIT", U),
        (False, 200, "F", "UNKNOWN_EXCEPTION", U),
        (False, 200, "F", "REPEAT_REQ_INCONSISTENT", U),
        (False, 200, "X", "WHATEVER", U),
    ],
)
def test_classify_refund(
    transport_error: bool,
    http_status: int | None,
    status: str | None,
    code: str | None,
    expected: Answer,
) -> None:
    assert classify_refund(transport_error, http_status, status, code) is expected


# Every refund-related code in the protocol notes §6 and §7.4.
PROTOCOL_REFUND_CODES = """
SUCCESS REFUND_IN_PROCESS UNKNOWN_EXCEPTION REQUEST_TRAFFIC_EXCEED_LIMIT ACCESS_DENIED
CURRENCY_NOT_SUPPORT INVALID_CONTRACT INVALID_MERCHANT_STATUS MERCHANT_BALANCE_NOT_ENOUGH
ORDER_NOT_EXIST ORDER_STATUS_INVALID ORDER_IS_CANCELED PARAM_ILLEGAL PROCESS_FAIL
REFUND_AMOUNT_EXCEED REFUND_WINDOW_EXCEED PARTIAL_REFUND_NOT_SUPPORTED
PAYMENT_METHOD_NOT_SUPPORTED MULTIPLE_REFUNDS_NOT_SUPPORTED REPEAT_REQ_INCONSISTENT RISK_REJECT
KEY_NOT_FOUND INVALID_SIGNATURE INVALID_CLIENT INVALID_API NO_INTERFACE_DEF METHOD_NOT_SUPPORTED
MEDIA_TYPE_NOT_ACCEPTABLE SYSTEM_ERROR PAYMENT_IN_PROCESS INVALID_ACCESS_TOKEN REFUND_NOT_EXIST
""".split()


@pytest.mark.parametrize("code", PROTOCOL_REFUND_CODES)
def test_every_protocol_code_has_a_plain_english_explanation(code: str) -> None:
    text = REFUND_CODE_EXPLANATIONS[code]
    assert text.endswith(".") and code not in text and "_" not in text


def test_explanations() -> None:
    assert explain_code("REFUND_WINDOW_EXCEED") == "The payment method's refund window has passed."
    assert explain_code("SOMETHING_NEW") == "Antom returned SOMETHING_NEW."
    assert explain_code(None) == "Antom gave no result code."


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"refund_request_id": ""}, "refund_request_id must be 1 to 64"),
        ({"refund_request_id": "x" * 65}, "refund_request_id must be 1 to 64"),
        ({"payment_id": ""}, "payment_id must be 1 to 64"),
        ({"amount": Money(0, "USD")}, "must be positive"),
        ({"reason": "r" * 257}, "reason must be at most 256"),
        ({"notify_url": "https://x/" + "u" * 1020}, "notify_url must be at most 1024"),
    ],
)
def test_refund_request_rejects_what_antom_would(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "refund_request_id": "rr",
        "payment_id": "p",
        "amount": Money(1, "USD"),
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        RefundRequest(**fields)  # type: ignore[arg-type]


def test_refund_request_wire_omits_empty_optionals() -> None:
    wire = RefundRequest("rr", "p", Money(1, "JPY")).to_wire()
    assert wire == {
        "refundRequestId": "rr",
        "paymentId": "p",
        "refundAmount": {"currency": "JPY", "value": "1"},
    }
