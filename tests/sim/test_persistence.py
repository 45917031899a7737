"""The simulator's state lives in SQLite and survives a restart, pending work included."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.sim.helpers import Gateway, code, running_sink
from tests.support.simulator import running_simulator


def test_payments_refunds_idempotency_and_settings_survive_restart(tmp_path: Path) -> None:
    with running_simulator(tmp_path) as sim:
        gw = Gateway(sim)
        p = sim.create_payment(method="ALIPAY_CN", amount_minor=5000, buyer_email="x@y.z")
        first = gw.post("refund", _refund(p["paymentId"], 2000, "keep-me"))
        sim.set_faults(async_fail=0.25, rate_limit_per_s=100, rate_limit_burst=50)
        sim.admin_post("balances", {"currency": "USD", "balanceMinor": 777})
        gw.close()
    with running_simulator(tmp_path) as sim:
        gw = Gateway(sim)
        detail = sim.admin_get(f"payments/{p['paymentId']}")
        assert detail["buyerEmail"] == "x@y.z" and detail["refundedMinor"] == 2000
        # the idempotency record survived: identical bytes, no second refund
        assert gw.post("refund", _refund(p["paymentId"], 2000, "keep-me")).content == first.content
        assert len(detail["refunds"]) == 1
        assert code(gw.call("refund", _refund(p["paymentId"], 3001, "new"))) == (
            "REFUND_AMOUNT_EXCEED",
            "F",
        )
        faults = sim.admin_get("faults")
        assert faults["asyncFail"] == 0.25 and faults["rateLimitPerSecond"] == 100
        assert sim.admin_get("balances")[0]["balanceMinor"] == 777
        gw.close()


def test_processing_refund_and_pending_delivery_resume_after_restart(tmp_path: Path) -> None:
    with running_sink(fail_first=1) as sink:
        with running_simulator(
            tmp_path, notify_url=sink.url, refund_delay_s=600, time_scale=1.0
        ) as sim:
            gw = Gateway(sim)
            p = sim.create_payment(method="CARD", amount_minor=5000)
            made = gw.refund(p["paymentId"], 5000, "across-restart")
            assert code(made) == ("REFUND_IN_PROCESS", "U")
            # PAYMENT_RESULT's first attempt fails; the 0 s retry succeeds at once.
            sim.wait_for(lambda: len(sink) >= 2)
            gw.close()
        # While the simulator is down, a settlement falls due.
        with sqlite3.connect(tmp_path / "sim.sqlite3") as db:
            db.execute(
                "UPDATE sim_refunds SET settle_at = 0 WHERE refund_request_id = ?",
                ("across-restart",),
            )
        with running_simulator(tmp_path, notify_url=sink.url) as sim:
            refund = sim.wait_for(
                lambda: (r := sim.refund(made["refundId"]))["status"] != "PROCESSING" and r
            )
            assert refund["status"] == "SUCCESS"
            note = sim.wait_for(
                lambda: [n for n in sink.snapshot() if n.json.get("notifyType") == "REFUND_RESULT"]
            )
            assert note[0].json["refundId"] == made["refundId"]


def test_undelivered_notification_is_retried_after_restart(tmp_path: Path) -> None:
    with running_sink() as sink:
        with running_simulator(
            tmp_path, notify_url="http://127.0.0.1:9/down", time_scale=1.0
        ) as sim:
            sim.create_payment(amount_minor=100)
            sim.wait_for(lambda: [n for n in sim.notifications() if n["attempts"] >= 2])
        # While the simulator is down: the receiver comes back, the 2-minute retry falls due.
        with sqlite3.connect(tmp_path / "sim.sqlite3") as db:
            db.execute("UPDATE sim_notifications SET next_attempt_at = 0, url = ?", (sink.url,))
        with running_simulator(tmp_path) as sim:
            sim.wait_for(lambda: [n for n in sim.notifications() if n["status"] == "acknowledged"])
            (n,) = sim.notifications()
        assert n["attempts"] == 3 and len(sink) == 1
        assert [d["acknowledged"] for d in n["deliveries"]] == [False, False, True]


def test_a_database_from_an_older_simulator_gains_the_new_columns(tmp_path: Path) -> None:
    """State survives upgrades too: columns added since a file was made are added in place,
    and refunds stored without acquirer fields answer without them."""
    with running_simulator(tmp_path) as sim:
        gw = Gateway(sim)
        p = sim.create_payment(amount_minor=5000)
        old = gw.refund(p["paymentId"], 1000, "before-upgrade")
        gw.close()
    added_since = {
        "sim_payments": ["sandbox"],
        "sim_refunds": ["sandbox", "acquirer_reference_no", "acquirer_info"],
        "sim_notifications": ["sandbox"],
    }
    with sqlite3.connect(tmp_path / "sim.sqlite3") as db:
        for table, columns in added_since.items():
            for column in columns:
                db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    with running_simulator(tmp_path) as sim:
        gw = Gateway(sim)
        inquiry = gw.call("inquiryRefund", {"refundRequestId": "before-upgrade"})
        assert code(inquiry) == ("SUCCESS", "S") and inquiry["refundId"] == old["refundId"]
        assert "acquirerInfo" not in inquiry
        assert sim.refund(old["refundId"])["sandbox"] is False
        fresh = gw.refund(p["paymentId"], 1000, "after-upgrade")
        gw.close()
        assert fresh["acquirerReferenceNo"] and fresh["acquirerInfo"]


def test_simulator_tables_stay_out_of_the_app_metadata() -> None:
    from sqlmodel import SQLModel

    import web.models  # noqa: F401  (registers the app's tables)
    from web.sim import db

    assert not set(db.metadata.tables) & set(SQLModel.metadata.tables)
    assert all(name.startswith("sim_") for name in db.metadata.tables)


def _refund(payment_id: str, value: int, request_id: str) -> dict[str, object]:
    return {
        "refundRequestId": request_id,
        "paymentId": payment_id,
        "refundAmount": {"currency": "USD", "value": str(value)},
    }
