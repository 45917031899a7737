"""The settlement details report: payments, refunds and refund reversals, in minor units,
shaped like Antom's (a header line, the detail rows, ``<END>``; file named as Antom does)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.sim.helpers import Gateway, code
from tests.support.simulator import SimHandle
from web.sim.admin import SETTLEMENT_COLUMNS, SETTLEMENT_END


def test_an_empty_report_is_its_header_and_end(simulator: SimHandle) -> None:
    response = simulator.http.get("/sim/settlement.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == [",".join(SETTLEMENT_COLUMNS), SETTLEMENT_END]
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{simulator.client_id}_settle_{today}_ALL.csv"'
    )


def test_settlement_rows(simulator: SimHandle, gw: Gateway) -> None:
    p = simulator.create_payment(
        method="ALIPAY_CN", currency="JPY", amount_minor=12000, reference_order_id="ORD-1"
    )
    auth = simulator.create_payment(method="CARD", amount_minor=5000, captured=False)
    ok = gw.refund(p["paymentId"], 2000, "ok-1", "JPY")
    bounced = gw.refund(p["paymentId"], 3000, "bounce-1", "JPY")
    assert code(ok) == code(bounced) == ("SUCCESS", "S")
    simulator.admin_post(f"refunds/{bounced['refundId']}/reverse")
    failed = gw.refund(auth["paymentId"], 10, "nothing-captured")
    assert code(failed) == ("ORDER_STATUS_INVALID", "F")

    found = simulator.settlement_rows()
    assert [
        (r["transactionType"], r["transactionId"], r["transactionAmountValue"]) for r in found
    ] == [
        ("PAYMENT", p["paymentId"], "12000"),
        ("REFUND", ok["refundId"], "-2000"),
        ("REFUND", bounced["refundId"], "-3000"),
        ("REFUND_REVERSAL", f"{bounced['refundId']}R", "3000"),
    ]
    payment, refund, _, reversal = found
    assert payment["originalTransactionId"] == ""
    assert payment["transactionRequestId"] == p["paymentRequestId"]
    # 3 % on payments, taken off the settled amount; nothing on refunds and reversals
    assert (payment["feeAmountValue"], payment["settlementAmountValue"]) == ("-360", "11640")
    assert (refund["feeAmountValue"], refund["settlementAmountValue"]) == ("0", "-2000")
    # REFUND and REFUND_REVERSAL rows name the original payment
    assert refund["originalTransactionId"] == reversal["originalTransactionId"] == p["paymentId"]
    assert refund["transactionRequestId"] == "ok-1"
    assert reversal["transactionRequestId"] == "bounce-1"
    assert {r["transactionCurrency"] for r in found} == {"JPY"}
    assert {r["settlementCurrency"] for r in found} == {"JPY"}
    assert {r["customerId"] for r in found} == {simulator.client_id}
    assert {r["paymentMethodType"] for r in found} == {"ALIPAY_CN"}
    day = datetime.now(UTC).strftime("%Y%m%d")
    assert {r["settlementBatchId"] for r in found} == {f"SIM{day}0001"}
    # the uncaptured authorisation appears once it is captured
    simulator.admin_post(f"payments/{auth['paymentId']}/capture")
    assert ("PAYMENT", "5000") in [
        (r["transactionType"], r["transactionAmountValue"]) for r in simulator.settlement_rows()
    ]


def test_one_day_is_one_batch_named_as_antom_does(simulator: SimHandle, gw: Gateway) -> None:
    p = simulator.create_payment(method="ALIPAY_CN", amount_minor=700)
    day = datetime.now(UTC).strftime("%Y%m%d")
    response = simulator.http.get("/sim/settlement.csv", params={"day": day})
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{simulator.client_id}_settle_{day}_SIM{day}0001.csv"'
    )
    lines = response.text.splitlines()
    assert lines[0] == ",".join(SETTLEMENT_COLUMNS) and lines[-1] == SETTLEMENT_END
    assert p["paymentId"] in lines[1]
    other = simulator.http.get("/sim/settlement.csv", params={"day": "20000101"})
    assert other.text.splitlines() == [",".join(SETTLEMENT_COLUMNS), SETTLEMENT_END]
    assert simulator.http.get("/sim/settlement.csv", params={"day": "2000-01"}).status_code == 400


def test_processing_and_failed_refunds_are_not_settled(simulator: SimHandle, gw: Gateway) -> None:
    from web.sim.faults import Fault, magic_amount

    minor = magic_amount(Fault.ASYNC_FAIL, "USD")
    p = simulator.create_payment(method="CARD", amount_minor=minor)
    made = gw.refund(p["paymentId"], minor, "will-fail")
    simulator.wait_for(lambda: simulator.refund(made["refundId"])["status"] == "FAIL")
    assert [r["transactionType"] for r in simulator.settlement_rows()] == ["PAYMENT"]


def test_reversal_only_for_succeeded_refunds(simulator: SimHandle) -> None:
    response = simulator.http.post("/sim/api/refunds/nope/reverse")
    assert response.status_code == 404
