"""Property: whatever sequence of refunds, retries and settlements, refunded never
exceeds captured, and the settlement file agrees with the simulator's books."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sim.helpers import Gateway
from tests.support.simulator import SimHandle, running_simulator

METHODS = ["ALIPAY_CN", "CARD", "GCASH", "DANA", "KAKAOPAY", "TRUEMONEY"]

step = st.one_of(
    st.tuples(st.just("refund"), st.integers(1, 6000), st.integers(0, 4)),  # amount, id slot
    st.tuples(st.just("settle"), st.sampled_from(["SUCCESS", "FAIL"]), st.integers(0, 4)),
    st.tuples(st.just("reverse"), st.just(""), st.integers(0, 4)),
)


@pytest.fixture(scope="module")
def slow_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHandle]:
    # Async refunds stay PROCESSING until the test settles them.
    with running_simulator(
        tmp_path_factory.mktemp("prop"), refund_delay_s=3600, magic_amounts=False
    ) as sim:
        yield sim


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(METHODS),
    captured=st.integers(1, 10000),
    steps=st.lists(step, min_size=1, max_size=12),
)
def test_refunded_never_exceeds_captured(
    slow_sim: SimHandle, method: str, captured: int, steps: list[tuple[str, Any, int]]
) -> None:
    gw = Gateway(slow_sim)
    p = slow_sim.create_payment(method=method, currency="USD", amount_minor=captured)
    pid = p["paymentId"]
    made: dict[int, str] = {}
    for kind, arg, slot in steps:
        if kind == "refund":
            # Reusing a slot replays that request id (with maybe another amount).
            answer = gw.refund(pid, arg, f"{pid}-{slot}")
            if answer["result"]["resultStatus"] in ("S", "U") and "refundId" in answer:
                made[slot] = answer["refundId"]
        elif slot in made:
            refund = slow_sim.refund(made[slot])
            if kind == "settle" and refund["status"] == "PROCESSING":
                slow_sim.settle(made[slot], arg)
            elif kind == "reverse" and refund["status"] == "SUCCESS" and not refund["reversedAt"]:
                slow_sim.admin_post(f"refunds/{made[slot]}/reverse")
        detail = slow_sim.admin_get(f"payments/{pid}")
        assert 0 <= detail["refundedMinor"] + detail["inFlightMinor"] <= detail["capturedMinor"]
        assert detail["refundableMinor"] == (
            detail["capturedMinor"] - detail["refundedMinor"] - detail["inFlightMinor"]
        )
    gw.close()
    refunds = slow_sim.admin_get(f"payments/{pid}")["refunds"]
    # at most one refund per request id, whatever was replayed
    assert len({r["refundRequestId"] for r in refunds}) == len(refunds)
    succeeded = sum(r["amountMinor"] for r in refunds if r["status"] == "SUCCESS")
    assert succeeded <= captured
    settled = [
        r
        for r in slow_sim.settlement_rows()
        if r["originalTransactionId"] == pid and r["transactionType"] == "REFUND"
    ]
    assert -sum(int(r["transactionAmountValue"]) for r in settled) == succeeded
