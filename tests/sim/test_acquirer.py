"""acquirerReferenceNo and acquirerInfo: in the refund response as in the seed guide's APO
sample, acquirerInfo in inquiryRefund too, and the reference in the settlement file."""

from __future__ import annotations

from tests.sim.helpers import Gateway, code
from tests.support.simulator import SimHandle

ACQUIRER_INFO_KEYS = {
    "acquirerMerchantId",
    "acquirerName",
    "acquirerTransactionId",
    "referenceRequestId",
}


def test_refund_response_carries_stable_acquirer_fields(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="ALIPAY_CN", amount_minor=5000)
    first = shared_gw.refund(p["paymentId"], 1000, "acq-1")
    second = shared_gw.refund(p["paymentId"], 1000, "acq-2")
    assert code(first) == code(second) == ("SUCCESS", "S")
    reference = first["acquirerReferenceNo"]
    assert isinstance(reference, str) and 0 < len(reference) <= 64
    assert set(first["acquirerInfo"]) == ACQUIRER_INFO_KEYS
    assert all(isinstance(v, str) and v for v in first["acquirerInfo"].values())
    # Per refund: another refund has its own reference and acquirer transaction.
    assert second["acquirerReferenceNo"] != reference
    assert (
        second["acquirerInfo"]["acquirerTransactionId"]
        != first["acquirerInfo"]["acquirerTransactionId"]
    )
    # Stable: a replay, the inquiry and the admin view all say the same.
    assert shared_gw.refund(p["paymentId"], 1000, "acq-1") == first
    inquiry = shared_gw.call("inquiryRefund", {"refundRequestId": "acq-1"})
    assert inquiry["acquirerInfo"] == first["acquirerInfo"]
    # The guide's inquiryRefund sample has acquirerInfo but no acquirerReferenceNo.
    assert "acquirerReferenceNo" not in inquiry
    kept = shared_sim.refund(first["refundId"])
    assert kept["acquirerReferenceNo"] == reference
    assert kept["acquirerInfo"] == first["acquirerInfo"]


def test_async_refund_keeps_its_acquirer_fields_when_final(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="CARD", amount_minor=5000)
    pending = shared_gw.refund(p["paymentId"], 5000, "acq-async")
    assert code(pending) == ("REFUND_IN_PROCESS", "U")
    assert pending["acquirerReferenceNo"] and set(pending["acquirerInfo"]) == ACQUIRER_INFO_KEYS
    shared_sim.wait_for(lambda: shared_sim.refund(pending["refundId"])["status"] == "SUCCESS")
    final = shared_gw.refund(p["paymentId"], 5000, "acq-async")
    assert code(final) == ("SUCCESS", "S")
    assert final["acquirerReferenceNo"] == pending["acquirerReferenceNo"]
    assert final["acquirerInfo"] == pending["acquirerInfo"]


def test_refusals_carry_no_acquirer_fields(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p = shared_sim.create_payment(amount_minor=100)
    refused = shared_gw.refund(p["paymentId"], 101, "acq-too-much")
    assert code(refused) == ("REFUND_AMOUNT_EXCEED", "F")
    assert "acquirerReferenceNo" not in refused and "acquirerInfo" not in refused


def test_settlement_rows_carry_the_acquirer_reference(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="ALIPAY_CN", amount_minor=5000)
    made = shared_gw.refund(p["paymentId"], 700, "acq-settled")
    shared_sim.admin_post(f"refunds/{made['refundId']}/reverse")
    rows = [
        r
        for r in shared_sim.settlement_rows()
        if p["paymentId"] in (r["transactionId"], r["originalTransactionId"])
    ]
    assert [(r["transactionType"], r["acquirerReferenceNo"]) for r in rows] == [
        ("PAYMENT", ""),
        ("REFUND", made["acquirerReferenceNo"]),
        # The bounce comes back through the same acquirer transaction.
        ("REFUND_REVERSAL", made["acquirerReferenceNo"]),
    ]
