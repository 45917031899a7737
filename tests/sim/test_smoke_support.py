"""The shared test-support interface other areas build on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.sim.helpers import Gateway, code
from tests.support.simulator import SimHandle


def test_fixture_serves_a_signed_gateway_and_admin_api(simulator: SimHandle) -> None:
    paid_at = datetime.now(UTC) - timedelta(days=3)
    payment = simulator.create_payment(
        method="GCASH",
        currency="PHP",
        amount_minor=250000,
        paid_at=paid_at,
        buyer_email="ana@example.com",
        buyer_name="Ana Cruz",
        reference_order_id="ORD-77",
    )
    assert payment["paymentId"] and payment["paymentRequestId"]
    assert payment["method"] == "GCASH" and payment["currency"] == "PHP"
    assert payment["buyerEmail"] == "ana@example.com"
    assert payment["referenceOrderId"] == "ORD-77"
    assert payment["paidAt"] == paid_at.replace(microsecond=0).isoformat()
    listed = simulator.admin_get("payments")
    assert [p["paymentId"] for p in listed] == [payment["paymentId"]]

    gw = Gateway(simulator)
    body = gw.call("inquiryPayment", {"paymentId": payment["paymentId"]})
    assert code(body) == ("SUCCESS", "S")
    assert body["paymentAmount"] == {"currency": "PHP", "value": "250000"}
    gw.close()
