"""Fault injection: the magic-amount table, global fault rates and the rate limiter."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.sim.helpers import Gateway, code
from tests.support.simulator import SimHandle, running_simulator
from web.sim import faults
from web.sim.faults import MAGIC_TABLE, Fault, TokenBucket, magic_amount, magic_fault


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [
        (66605, "USD", Fault.HANG_AFTER_COMMIT),  # USD 666.05
        (166605, "USD", Fault.HANG_AFTER_COMMIT),  # USD 1,666.05
        (66605, "JPY", Fault.HANG_AFTER_COMMIT),  # JPY 66,605
        (6660500, "IDR", Fault.HANG_AFTER_COMMIT),  # IDR 66,605.00 (steps of 100)
        (66601, "USD", Fault.UNKNOWN_EXCEPTION),
        (66610, "USD", Fault.ASYNC_SUCCESS),
        (66611, "USD", None),
        (66600, "USD", None),
        (66505, "USD", None),
        (66605, "IDR", None),  # not a whole IDR step: no magic
        (6605, "USD", None),
        (0, "USD", None),
    ],
)
def test_magic_table(minor: int, currency: str, expected: Fault | None) -> None:
    assert magic_fault(minor, currency) is expected


def test_magic_amount_helper_round_trips() -> None:
    for fault in MAGIC_TABLE.values():
        for currency in ("USD", "JPY", "IDR"):
            for base in (0, 10_000_000):
                minor = magic_amount(fault, currency, base)
                assert minor >= base and magic_fault(minor, currency) is fault


def rid() -> str:
    return uuid.uuid4().hex


def admin_refunds(sim: SimHandle, payment_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sim.admin_get(f"refunds?paymentId={payment_id}")
    return result


def magic_payment(
    sim: SimHandle, fault: Fault, method: str = "ALIPAY_CN"
) -> tuple[dict[str, Any], int]:
    minor = magic_amount(fault, "USD")
    return sim.create_payment(method=method, amount_minor=minor), minor


@pytest.mark.parametrize(
    ("fault", "answer"),
    [
        (Fault.UNKNOWN_EXCEPTION, ("UNKNOWN_EXCEPTION", "U")),
        (Fault.RATE_LIMITED, ("REQUEST_TRAFFIC_EXCEED_LIMIT", "U")),
    ],
)
def test_transient_fault_before_commit_then_retry_succeeds(
    shared_sim: SimHandle, shared_gw: Gateway, fault: Fault, answer: tuple[str, str]
) -> None:
    p, minor = magic_payment(shared_sim, fault)
    request_id = rid()
    assert code(shared_gw.refund(p["paymentId"], minor, request_id)) == answer
    assert admin_refunds(shared_sim, p["paymentId"]) == []  # nothing executed
    assert code(shared_gw.refund(p["paymentId"], minor, request_id)) == ("SUCCESS", "S")
    assert len(admin_refunds(shared_sim, p["paymentId"])) == 1


def test_http_500_before_commit(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p, minor = magic_payment(shared_sim, Fault.HTTP_500)
    body = {
        "refundRequestId": rid(),
        "paymentId": p["paymentId"],
        "refundAmount": {"currency": "USD", "value": str(minor)},
    }
    response = shared_gw.post("refund", body)
    assert response.status_code == 500
    assert "signature" not in response.headers
    assert admin_refunds(shared_sim, p["paymentId"]) == []
    assert code(shared_gw.call("refund", body)) == ("SUCCESS", "S")


@pytest.mark.parametrize("fault", [Fault.HTTP_500_AFTER_COMMIT, Fault.UNKNOWN_AFTER_COMMIT])
def test_fault_after_commit_then_retry_returns_the_committed_refund(
    shared_sim: SimHandle, shared_gw: Gateway, fault: Fault
) -> None:
    p, minor = magic_payment(shared_sim, fault)
    body = {
        "refundRequestId": rid(),
        "paymentId": p["paymentId"],
        "refundAmount": {"currency": "USD", "value": str(minor)},
    }
    first = shared_gw.post("refund", body)
    if fault is Fault.HTTP_500_AFTER_COMMIT:
        assert first.status_code == 500
    else:
        assert code(first.json()) == ("UNKNOWN_EXCEPTION", "U")
    (committed,) = admin_refunds(shared_sim, p["paymentId"])
    assert committed["status"] == "SUCCESS"
    retry = shared_gw.call("refund", body)
    assert code(retry) == ("SUCCESS", "S")
    assert retry["refundId"] == committed["refundId"]
    assert len(admin_refunds(shared_sim, p["paymentId"])) == 1


def test_response_never_arrives_but_refund_is_committed(shared_sim: SimHandle) -> None:
    gw = Gateway(shared_sim, timeout=0.5)
    p, minor = magic_payment(shared_sim, Fault.HANG_AFTER_COMMIT)
    body = {
        "refundRequestId": rid(),
        "paymentId": p["paymentId"],
        "refundAmount": {"currency": "USD", "value": str(minor)},
    }
    # A read timeout, not a dropped connection (RemoteProtocolError): the simulator was
    # still holding the connection when the client gave up.
    with pytest.raises(httpx.ReadTimeout):
        gw.post("refund", body)
    (committed,) = admin_refunds(shared_sim, p["paymentId"])
    gw.timeout = 10
    retry = gw.call("refund", body, timeout=10)
    assert code(retry) == ("SUCCESS", "S") and retry["refundId"] == committed["refundId"]
    gw.close()


def test_connection_is_dropped_when_the_client_outwaits_the_hang(tmp_path: Path) -> None:
    with running_simulator(tmp_path, hang_s=0.3) as sim:
        gw = Gateway(sim, timeout=10)
        p, minor = magic_payment(sim, Fault.HANG_AFTER_COMMIT)
        with pytest.raises(httpx.RemoteProtocolError):
            gw.refund(p["paymentId"], minor, "dropped")
        assert code(gw.refund(p["paymentId"], minor, "dropped")) == ("SUCCESS", "S")
        gw.close()


@pytest.mark.parametrize(
    ("fault", "method", "final"),
    [
        (Fault.ASYNC_FAIL, "ALIPAY_CN", "FAIL"),
        (Fault.ASYNC_FAIL, "CARD", "FAIL"),
        (Fault.ASYNC_SUCCESS, "ALIPAY_CN", "SUCCESS"),
    ],
)
def test_async_outcomes(
    shared_sim: SimHandle, shared_gw: Gateway, fault: Fault, method: str, final: str
) -> None:
    p, minor = magic_payment(shared_sim, fault, method)
    made = shared_gw.refund(p["paymentId"], minor, rid())
    assert code(made) == ("REFUND_IN_PROCESS", "U")
    inquiry = shared_sim.wait_for(
        lambda: (
            r
            if (r := shared_gw.call("inquiryRefund", {"refundId": made["refundId"]}))[
                "refundStatus"
            ]
            != "PROCESSING"
            else None
        )
    )
    assert inquiry["refundStatus"] == final


def test_balance_fault(shared_sim: SimHandle, shared_gw: Gateway) -> None:
    p, minor = magic_payment(shared_sim, Fault.BALANCE_NOT_ENOUGH)
    request_id = rid()
    assert code(shared_gw.refund(p["paymentId"], minor, request_id)) == (
        "MERCHANT_BALANCE_NOT_ENOUGH",
        "F",
    )
    # F is final for this id.
    assert code(shared_gw.refund(p["paymentId"], minor, request_id))[0] == (
        "MERCHANT_BALANCE_NOT_ENOUGH"
    )


def test_reversal_fault_shows_in_settlement(simulator: SimHandle, gw: Gateway) -> None:
    p, minor = magic_payment(simulator, Fault.REVERSAL)
    made = gw.refund(p["paymentId"], minor, "to-reverse")
    assert code(made) == ("SUCCESS", "S")
    reversed_refund = simulator.wait_for(
        lambda: (r := simulator.refund(made["refundId"]))["reversedAt"] and r
    )
    assert reversed_refund["status"] == "SUCCESS"  # Antom still reports it as succeeded
    kinds = [
        (r["transactionType"], r["transactionAmountValue"]) for r in simulator.settlement_rows()
    ]
    assert kinds == [
        ("PAYMENT", str(minor)),
        ("REFUND", f"-{minor}"),
        ("REFUND_REVERSAL", str(minor)),
    ]


def test_magic_amounts_can_be_switched_off(tmp_path: Path) -> None:
    with running_simulator(tmp_path, magic_amounts=False) as sim:
        gw = Gateway(sim)
        p, minor = magic_payment(sim, Fault.UNKNOWN_EXCEPTION)
        assert code(gw.refund(p["paymentId"], minor, "plain")) == ("SUCCESS", "S")
        gw.close()


def test_global_rates(simulator: SimHandle, gw: Gateway) -> None:
    p = simulator.create_payment(method="ALIPAY_CN", amount_minor=100_000)
    simulator.set_faults(unknown_exception=1.0)
    # applies to every endpoint, and nothing executes
    assert code(gw.call("inquiryPayment", {"paymentId": p["paymentId"]})) == (
        "UNKNOWN_EXCEPTION",
        "U",
    )
    assert code(gw.refund(p["paymentId"], 100, "g1")) == ("UNKNOWN_EXCEPTION", "U")
    simulator.set_faults(unknown_exception=0.0, http_5xx=1.0)
    assert gw.post("inquiryRefund", {"refundId": "x"}).status_code == 500
    simulator.set_faults(http_5xx=0.0, async_fail=1.0)
    made = gw.refund(p["paymentId"], 100, "g2")
    assert code(made) == ("REFUND_IN_PROCESS", "U")
    simulator.wait_for(lambda: simulator.refund(made["refundId"])["status"] == "FAIL")
    simulator.set_faults(async_fail=0.0, reversal=1.0)
    rev = gw.refund(p["paymentId"], 200, "g3")
    simulator.wait_for(lambda: simulator.refund(rev["refundId"])["reversedAt"])
    simulator.set_faults(reversal=0.0, hang_after_commit=1.0)
    short = Gateway(simulator, timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        short.refund(p["paymentId"], 300, "g4")
    short.close()
    simulator.set_faults(hang_after_commit=0.0)
    assert code(gw.refund(p["paymentId"], 300, "g4")) == ("SUCCESS", "S")
    assert simulator.admin_get("faults") == {
        "unknownException": 0.0,
        "http5xx": 0.0,
        "hangAfterCommit": 0.0,
        "asyncFail": 0.0,
        "reversal": 0.0,
        "rateLimitPerSecond": None,
        "rateLimitBurst": 20,
    }


@pytest.mark.parametrize(
    "bad", [{"asyncFail": 1.5}, {"http5xx": -0.1}, {"rateLimitPerSecond": 0}, {"rateLimitBurst": 0}]
)
def test_fault_rates_are_validated(shared_sim: SimHandle, bad: dict[str, float]) -> None:
    response = shared_sim.http.post("/sim/api/faults", json=bad)
    assert response.status_code == 400


def test_rate_limit_is_a_token_bucket_over_all_endpoints(simulator: SimHandle, gw: Gateway) -> None:
    # 2 tokens a second, burst 3: six calls in a row outrun the refill unless the machine
    # stalls for half a second and more between them.
    simulator.set_faults(rate_limit_per_s=2, rate_limit_burst=3)
    answers = [
        code(
            gw.call(
                "inquiryRefund" if i % 2 else "inquiryPayment", {"refundId": "x", "paymentId": "y"}
            )
        )
        for i in range(6)
    ]
    limited = ("REQUEST_TRAFFIC_EXCEED_LIMIT", "U")
    assert answers[:3] == [
        ("ORDER_NOT_EXIST", "F"),
        ("REFUND_NOT_EXIST", "F"),
        ("ORDER_NOT_EXIST", "F"),
    ]
    assert limited in answers[3:]
    # The refill is what is tested here: half a second gives a token back at 2/s, and a
    # busy machine only makes the pause longer (more tokens, never fewer).
    time.sleep(0.5)
    assert code(gw.call("inquiryPayment", {"paymentId": "y"})) == ("ORDER_NOT_EXIST", "F")
    simulator.admin_post("faults", {"rateLimitOff": True})
    assert all(
        code(gw.call("inquiryPayment", {"paymentId": "y"}))[0] == "ORDER_NOT_EXIST"
        for _ in range(10)
    )


def test_token_bucket_refills_at_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]  # the bucket's clock, moved by hand: exact, whatever the machine's load
    monkeypatch.setattr(faults, "time", SimpleNamespace(monotonic=lambda: now[0]))
    bucket = TokenBucket(rate=4, burst=2)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.125  # half a token at 4/s
    assert not bucket.take()
    now[0] += 0.125  # the other half
    assert [bucket.take(), bucket.take()] == [True, False]
    bucket.configure(4, 1)
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 1.0  # four tokens' worth: refills to the burst of 1, never beyond
    assert [bucket.take(), bucket.take()] == [True, False]
    bucket.configure(None, 1)
    assert all(bucket.take() for _ in range(100))
