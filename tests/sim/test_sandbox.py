"""Sandbox: Antom's sandbox does not re-send a notification whose acknowledgement is
missing or wrong (protocol notes §4.4 and §16), so the simulator makes one attempt only.

A notification is a sandbox one when the request that caused it came in on the
``/ams/sandbox/api/...`` path, or was made for a ``SANDBOX_`` client id, or concerns a
payment or refund that was made that way. Each test waits for a final notification status
(``gave_up`` and ``acknowledged`` schedule nothing more) and compares recorded attempts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.sim.helpers import Gateway, Sink, code, running_sink
from tests.support.simulator import SimHandle, running_simulator
from tests.support.waiting import wait_for

SANDBOX_CLIENT = "SANDBOX_5X00000000000000"
SANDBOX_PREFIX = "/ams/sandbox/api/v1/payments/"
FINAL = ("acknowledged", "gave_up")


def notes_of(sim: SimHandle, kind: str) -> list[dict[str, Any]]:
    return [n for n in sim.notifications() if n["notifyType"] == kind]


def final_note(sim: SimHandle, kind: str) -> dict[str, Any]:
    """The one ``kind`` notification, once it has reached a status with nothing scheduled."""

    def probe() -> dict[str, Any] | None:
        found = notes_of(sim, kind)
        return found[0] if len(found) == 1 and found[0]["status"] in FINAL else None

    return wait_for(probe, what=f"the {kind} notification to reach a final status")


def assert_one_attempt_given_up(note: dict[str, Any], sink: Sink) -> None:
    assert note["sandbox"] is True
    assert note["status"] == "gave_up"
    assert note["attempts"] == 1 and len(note["deliveries"]) == 1
    assert note["deliveries"][0]["acknowledged"] is False
    assert note["nextAttemptAt"] is None  # nothing left on the schedule
    assert len(sink) == 1


def test_sandbox_client_id_gets_one_attempt_per_notification(tmp_path: Path) -> None:
    """Payment (admin API), sync refund and an async refund settled later by the clock:
    every notification for a SANDBOX_ client is tried once and then given up."""
    with (
        running_sink("/pay", fail_first=100) as pay_sink,
        running_sink("/sync", fail_first=100) as sync_sink,
        running_sink("/async", fail_first=100) as async_sink,
        running_simulator(tmp_path, client_id=SANDBOX_CLIENT) as sim,
    ):
        wallet = sim.create_payment(method="ALIPAY_CN", amount_minor=5000, notify_url=pay_sink.url)
        assert wallet["sandbox"] is True
        assert_one_attempt_given_up(final_note(sim, "PAYMENT_RESULT"), pay_sink)

        gw = Gateway(sim, prefix=SANDBOX_PREFIX)
        made = gw.refund(wallet["paymentId"], 1000, "sb-sync", refundNotifyUrl=sync_sink.url)
        assert code(made) == ("SUCCESS", "S")
        assert_one_attempt_given_up(final_note(sim, "REFUND_RESULT"), sync_sink)

        card = sim.create_payment(method="CARD", amount_minor=5000)  # no notify URL
        pending = gw.refund(card["paymentId"], 5000, "sb-async", refundNotifyUrl=async_sink.url)
        gw.close()
        assert code(pending) == ("REFUND_IN_PROCESS", "U")
        # Settled by the worker, long after the request: the refund remembers the sandbox.
        settled = wait_for(
            lambda: [
                n
                for n in notes_of(sim, "REFUND_RESULT")
                if n["objectId"] == pending["refundId"] and n["status"] in FINAL
            ],
            what="the async REFUND_RESULT to reach a final status",
        )
        assert_one_attempt_given_up(settled[0], async_sink)
        assert sim.refund(pending["refundId"])["sandbox"] is True


def test_sandbox_path_is_sandbox_while_production_still_retries(tmp_path: Path) -> None:
    """One simulator, one ordinary client id: the payment made through the admin API
    (production) is re-sent until acknowledged; the refund asked for on the sandbox path
    is attempted once."""
    with (
        running_sink("/prod", fail_first=2) as prod_sink,
        running_sink("/sandbox", fail_first=100) as sandbox_sink,
        running_simulator(tmp_path) as sim,
    ):
        p = sim.create_payment(amount_minor=5000, notify_url=prod_sink.url)
        assert p["sandbox"] is False
        gw = Gateway(sim, prefix=SANDBOX_PREFIX)
        made = gw.refund(p["paymentId"], 1000, "via-sandbox", refundNotifyUrl=sandbox_sink.url)
        gw.close()
        assert code(made) == ("SUCCESS", "S")
        refund_note = final_note(sim, "REFUND_RESULT")
        payment_note = final_note(sim, "PAYMENT_RESULT")
    assert_one_attempt_given_up(refund_note, sandbox_sink)
    assert payment_note["sandbox"] is False
    assert payment_note["status"] == "acknowledged"
    assert [d["acknowledged"] for d in payment_note["deliveries"]] == [False, False, True]
    assert len(prod_sink) == 3


def test_production_path_and_client_retry_until_given_up(tmp_path: Path) -> None:
    """The same unacknowledged refund notification outside the sandbox: the whole schedule."""
    with (
        running_sink(fail_first=100) as sink,
        # The 24 h schedule in about 4 s.
        running_simulator(tmp_path, time_scale=0.00005) as sim,
    ):
        p = sim.create_payment(amount_minor=5000)
        gw = Gateway(sim)
        assert code(gw.refund(p["paymentId"], 1000, "prod", refundNotifyUrl=sink.url))[1] == "S"
        gw.close()
        note = final_note(sim, "REFUND_RESULT")
    assert note["sandbox"] is False
    assert note["status"] == "gave_up"
    assert note["attempts"] == 1 + len(sim.config.retry_schedule_s) == len(sink)


def test_admin_payment_for_an_extra_sandbox_client_id(tmp_path: Path) -> None:
    with (
        running_sink(fail_first=100) as sink,
        running_simulator(tmp_path, extra_client_ids=(SANDBOX_CLIENT,)) as sim,
    ):
        made = sim.create_payment(amount_minor=100, client_id=SANDBOX_CLIENT, notify_url=sink.url)
        assert made["clientId"] == SANDBOX_CLIENT and made["sandbox"] is True
        assert_one_attempt_given_up(final_note(sim, "PAYMENT_RESULT"), sink)
        # The payment belongs to that client: its own requests find it.
        gw = Gateway(sim, client_id=SANDBOX_CLIENT, prefix=SANDBOX_PREFIX)
        found = gw.call("inquiryPayment", {"paymentId": made["paymentId"]})
        gw.close()
        assert code(found) == ("SUCCESS", "S")
        unknown = sim.http.post("/sim/api/payments", json={"amountMinor": 1, "clientId": "NOPE"})
        assert unknown.status_code == 400 and "NOPE" in unknown.json()["error"]


def test_config_says_whether_the_main_client_is_a_sandbox_one(tmp_path: Path) -> None:
    with running_simulator(tmp_path / "a", client_id=SANDBOX_CLIENT) as sim:
        assert sim.admin_get("config")["sandbox"] is True
    with running_simulator(tmp_path / "b") as sim:
        assert sim.admin_get("config")["sandbox"] is False
        assert httpx.get(f"{sim.base_url}/sim").status_code == 200
