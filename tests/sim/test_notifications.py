"""Notifications: bodies, signatures over the receiver's path, acknowledgement, retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tests.sim.helpers import Gateway, Received, Sink, code, running_sink
from tests.support.simulator import SimHandle, make_config, running_simulator
from web.antom import signing
from web.antom.keys import load_public_key
from web.sim import db as sim_db
from web.sim.config import RETRY_SCHEDULE_S
from web.sim.db import SimDB
from web.sim.worker import record_attempt


def verify_notification(sim: SimHandle, n: Received) -> bool:
    return signing.verify(
        load_public_key(sim.antom_public_key_pem),
        uri=n.uri,
        client_id=n.headers["client-id"],
        time=n.headers["request-time"],
        body=n.body,
        header=n.headers["signature"],
    )


def of_type(sink: Sink, kind: str) -> list[Received]:
    return [n for n in sink.snapshot() if n.json.get("notifyType") == kind]


def test_refund_result_for_sync_refund_is_signed_over_path_and_query(tmp_path: Path) -> None:
    with (
        running_sink("/webhooks/antom?tenant=a&x=1") as sink,
        running_simulator(tmp_path, notify_url=sink.url) as sim,
    ):
        gw = Gateway(sim)
        p = sim.create_payment(method="ALIPAY_CN", amount_minor=5000)
        made = gw.refund(p["paymentId"], 1200, "rr-1", metadata="note-7")
        notes = sim.wait_for(lambda: of_type(sink, "REFUND_RESULT"))
        gw.close()
    n = notes[0]
    assert n.uri == "/webhooks/antom?tenant=a&x=1"
    assert verify_notification(sim, n)
    # The same bytes signed over another path must not verify: the path is in the signature.
    assert not signing.verify(
        load_public_key(sim.antom_public_key_pem),
        uri="/webhooks/antom",
        client_id=n.headers["client-id"],
        time=n.headers["request-time"],
        body=n.body,
        header=n.headers["signature"],
    )
    assert n.headers["client-id"] == sim.client_id
    assert n.headers["content-type"].startswith("application/json")
    body = n.json
    assert body == {
        "notifyType": "REFUND_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "refundStatus": "SUCCESS",
        "refundRequestId": "rr-1",
        "refundId": made["refundId"],
        "paymentId": p["paymentId"],
        "paymentRequestId": p["paymentRequestId"],
        "refundAmount": {"currency": "USD", "value": "1200"},
        "refundTime": made["refundTime"],
        "metadata": "note-7",
    }


def test_refund_notify_url_in_request_wins_over_default(tmp_path: Path) -> None:
    with (
        running_sink("/default") as default,
        running_sink("/per-refund") as own,
        running_simulator(tmp_path, notify_url=default.url) as sim,
    ):
        gw = Gateway(sim)
        p = sim.create_payment(method="CARD", amount_minor=5000)
        gw.refund(p["paymentId"], 5000, "rr-own", refundNotifyUrl=own.url)
        notes = sim.wait_for(lambda: of_type(own, "REFUND_RESULT"))
        gw.close()
        assert notes[0].json["refundStatus"] == "SUCCESS"
        assert verify_notification(sim, notes[0])
        assert of_type(default, "REFUND_RESULT") == []
        assert len(of_type(default, "PAYMENT_RESULT")) == 1


def test_async_failure_notifies_fail(tmp_path: Path) -> None:
    with (
        running_sink() as sink,
        running_simulator(tmp_path, notify_url=sink.url, refund_delay_s=3600) as sim,
    ):
        gw = Gateway(sim)
        p = sim.create_payment(method="GCASH", currency="PHP", amount_minor=5000)
        made = gw.refund(p["paymentId"], 5000, "rr-f", "PHP")
        assert code(made) == ("REFUND_IN_PROCESS", "U")
        assert of_type(sink, "REFUND_RESULT") == []  # nothing until it is final
        sim.settle(made["refundId"], "FAIL")
        note = sim.wait_for(lambda: of_type(sink, "REFUND_RESULT"))[0].json
        gw.close()
    assert note["refundStatus"] == "FAIL"
    assert note["result"]["resultStatus"] == "F"
    assert "refundTime" not in note


def test_no_notification_for_rejected_refund_or_without_any_url(tmp_path: Path) -> None:
    with running_simulator(tmp_path) as sim:  # no default notify URL
        gw = Gateway(sim)
        p = sim.create_payment(amount_minor=100)
        assert code(gw.refund(p["paymentId"], 100, "ok"))[0] == "SUCCESS"
        assert code(gw.refund(p["paymentId"], 100, "too-much"))[0] == "REFUND_AMOUNT_EXCEED"
        gw.close()
        assert sim.notifications() == []


def test_payment_capture_and_dispute_notifications(tmp_path: Path) -> None:
    with running_sink() as sink, running_simulator(tmp_path, notify_url=sink.url) as sim:
        p = sim.create_payment(method="CARD", amount_minor=8000, captured=False)
        sim.admin_post(f"payments/{p['paymentId']}/capture", {"amountMinor": 8000})
        sim.admin_post(f"payments/{p['paymentId']}/chargeback")
        sim.admin_post(f"payments/{p['paymentId']}/chargeback/close", {"result": "VALIDATE_FAIL"})
        sim.wait_for(lambda: len(sink) >= 4)
        received = sink.snapshot()
        assert all(verify_notification(sim, n) for n in received)
    bodies = [n.json for n in received]
    paid = next(b for b in bodies if b.get("notifyType") == "PAYMENT_RESULT")
    assert paid["paymentId"] == p["paymentId"]
    assert paid["paymentRequestId"] == p["paymentRequestId"]
    assert paid["paymentAmount"] == {"currency": "USD", "value": "8000"}
    assert paid["result"]["resultStatus"] == "S" and paid["paymentCreateTime"]
    captured = next(b for b in bodies if b.get("notifyType") == "CAPTURE_RESULT")
    assert captured["paymentId"] == p["paymentId"]
    assert captured["captureAmount"] == {"currency": "USD", "value": "8000"}
    assert captured["captureId"] and captured["captureRequestId"]
    disputes = [b for b in bodies if "disputeNotificationType" in b]
    assert [d["disputeNotificationType"] for d in disputes] == ["DISPUTE_CREATED", "DISPUTE_JUDGED"]
    created, judged = disputes
    assert created["disputeId"] == judged["disputeId"]
    for d in disputes:
        assert d["paymentId"] == p["paymentId"]
        assert d["paymentRequestId"] == p["paymentRequestId"]
        assert d["disputeAmount"] == {"currency": "USD", "value": "8000"}
    assert judged["disputeJudgedResult"] == "VALIDATE_FAIL"


def test_pay_endpoint_notifies_its_own_payment_notify_url(tmp_path: Path) -> None:
    with running_sink("/pay-hook") as sink, running_simulator(tmp_path) as sim:
        gw = Gateway(sim)
        made = gw.call(
            "pay",
            {
                "paymentRequestId": "pay-1",
                "paymentAmount": {"currency": "JPY", "value": "1200"},
                "paymentMethod": {"paymentMethodType": "ALIPAY_CN"},
                "paymentNotifyUrl": sink.url,
            },
        )
        note = sim.wait_for(lambda: of_type(sink, "PAYMENT_RESULT"))[0]
        gw.close()
        assert note.json["paymentId"] == made["paymentId"]
        assert verify_notification(sim, note)


def deliveries(sim: SimHandle) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sim.notifications()
    return result


@pytest.mark.parametrize(
    "bad_reply", [None, b'{"result":{"resultCode":"FAIL","resultStatus":"F"}}']
)
def test_retried_until_acknowledged(tmp_path: Path, bad_reply: bytes | None) -> None:
    """HTTP 500 or a wrong body both count as not acknowledged."""
    with (
        running_sink(fail_first=3, bad_reply=bad_reply) as sink,
        running_simulator(tmp_path, notify_url=sink.url, time_scale=0.0001) as sim,
    ):
        sim.create_payment(amount_minor=100)
        sim.wait_for(lambda: [n for n in deliveries(sim) if n["status"] == "acknowledged"])
        (n,) = deliveries(sim)
        received = sink.snapshot()
    assert n["attempts"] == 4 and len(received) == 4
    assert [d["acknowledged"] for d in n["deliveries"]] == [False, False, False, True]
    # Every attempt carries the same body bytes, each freshly signed.
    assert len({r.body for r in received}) == 1
    assert all(verify_notification(sim, r) for r in received)


def test_ack_message_text_is_not_compared(tmp_path: Path) -> None:
    ack_with_period = (
        b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success."}}'
    )
    with (
        running_sink(fail_first=1, bad_reply=ack_with_period) as sink,
        running_simulator(tmp_path, notify_url=sink.url) as sim,
    ):
        sim.create_payment(amount_minor=100)
        sim.wait_for(lambda: [n for n in deliveries(sim) if n["status"] == "acknowledged"])
        assert len(sink) == 1


def test_retry_schedule_intervals_and_giving_up(tmp_path: Path) -> None:
    """Never acknowledged: 1 send + 8 retries at 0 s, 2 min, 10 min, 10 min, 1 h, 2 h, 6 h, 15 h."""
    scale = 0.00005  # the whole 24 h schedule in about 4.4 s
    with (
        running_sink(fail_first=100) as sink,
        running_simulator(tmp_path, notify_url=sink.url, time_scale=scale) as sim,
    ):
        sim.create_payment(amount_minor=100)
        sim.wait_for(lambda: [n for n in deliveries(sim) if n["status"] == "gave_up"], timeout=15)
        received = sink.snapshot()
        (n,) = deliveries(sim)
    assert n["attempts"] == 9 and len(received) == 9
    assert n["nextAttemptAt"] is None
    times = [d["attemptedAtEpoch"] for d in n["deliveries"]]
    assert times == sorted(times)
    # On one clock (the simulator's epoch seconds, which the sink shares): each retry was
    # sent no earlier than its scaled delay after the sink answered the previous attempt.
    # A busy machine only makes retries later; test_retry_delays_follow_the_schedule
    # checks the delays exactly.
    for i, nominal in enumerate(RETRY_SCHEDULE_S):
        answered = received[i].replied_at
        assert answered is not None and received[i].at <= answered
        assert times[i + 1] >= answered + nominal * scale, (i, times, answered)


def test_retry_delays_follow_the_schedule(tmp_path: Path) -> None:
    """Each failed attempt schedules the next exactly its (scaled) delay after it ended;
    the ninth failure gives up. The simulator's own bookkeeping, on a clock set by hand."""
    config = make_config(tmp_path, time_scale=0.5)
    database = SimDB(config.db_path)
    table = sim_db.notifications

    def create(conn: Connection) -> int:
        row = conn.execute(
            sa.insert(table).values(
                notify_type="PAYMENT_RESULT",
                object_id="p-1",
                url="http://127.0.0.1:9/",
                body="{}",
                created_at=1_000.0,
                next_attempt_at=1_000.0,
                attempts=0,
                status="pending",
            )
        )
        return int(row.inserted_primary_key[0])

    def failed(finished: float) -> Callable[[Connection], Any]:
        def record(conn: Connection) -> Any:
            record_attempt(
                conn,
                config,
                notification_id,
                started=finished - 0.25,
                finished=finished,
                request_time="2026-01-01T00:00:00Z",
                http_status=500,
                acknowledged=False,
                error=None,
                excerpt="nope",
            )
            return conn.execute(
                sa.select(table.c.status, table.c.attempts, table.c.next_attempt_at).where(
                    table.c.id == notification_id
                )
            ).one()

        return record

    try:
        notification_id = database.run_sync(create)
        finished = 1_000.0
        for i, nominal in enumerate(RETRY_SCHEDULE_S):
            finished += 7.0 + i  # whenever the attempt happened to end
            row = database.run_sync(failed(finished))
            assert tuple(row) == ("pending", i + 1, finished + nominal * 0.5)
        row = database.run_sync(failed(finished + 1.0))
        assert tuple(row) == ("gave_up", 9, None)
    finally:
        database.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/nothing-listens", "http:///no-host"])
def test_unreachable_receiver_counts_as_failed_attempt(tmp_path: Path, url: str) -> None:
    with running_simulator(tmp_path, notify_url=url, time_scale=0.000005) as sim:
        sim.create_payment(amount_minor=100)
        sim.wait_for(lambda: [n for n in deliveries(sim) if n["status"] == "gave_up"], timeout=15)
        (n,) = deliveries(sim)
    assert n["attempts"] == 9
    assert all(d["error"] and d["httpStatus"] is None for d in n["deliveries"])


def test_notification_body_bytes_are_what_was_signed(tmp_path: Path) -> None:
    with running_sink() as sink, running_simulator(tmp_path, notify_url=sink.url) as sim:
        sim.create_payment(amount_minor=100, buyer_name="Zoë 李")
        note = sim.wait_for(lambda: sink.snapshot())[0]
    assert json.loads(note.body)["notifyType"] == "PAYMENT_RESULT"
    assert verify_notification(sim, note)


def test_a_slow_receiver_does_not_hold_up_other_deliveries(tmp_path: Path) -> None:
    answer_slow = threading.Event()
    with (
        running_sink("/slow", hold=answer_slow) as slow,
        running_sink("/fast") as fast,
        # The simulator would give up on the slow receiver only after a minute.
        running_simulator(tmp_path, notify_timeout_s=60) as sim,
    ):
        try:
            sim.create_payment(amount_minor=100, notify_url=slow.url)
            sim.wait_for(lambda: len(slow) == 1)  # the slow one is now being answered
            sim.create_payment(amount_minor=200, notify_url=fast.url)
            # Delivered while the slow receiver still holds its request, not after it.
            sim.wait_for(lambda: len(fast) == 1, what="the fast delivery", timeout=30)
            assert slow.snapshot()[0].replied_at is None
        finally:
            answer_slow.set()
        sim.wait_for(lambda: all(n["status"] == "acknowledged" for n in deliveries(sim)))
        assert [n["attempts"] for n in deliveries(sim)] == [1, 1]  # nothing timed out
    (held,) = slow.snapshot()
    assert held.replied_at is not None and fast.snapshot()[0].at < held.replied_at
