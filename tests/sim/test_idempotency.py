"""Idempotency per (client-id, refundRequestId): replays, conflicts, and never twice."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from tests.sim.helpers import Gateway, code
from tests.support.simulator import SimHandle, running_simulator


def body(payment_id: str, value: int, request_id: str, currency: str = "USD") -> dict[str, Any]:
    return {
        "refundRequestId": request_id,
        "paymentId": payment_id,
        "refundAmount": {"currency": currency, "value": str(value)},
    }


def refunds_of(sim: SimHandle, payment_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sim.admin_get(f"refunds?paymentId={payment_id}")
    return result


def test_replay_of_success_returns_identical_bytes(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(amount_minor=1000)
    request = body(p["paymentId"], 400, uuid.uuid4().hex)
    first = shared_gw.post("refund", request)
    second = shared_gw.post("refund", request)
    assert first.json()["result"]["resultCode"] == "SUCCESS"
    assert first.content == second.content
    assert shared_gw.verified(second, "refund")
    assert len(refunds_of(shared_sim, p["paymentId"])) == 1


def test_replay_of_failure_returns_the_same_failure_even_if_now_allowed(
    simulator: SimHandle, gw: Gateway
) -> None:
    simulator.admin_post("balances", {"currency": "USD", "balanceMinor": 100})
    p = simulator.create_payment(amount_minor=1000)
    request = body(p["paymentId"], 500, "fail-then-fund")
    first = gw.post("refund", request)
    assert code(first.json()) == ("MERCHANT_BALANCE_NOT_ENOUGH", "F")
    simulator.admin_post("balances", {"currency": "USD", "balanceMinor": None})
    # F is final: the same id replays F; a new id is needed for a new attempt.
    assert gw.post("refund", request).content == first.content
    assert code(gw.call("refund", body(p["paymentId"], 500, "fresh-id"))) == ("SUCCESS", "S")


def test_replay_while_processing_is_refund_in_process_then_final_body(tmp_path: Path) -> None:
    with running_simulator(tmp_path, refund_delay_s=3600) as sim:
        gw = Gateway(sim)
        p = sim.create_payment(method="CARD", amount_minor=1000)
        request = body(p["paymentId"], 1000, "slow-1")
        first = gw.call("refund", request)
        again = gw.call("refund", request)
        assert code(first) == code(again) == ("REFUND_IN_PROCESS", "U")
        assert again["refundId"] == first["refundId"]
        sim.settle(first["refundId"], "SUCCESS")
        final = gw.post("refund", request)
        assert code(final.json()) == ("SUCCESS", "S")
        assert final.json()["refundId"] == first["refundId"]
        assert gw.post("refund", request).content == final.content
        assert len(refunds_of(sim, p["paymentId"])) == 1
        gw.close()


def test_replay_after_async_failure_returns_the_failure(tmp_path: Path) -> None:
    with running_simulator(tmp_path, refund_delay_s=3600) as sim:
        gw = Gateway(sim)
        p = sim.create_payment(method="GCASH", currency="PHP", amount_minor=1000)
        request = body(p["paymentId"], 1000, "doomed", "PHP")
        first = gw.call("refund", request)
        sim.settle(first["refundId"], "FAIL")
        replay = gw.call("refund", request)
        assert code(replay) == ("PROCESS_FAIL", "F")
        assert replay["refundId"] == first["refundId"]
        gw.close()


def test_same_id_different_content_is_repeat_req_inconsistent(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(amount_minor=5000)
    other = shared_sim.create_payment(amount_minor=5000)
    request_id = uuid.uuid4().hex
    assert code(shared_gw.call("refund", body(p["paymentId"], 100, request_id))) == ("SUCCESS", "S")
    for changed in (
        body(p["paymentId"], 101, request_id),  # amount
        body(p["paymentId"], 100, request_id, "EUR"),  # currency
        body(other["paymentId"], 100, request_id),  # payment
    ):
        assert code(shared_gw.call("refund", changed)) == ("REPEAT_REQ_INCONSISTENT", "F")
    assert len(refunds_of(shared_sim, p["paymentId"])) == 1
    assert refunds_of(shared_sim, other["paymentId"]) == []


def test_reason_and_notify_url_are_not_part_of_the_identity(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(amount_minor=5000)
    request_id = uuid.uuid4().hex
    first = shared_gw.post("refund", {**body(p["paymentId"], 100, request_id), "refundReason": "a"})
    second = shared_gw.post(
        "refund", {**body(p["paymentId"], 100, request_id), "refundReason": "b"}
    )
    assert first.content == second.content


def test_idempotency_is_per_client_id(tmp_path: Path) -> None:
    with running_simulator(tmp_path, extra_client_ids=("SECOND_CLIENT",)) as sim:
        one, two = Gateway(sim), Gateway(sim, client_id="SECOND_CLIENT")
        p = sim.create_payment(amount_minor=5000)
        # The payment belongs to the first client; the second cannot see it.
        assert code(one.call("refund", body(p["paymentId"], 100, "shared"))) == ("SUCCESS", "S")
        assert code(two.call("refund", body(p["paymentId"], 100, "shared"))) == (
            "ORDER_NOT_EXIST",
            "F",
        )
        one.close()
        two.close()


def test_concurrent_identical_requests_execute_once(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(amount_minor=5000)
    request = body(p["paymentId"], 2500, uuid.uuid4().hex)
    results: list[bytes] = []
    lock = threading.Lock()

    def send() -> None:
        gw = Gateway(shared_sim)
        response = gw.post("refund", request)
        gw.close()
        with lock:
            results.append(response.content)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    made = refunds_of(shared_sim, p["paymentId"])
    assert len(made) == 1 and made[0]["amountMinor"] == 2500


def test_concurrent_different_refunds_never_exceed_captured(
    shared_sim: SimHandle, shared_gw: Gateway
) -> None:
    p = shared_sim.create_payment(method="CARD", amount_minor=10000)
    codes: list[str] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        gw = Gateway(shared_sim)
        answer = gw.call("refund", body(p["paymentId"], 3000, f"{p['paymentId']}-{i}"))
        gw.close()
        with lock:
            codes.append(answer["result"]["resultCode"])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes).count("REFUND_IN_PROCESS") == 3
    assert codes.count("REFUND_AMOUNT_EXCEED") == 7
    total = sum(r["amountMinor"] for r in refunds_of(shared_sim, p["paymentId"]))
    assert total == 9000


def test_capture_and_pay_are_idempotent_too(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    pay = {
        "paymentRequestId": uuid.uuid4().hex,
        "paymentAmount": {"currency": "USD", "value": "7000"},
        "paymentMethod": {"paymentMethodType": "CARD"},
        "paymentFactor": {"isAuthorization": "true"},
        "order": {"referenceOrderId": "o-1", "buyer": {"buyerEmail": "b@example.com"}},
    }
    made = shared_gw.post("pay", pay)
    assert made.content == shared_gw.post("pay", pay).content
    payment_id = made.json()["paymentId"]
    assert shared_sim.admin_get(f"payments/{payment_id}")["capturedMinor"] == 0
    changed = {**pay, "paymentAmount": {"currency": "USD", "value": "7001"}}
    assert code(shared_gw.call("pay", changed)) == ("REPEAT_REQ_INCONSISTENT", "F")

    capture = {
        "captureRequestId": uuid.uuid4().hex,
        "paymentId": payment_id,
        "captureAmount": {"currency": "USD", "value": "7000"},
    }
    first = shared_gw.post("capture", capture)
    assert code(first.json()) == ("SUCCESS", "S")
    assert shared_gw.post("capture", capture).content == first.content
    detail = shared_sim.admin_get(f"payments/{payment_id}")
    assert detail["capturedMinor"] == 7000 and len(detail["captures"]) == 1
    assert detail["buyerEmail"] == "b@example.com" and detail["referenceOrderId"] == "o-1"
    over = {**capture, "captureRequestId": uuid.uuid4().hex}
    assert code(shared_gw.call("capture", over)) == ("CAPTURE_AMOUNT_EXCEED_AUTH_LIMIT", "F")
