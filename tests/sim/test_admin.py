"""The admin surface: JSON API errors, the HTML page, and what it must never show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.sim.helpers import Gateway
from tests.support import keys
from tests.support.simulator import SimHandle
from web.antom.keys import bare_base64


def test_page_lists_state_and_shows_no_key_material(simulator: SimHandle, gw: Gateway) -> None:
    simulator.admin_post("balances", {"currency": "KRW", "balanceMinor": 990000})
    p = simulator.create_payment(
        method="KAKAOPAY", currency="KRW", amount_minor=45000, buyer_name="Kim <b>Min</b>"
    )
    gw.refund(p["paymentId"], 1000, "page-r1", "KRW")
    response = simulator.http.get("/sim")
    assert response.status_code == 200
    html = response.text
    assert p["paymentId"] in html and "page-r1" in html and "₩45,000" in html
    assert "Kim &lt;b&gt;Min&lt;/b&gt;" in html  # autoescaped
    assert "₩989,000" in html  # 990000 - 1000 refunded
    for pem in (keys.ANTOM_PRIVATE_PEM, keys.MERCHANT_PUBLIC_PEM):
        body = bare_base64(pem)
        assert body[:40] not in html and "PRIVATE KEY" not in html
    config = simulator.admin_get("config")
    assert config["clientId"] == simulator.client_id
    assert not any("key" in k.lower() for k in config)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "payments/nope", None, 404),
        ("GET", "refunds/nope", None, 404),
        ("POST", "payments/nope/capture", {}, 404),
        ("POST", "refunds/nope/settle", {"outcome": "SUCCESS"}, 404),
        ("POST", "payments", {"amountMinor": 0}, 400),
        ("POST", "payments", {"amountMinor": 100, "currency": "dollars"}, 400),
        ("POST", "payments", {"amountMinor": 100, "unknownField": 1}, 400),
        ("POST", "balances", {"currency": "US", "balanceMinor": 1}, 400),
    ],
)
def test_admin_errors(
    shared_sim: SimHandle, method: str, path: str, body: object, status: int
) -> None:
    response = shared_sim.http.request(method, f"/sim/api/{path}", json=body)
    assert response.status_code == status, response.text


def test_admin_state_conflicts(simulator: SimHandle, gw: Gateway) -> None:
    p = simulator.create_payment(method="ALIPAY_CN", amount_minor=500, payment_request_id="dup")
    again = simulator.http.post(
        "/sim/api/payments", json={"amountMinor": 5, "paymentRequestId": "dup"}
    )
    assert again.status_code == 409
    made = gw.refund(p["paymentId"], 100, "done")
    settle = simulator.http.post(f"/sim/api/refunds/{made['refundId']}/settle", json={})
    assert settle.status_code == 409  # already SUCCESS
    bad = simulator.http.post(
        f"/sim/api/refunds/{made['refundId']}/settle", json={"outcome": "MAYBE"}
    )
    assert bad.status_code == 400
    close = simulator.http.post(f"/sim/api/payments/{p['paymentId']}/chargeback/close")
    assert close.status_code == 409
    simulator.admin_post(f"payments/{p['paymentId']}/chargeback")
    assert simulator.http.post(f"/sim/api/payments/{p['paymentId']}/chargeback").status_code == 409
    wrong = simulator.http.post(
        f"/sim/api/payments/{p['paymentId']}/chargeback/close", json={"result": "WHATEVER"}
    )
    assert wrong.status_code == 400
    capture = simulator.http.post(f"/sim/api/payments/{p['paymentId']}/capture", json={})
    assert capture.status_code == 400  # nothing left to capture


def test_created_payment_fields(shared_sim: SimHandle) -> None:
    paid_at = datetime.now(UTC) - timedelta(days=30, hours=2)
    p = shared_sim.create_payment(
        method="CARD",
        currency="JPY",
        amount_minor=123456,
        captured=False,
        paid_at=paid_at,
        payment_request_id="pr-fields",
    )
    assert p["paymentRequestId"] == "pr-fields"
    assert (p["capturedMinor"], p["refundableMinor"], p["status"]) == (0, 0, "SUCCESS")
    assert p["paymentAmount"] == {"currency": "JPY", "value": "123456"}
    assert datetime.fromisoformat(p["paidAt"]) == paid_at.replace(microsecond=0)
    naive = shared_sim.admin_post("payments", {"amountMinor": 1, "paidAt": "2026-01-02T03:04:05"})
    assert naive["paidAt"] == "2026-01-02T03:04:05+00:00"  # naive times are UTC
