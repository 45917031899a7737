"""The settlement file: payments, refunds and refund reversals, in minor units."""

from __future__ import annotations

import csv
import io

from tests.sim.helpers import Gateway, code
from tests.support.simulator import SimHandle
from web.sim.admin import SETTLEMENT_COLUMNS


def rows(sim: SimHandle) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(sim.settlement_csv())))


def test_settlement_rows(simulator: SimHandle, gw: Gateway) -> None:
    response = simulator.http.get("/sim/settlement.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == [",".join(SETTLEMENT_COLUMNS)]

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

    found = rows(simulator)
    assert [(r["transactionType"], r["transactionId"], r["amountValue"]) for r in found] == [
        ("PAYMENT", p["paymentId"], "12000"),
        ("REFUND", ok["refundId"], "-2000"),
        ("REFUND", bounced["refundId"], "-3000"),
        ("REFUND_REVERSAL", f"{bounced['refundId']}R", "3000"),
    ]
    reversal = found[-1]
    assert reversal["originalTransactionId"] == bounced["refundId"]
    assert reversal["transactionRequestId"] == "bounce-1"
    assert {r["currency"] for r in found} == {"JPY"}
    assert {r["referenceOrderId"] for r in found} == {"ORD-1"}
    assert all(r["paymentId"] == p["paymentId"] for r in found)
    # the uncaptured authorisation appears once it is captured
    simulator.admin_post(f"payments/{auth['paymentId']}/capture")
    assert ("PAYMENT", "5000") in [
        (r["transactionType"], r["amountValue"]) for r in rows(simulator)
    ]


def test_processing_and_failed_refunds_are_not_settled(simulator: SimHandle, gw: Gateway) -> None:
    from web.sim.faults import Fault, magic_amount

    minor = magic_amount(Fault.ASYNC_FAIL, "USD")
    p = simulator.create_payment(method="CARD", amount_minor=minor)
    made = gw.refund(p["paymentId"], minor, "will-fail")
    simulator.wait_for(lambda: simulator.refund(made["refundId"])["status"] == "FAIL")
    assert [r["transactionType"] for r in rows(simulator)] == ["PAYMENT"]


def test_reversal_only_for_succeeded_refunds(simulator: SimHandle) -> None:
    response = simulator.http.post("/sim/api/refunds/nope/reverse")
    assert response.status_code == 404
