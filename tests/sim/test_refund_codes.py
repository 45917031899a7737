"""Every refund rule and result code, answered by the simulator over signed HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.sim.helpers import Gateway, code
from tests.support.simulator import SimHandle, running_simulator
from web.sim.faults import Fault, magic_amount


def rid() -> str:
    return f"r-{uuid.uuid4().hex}"


def refund(gw: Gateway, payment: dict[str, Any], value: int, **kw: Any) -> dict[str, Any]:
    currency = kw.pop("currency", payment["currency"])
    return gw.refund(payment["paymentId"], value, kw.pop("request_id", rid()), currency, **kw)


def test_sync_method_refund_succeeds_at_once(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p = shared_sim.create_payment(method="ALIPAY_CN", currency="CNY", amount_minor=10000)
    body = refund(shared_gw, p, 4000)
    assert code(body) == ("SUCCESS", "S")
    assert body["refundAmount"] == {"currency": "CNY", "value": "4000"}
    assert body["paymentId"] == p["paymentId"] and body["refundId"]
    assert shared_sim.refund(body["refundId"])["status"] == "SUCCESS"


def test_async_method_refund_is_in_process_then_succeeds(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="CARD", currency="USD", amount_minor=10000)
    body = refund(shared_gw, p, 10000)
    assert code(body) == ("REFUND_IN_PROCESS", "U")
    refund_id = body["refundId"]
    final = shared_sim.wait_for(
        lambda: (
            r
            if (r := shared_gw.call("inquiryRefund", {"refundId": refund_id}))["refundStatus"]
            != "PROCESSING"
            else None
        )
    )
    assert code(final) == ("SUCCESS", "S")
    assert final["refundStatus"] == "SUCCESS" and final["refundTime"]


def test_unknown_payment_is_order_not_exist(shared_gw: Gateway) -> None:
    body = shared_gw.refund("2026000000000000000000000000000000", 100, rid())
    assert code(body) == ("ORDER_NOT_EXIST", "F")


def test_uncaptured_card_payment_is_order_status_invalid(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="CARD", amount_minor=5000, captured=False)
    assert code(refund(shared_gw, p, 100)) == ("ORDER_STATUS_INVALID", "F")
    shared_sim.admin_post(f"payments/{p['paymentId']}/capture", {"amountMinor": 3000})
    assert code(refund(shared_gw, p, 3001)) == ("REFUND_AMOUNT_EXCEED", "F")
    assert code(refund(shared_gw, p, 3000)) == ("REFUND_IN_PROCESS", "U")


def test_open_chargeback_blocks_refunds_until_judged(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="ALIPAY_HK", currency="HKD", amount_minor=5000)
    shared_sim.admin_post(f"payments/{p['paymentId']}/chargeback")
    assert code(refund(shared_gw, p, 100)) == ("ORDER_STATUS_INVALID", "F")
    shared_sim.admin_post(
        f"payments/{p['paymentId']}/chargeback/close", {"result": "VALIDATE_SUCCESS"}
    )
    assert code(refund(shared_gw, p, 100)) == ("SUCCESS", "S")


def test_cancelled_payment_is_order_status_invalid(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="CARD", amount_minor=5000, captured=False)
    assert code(shared_gw.call("cancel", {"paymentId": p["paymentId"]})) == ("SUCCESS", "S")
    assert code(refund(shared_gw, p, 100)) == ("ORDER_STATUS_INVALID", "F")


def test_other_currency_is_currency_not_support(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p = shared_sim.create_payment(currency="USD", amount_minor=5000)
    assert code(refund(shared_gw, p, 100, currency="EUR")) == ("CURRENCY_NOT_SUPPORT", "F")


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ({"currency": "USD", "value": "0"}, None),
        ({"currency": "USD", "value": "-5"}, None),
        ({"currency": "USD", "value": "12.5"}, None),
        ({"currency": "USD", "value": 100}, None),  # numbers must be strings
        ({"currency": "usd", "value": "100"}, None),
        ({"currency": "USD", "value": "1" * 17}, None),
        ({"value": "100"}, None),
        ("100", None),
        ({"currency": "IDR", "value": "150050"}, "IDR"),  # IDR keeps its last two digits 00
    ],
)
def test_bad_amount_is_param_illegal(
    shared_sim: SimHandle, shared_gw: Gateway, amount: Any, currency: str | None
) -> None:
    p = shared_sim.create_payment(currency=currency or "USD", amount_minor=1_000_000)
    body = {"refundRequestId": rid(), "paymentId": p["paymentId"], "refundAmount": amount}
    assert code(shared_gw.call("refund", body)) == ("PARAM_ILLEGAL", "F")


@pytest.mark.parametrize(
    ("field", "limit"),
    [("refundRequestId", 64), ("refundReason", 256), ("refundNotifyUrl", 1024), ("paymentId", 64)],
)
def test_field_length_limits(
    shared_sim: SimHandle, shared_gw: Gateway, field: str, limit: int
) -> None:
    p = shared_sim.create_payment(amount_minor=10000)

    def body(length: int) -> dict[str, Any]:
        value = ("https://h/" + "x" * 2000)[:length] if field == "refundNotifyUrl" else "x" * length
        b: dict[str, Any] = {
            "refundRequestId": rid(),
            "paymentId": p["paymentId"],
            "refundAmount": {"currency": "USD", "value": "100"},
        }
        b[field] = value
        return b

    assert code(shared_gw.call("refund", body(limit + 1))) == ("PARAM_ILLEGAL", "F")
    at_limit = code(shared_gw.call("refund", body(limit)))
    # At the limit the field is accepted (a paymentId of 64 x's simply does not exist).
    assert at_limit == (("ORDER_NOT_EXIST", "F") if field == "paymentId" else ("SUCCESS", "S"))


@pytest.mark.parametrize("missing", ["refundRequestId", "paymentId", "refundAmount"])
def test_missing_required_field_is_param_illegal(shared_gw: Gateway, missing: str) -> None:
    body: dict[str, Any] = {
        "refundRequestId": rid(),
        "paymentId": "p",
        "refundAmount": {"currency": "USD", "value": "100"},
    }
    del body[missing]
    assert code(shared_gw.call("refund", body)) == ("PARAM_ILLEGAL", "F")


def test_notify_url_must_be_http(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p = shared_sim.create_payment(amount_minor=10000)
    body = refund(shared_gw, p, 100, refundNotifyUrl="ftp://example.com/x")
    assert code(body) == ("PARAM_ILLEGAL", "F")


def test_refund_amount_exceed_counts_succeeded_and_in_flight(tmp_path: Path) -> None:
    with running_simulator(tmp_path, refund_delay_s=3600) as sim:
        gw = Gateway(sim)
        p = sim.create_payment(method="GCASH", currency="PHP", amount_minor=10000)
        first = refund(gw, p, 7000)
        assert code(first) == ("REFUND_IN_PROCESS", "U")
        over = refund(gw, p, 3001)
        assert code(over) == ("REFUND_AMOUNT_EXCEED", "F")
        assert "not yet settled" in over["result"]["resultMessage"]
        # A failed refund gives its amount back; a succeeded one keeps it.
        sim.settle(first["refundId"], "FAIL")
        second = refund(gw, p, 9000)
        assert code(second) == ("REFUND_IN_PROCESS", "U")
        sim.settle(second["refundId"], "SUCCESS")
        assert code(refund(gw, p, 1001)) == ("REFUND_AMOUNT_EXCEED", "F")
        assert code(refund(gw, p, 1000)) == ("REFUND_IN_PROCESS", "U")
        assert sim.admin_get(f"payments/{p['paymentId']}")["refundableMinor"] == 0
        gw.close()


def test_async_failure_frees_the_amount_again(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    doomed = magic_amount(Fault.ASYNC_FAIL, "USD")
    p = shared_sim.create_payment(method="ALIPAY_CN", amount_minor=doomed)
    first = refund(shared_gw, p, doomed)
    assert code(first) == ("REFUND_IN_PROCESS", "U")
    shared_sim.wait_for(lambda: shared_sim.refund(first["refundId"])["status"] == "FAIL")
    assert code(refund(shared_gw, p, doomed)) == ("REFUND_IN_PROCESS", "U")


@pytest.mark.parametrize(
    ("method", "days_ok", "days_late"),
    [
        ("CARD", 364, 366),
        ("ALIPAY_CN", 364, 366),
        ("GCASH", 179, 181),
        ("DANA", 89, 91),
        ("TRUEMONEY", 89, 91),
    ],
)
def test_refund_window_per_method(
    shared_sim: SimHandle, shared_gw: Gateway, method: str, days_ok: int, days_late: int
) -> None:
    now = datetime.now(UTC)
    ok = shared_sim.create_payment(
        method=method, amount_minor=5000, paid_at=now - timedelta(days=days_ok)
    )
    late = shared_sim.create_payment(
        method=method, amount_minor=5000, paid_at=now - timedelta(days=days_late)
    )
    assert code(refund(shared_gw, ok, 5000))[1] in ("S", "U")
    assert code(refund(shared_gw, late, 5000)) == ("REFUND_WINDOW_EXCEED", "F")


def test_dana_refunds_only_the_full_amount(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p = shared_sim.create_payment(method="DANA", currency="IDR", amount_minor=1_000_000)
    assert code(refund(shared_gw, p, 500_000)) == ("PARTIAL_REFUND_NOT_SUPPORTED", "F")
    assert code(refund(shared_gw, p, 1_000_000)) == ("REFUND_IN_PROCESS", "U")


def test_kakaopay_allows_a_single_refund(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p = shared_sim.create_payment(method="KAKAOPAY", currency="KRW", amount_minor=50000)
    assert code(refund(shared_gw, p, 10000)) == ("SUCCESS", "S")
    assert code(refund(shared_gw, p, 10000)) == ("MULTIPLE_REFUNDS_NOT_SUPPORTED", "F")


def test_merchant_balance_not_enough(simulator: SimHandle, gw: Gateway) -> None:
    simulator.admin_post("balances", {"currency": "USD", "balanceMinor": 1500})
    p = simulator.create_payment(amount_minor=10000)
    assert code(refund(gw, p, 1000)) == ("SUCCESS", "S")
    assert simulator.admin_get("balances") == [
        {"currency": "USD", "balanceMinor": 500, "balance": "$5.00"}
    ]
    assert code(refund(gw, p, 501)) == ("MERCHANT_BALANCE_NOT_ENOUGH", "F")
    assert code(refund(gw, p, 500)) == ("SUCCESS", "S")
    # Removing the balance makes refunds unlimited again.
    simulator.admin_post("balances", {"currency": "USD", "balanceMinor": None})
    assert code(refund(gw, p, 5000)) == ("SUCCESS", "S")


def test_first_violation_in_documented_order_is_answered(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    """Open chargeback + wrong currency + late: ORDER_STATUS_INVALID comes first."""
    old = datetime.now(UTC) - timedelta(days=400)
    p = shared_sim.create_payment(method="DANA", currency="IDR", amount_minor=100_000, paid_at=old)
    shared_sim.admin_post(f"payments/{p['paymentId']}/chargeback")
    assert code(refund(shared_gw, p, 100, currency="USD")) == ("ORDER_STATUS_INVALID", "F")
    shared_sim.admin_post(f"payments/{p['paymentId']}/chargeback/close")
    assert code(refund(shared_gw, p, 100, currency="USD")) == ("CURRENCY_NOT_SUPPORT", "F")
    assert code(refund(shared_gw, p, 200_000)) == ("REFUND_AMOUNT_EXCEED", "F")
    # amount fine but late and partial: the window is checked before partial support
    assert code(refund(shared_gw, p, 50_000)) == ("REFUND_WINDOW_EXCEED", "F")


def test_refund_not_exist_for_unknown_or_rejected_refunds(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    assert code(shared_gw.call("inquiryRefund", {"refundId": "nope"})) == ("REFUND_NOT_EXIST", "F")
    p = shared_sim.create_payment(currency="USD", amount_minor=100)
    rejected = rid()
    assert code(refund(shared_gw, p, 999, request_id=rejected)) == ("REFUND_AMOUNT_EXCEED", "F")
    assert code(shared_gw.call("inquiryRefund", {"refundRequestId": rejected})) == (
        "REFUND_NOT_EXIST",
        "F",
    )
    assert code(shared_gw.call("inquiryRefund", {})) == ("PARAM_ILLEGAL", "F")


def test_inquiry_refund_by_either_id(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p = shared_sim.create_payment(amount_minor=1000)
    request_id = rid()
    made = refund(shared_gw, p, 300, request_id=request_id, metadata="m-1")
    by_id = shared_gw.call("inquiryRefund", {"refundId": made["refundId"]})
    by_request = shared_gw.call("inquiryRefund", {"refundRequestId": request_id})
    assert by_id == by_request
    assert by_id["refundRequestId"] == request_id and by_id["refundStatus"] == "SUCCESS"
    assert by_id["refundAmount"] == {"currency": "USD", "value": "300"}
    assert by_id["metadata"] == "m-1"


def test_inquiry_payment_lists_refunds_and_captures(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="CARD", amount_minor=9000, captured=False)
    cap = shared_gw.call(
        "capture",
        {
            "captureRequestId": rid(),
            "paymentId": p["paymentId"],
            "captureAmount": {"currency": "USD", "value": "9000"},
        },
    )
    assert code(cap) == ("SUCCESS", "S")
    r1 = refund(shared_gw, p, 1000)
    body = shared_gw.call("inquiryPayment", {"paymentRequestId": p["paymentRequestId"]})
    assert body["paymentStatus"] == "SUCCESS" and body["paymentMethodType"] == "CARD"
    kinds = [(t["transactionType"], t["transactionId"]) for t in body["transactions"]]
    assert kinds == [("CAPTURE", cap["captureId"]), ("REFUND", r1["refundId"])]
    refund_tx = body["transactions"][1]
    assert refund_tx["transactionRequestId"] == r1["refundRequestId"]
    assert refund_tx["transactionAmount"] == {"currency": "USD", "value": "1000"}
    assert refund_tx["transactionStatus"] in ("PROCESSING", "SUCCESS")


# Refunds stay PROCESSING (a minute) until the test settles them: at the default fast
# time scale one could settle before the balance "while processing" is read.
@pytest.mark.parametrize("simulator_config", [{"time_scale": 1.0}], ids=["settled_by_test"])
def test_balance_is_drawn_on_acceptance_and_returned_on_failure_or_reversal(
    simulator: SimHandle, gw: Gateway
) -> None:
    simulator.admin_post("balances", {"currency": "USD", "balanceMinor": 10_000_000})
    doomed = magic_amount(Fault.ASYNC_FAIL, "USD")
    p = simulator.create_payment(method="CARD", amount_minor=doomed + 5000)

    def balance() -> int:
        result: int = simulator.admin_get("balances")[0]["balanceMinor"]
        return result

    made = refund(gw, p, doomed)
    assert simulator.refund(made["refundId"])["status"] == "PROCESSING"
    assert balance() == 10_000_000 - doomed  # held while processing
    assert simulator.settle(made["refundId"], "FAIL")["status"] == "FAIL"
    assert balance() == 10_000_000
    ok = refund(gw, p, 5000)
    assert simulator.refund(ok["refundId"])["status"] == "PROCESSING"
    assert balance() == 10_000_000 - 5000
    assert simulator.settle(ok["refundId"], "SUCCESS")["status"] == "SUCCESS"
    assert balance() == 10_000_000 - 5000
    simulator.admin_post(f"refunds/{ok['refundId']}/reverse")
    assert balance() == 10_000_000
