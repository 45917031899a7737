"""Bulk refunds, service level: the CSV, the preview, four eyes, the run and cancel, on
SQLite and PostgreSQL, against the real simulator over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from sqlmodel import col, select

from tests.services.conftest import Desk, now
from tests.support.waiting import wait_until
from web.antom.client import AntomClient
from web.models import (
    AuditEvent,
    BulkBatch,
    BulkExpect,
    BulkRow,
    BulkStatus,
    Payment,
    RefundStatus,
    Role,
    User,
)
from web.services import bulk
from web.services.bulk_run import BulkRunner
from web.settings import BulkConfig

NOTIFY = None


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    return {"time_scale": 0.001, "hang_s": 0.5}


def csv_bytes(lines: Sequence[str], *, bom: bool = True, crlf: bool = True) -> bytes:
    text = ("\r\n" if crlf else "\n").join(lines) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


async def make_batch(
    desk: Desk, lead: User, data: bytes, filename: str = "batch.csv"
) -> tuple[BulkBatch, list[BulkRow]]:
    parsed = bulk.parse_csv(data)
    assert not parsed.errors, parsed.errors
    batch = await bulk.create_batch(
        desk.engine,
        user=lead,
        inputs=bulk.rows_of(parsed),
        source="csv",
        filename=filename,
        now=now(),
    )
    assert batch.id is not None
    async with desk.session() as s:
        return batch, await bulk.rows_of_batch(s, batch.id)


async def known(desk: Desk, simulator: Any, amount_minor: int, **kw: Any) -> Payment:
    """A payment made at the simulator, written straight into the desk (no inquiry)."""
    made = simulator.create_payment(amount_minor=amount_minor, **kw)
    return await desk.payment(
        payment_id=made["paymentId"],
        payment_request_id=made["paymentRequestId"],
        amount_minor=amount_minor,
        **kw,
    )


def runner(desk: Desk, antom: AntomClient, **config: Any) -> BulkRunner:
    return BulkRunner(
        desk.engine, antom, notify_url=NOTIFY, config=BulkConfig(**({"max_rate": 200} | config))
    )


def test_the_csv_reader_takes_bom_crlf_any_column_order_and_blank_lines() -> None:
    parsed = bulk.parse_csv(
        csv_bytes(
            [
                "Note;Amount;Reason;Payment Request ID;Colour",
                "",
                "sorry;12.50;duplicate_charge;PR-1;red",
                ";;;;",
                '"a; b";full;Duplicate charge;PR-2;',
            ]
        )
    )
    assert not parsed.errors
    assert parsed.ignored_columns == ["Colour"]
    rows = bulk.rows_of(parsed)
    assert [(r.line, r.key, r.key_kind, r.amount_text, r.note) for r in rows] == [
        (3, "PR-1", "payment_request_id", "12.50", "sorry"),
        (5, "PR-2", "payment_request_id", "full", "a; b"),
    ]


def test_a_file_without_a_payment_column_is_refused_whole() -> None:
    parsed = bulk.parse_csv(b"amount,reason\n1.00,other\n")
    assert parsed.errors and "paymentId" in parsed.errors[0]
    assert bulk.parse_csv(b"").errors
    assert bulk.parse_csv(b"\xff\x00\xfe").errors


async def test_the_preview_judges_each_row_like_the_form_and_flags_duplicates(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    lead = await desk.user(Role.LEAD, name="Lee")
    a = await desk.payment(amount_minor=5_000)
    b = await desk.payment(amount_minor=3_000, reference_order_id="ORD-7")
    disputed = await desk.payment(dispute_open=True)
    batch, rows = await make_batch(
        desk,
        lead,
        csv_bytes(
            [
                "paymentId,orderRef,amount,reason,note",
                f"{a.payment_id},,20.00,duplicate_charge,",
                f"{a.payment_id},,20.00,duplicate_charge,",  # the same again
                ",ORD-7,full,Customer request,",
                f"{disputed.payment_id},,1.00,customer_request,",
                "pay_nobody,,1.00,customer_request,",
                f"{b.payment_id},,5.00,not a reason,",
                f"{a.payment_id},,40.00,customer_request,",  # over what is left
            ]
        ),
    )
    by_line = {r.line: r for r in rows}
    assert by_line[2].expect is BulkExpect.OK and by_line[2].amount_minor == 2_000
    assert by_line[3].expect is BulkExpect.ATTENTION and by_line[3].excluded
    assert "Line 2 refunds this payment too" in (by_line[3].problem or "")
    assert by_line[4].expect is BulkExpect.OK and by_line[4].amount_minor == 3_000
    assert by_line[5].expect is BulkExpect.REFUSED and "chargeback" in (by_line[5].problem or "")
    assert by_line[6].expect is BulkExpect.REFUSED and "no payment" in (by_line[6].problem or "")
    assert by_line[7].expect is BulkExpect.REFUSED and "reason" in (by_line[7].problem or "")
    # 20.00 of line 2 counts: only 30.00 is left for line 8.
    assert by_line[8].expect is BulkExpect.REFUSED
    assert "Only $30.00 is still refundable" in (by_line[8].problem or "")
    assert [(t.currency, t.rows, t.amount_minor) for t in bulk.totals_of(rows)] == [
        ("USD", 2, 5_000)
    ]
    # Nothing was sent or reserved.
    assert await desk.refunds() == []
    assert (await desk.get_payment(a.id)).reserved_minor == 0
    assert batch.status is BulkStatus.AWAITING


async def test_the_requester_cannot_approve_and_an_edit_voids_the_approval_seen(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    lead, other = await desk.user(Role.LEAD), await desk.user(Role.LEAD, name="Bo")
    agent = await desk.user(Role.AGENT)
    a = await desk.payment(amount_minor=5_000)
    batch, rows = await make_batch(
        desk, lead, csv_bytes(["paymentId,amount,reason", f"{a.payment_id},10.00,other_no"])
    )
    assert batch.id is not None
    with pytest.raises(bulk.BulkError, match="your own batch"):
        await bulk.approve(
            desk.engine, batch_pk=batch.id, approver=lead, revision=0, comment="", now=now()
        )
    with pytest.raises(bulk.BulkError, match="may not decide"):
        await bulk.approve(
            desk.engine, batch_pk=batch.id, approver=agent, revision=0, comment="", now=now()
        )
    edited = await bulk.edit_row(
        desk.engine,
        batch_pk=batch.id,
        row_pk=rows[0].id or 0,
        user=lead,
        revision=0,
        amount_text="12.00",
        reason="customer_request",
        note="",
        now=now(),
    )
    assert edited.revision == 1
    with pytest.raises(bulk.BulkError, match="changed since you opened it"):
        await bulk.approve(
            desk.engine, batch_pk=batch.id, approver=other, revision=0, comment="", now=now()
        )
    approved = await bulk.approve(
        desk.engine, batch_pk=batch.id, approver=other, revision=1, comment="ok", now=now()
    )
    assert approved.status is BulkStatus.APPROVED
    async with desk.session() as s:
        actions = (
            await s.exec(
                select(AuditEvent.action)
                .where(AuditEvent.object_type == "bulk_batch")
                .order_by(col(AuditEvent.id))
            )
        ).all()
    assert list(actions) == ["bulk.requested", "bulk.edited", "bulk.approved"]


async def test_an_approved_batch_runs_once_through_the_send_path(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    lead, approver = await desk.user(Role.LEAD), await desk.user(Role.LEAD, name="Bo")
    payments = [await desk.imported(antom, simulator, amount_minor=2_000 + i) for i in range(5)]
    lines = ["paymentId,amount,reason"] + [
        f"{p.payment_id},full,customer_request" for p in payments
    ]
    batch, _ = await make_batch(desk, lead, csv_bytes(lines))
    assert batch.id is not None
    await bulk.approve(
        desk.engine, batch_pk=batch.id, approver=approver, revision=0, comment="", now=now()
    )
    stats = await runner(desk, antom).drive(batch.id)
    assert stats.outcome == "finished" and stats.written == 5
    # A second driver (a restart) finds nothing to do and writes nothing.
    again = await runner(desk, antom).drive(batch.id)
    assert again.outcome == "busy" and again.written == 0
    refunds = await desk.refunds()
    assert sorted(r.payment_pk for r in refunds) == sorted(p.id for p in payments)
    for refund in refunds:
        assert refund.status == RefundStatus.SUCCEEDED
        assert (refund.agent_id, refund.decided_by) == (lead.id, approver.id)
    for payment in payments:
        at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
        desk_ids = [r.refund_request_id for r in refunds if r.payment_pk == payment.id]
        assert [r["refundRequestId"] for r in at_antom] == desk_ids
    async with desk.session() as s:
        done = await bulk.get_batch(s, batch.id)
        assert done is not None and done.status is BulkStatus.FINISHED
        seen = await bulk.progress(s, done, now())
        csv_text = await bulk.result_csv(s, batch.id)
    assert [(c.currency, c.done, c.queued) for c in seen.counts] == [("USD", 5, 0)]
    assert csv_text.count("succeeded") == 5


async def test_no_row_is_written_ahead_after_the_cancel_commits(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    lead, approver = await desk.user(Role.LEAD), await desk.user(Role.LEAD, name="Bo")
    payments = [await known(desk, simulator, 1_000 + i) for i in range(60)]
    ids = [p.payment_id for p in payments]
    lines = ["paymentId,amount,reason"] + [f"{pid},full,customer_request" for pid in ids]
    batch, _ = await make_batch(desk, lead, csv_bytes(lines))
    assert batch.id is not None
    await bulk.approve(
        desk.engine, batch_pk=batch.id, approver=approver, revision=0, comment="", now=now()
    )
    driver = runner(desk, antom, max_rate=20, concurrency=2)
    task = asyncio.create_task(driver.drive(batch.id))

    async def some_written() -> bool:
        return len(await desk.refunds()) >= 3

    await wait_until(some_written, what="a few rows to be sent")
    cancelled = await bulk.cancel(desk.engine, batch_pk=batch.id, user=lead)
    assert cancelled.cancelled_at is not None
    stats = await task
    assert stats.outcome == "cancelled"
    refunds = await desk.refunds()
    assert 3 <= len(refunds) < len(payments)
    # Every refund was written ahead before the cancel committed (the same row lock).
    assert all(r.created_at < cancelled.cancelled_at for r in refunds)
    at_antom = [r for pid in ids for r in simulator.admin_get(f"refunds?paymentId={pid}")]
    assert sorted(r["refundRequestId"] for r in at_antom) == sorted(
        r.refund_request_id for r in refunds
    )
    async with desk.session() as s:
        done = await bulk.get_batch(s, batch.id)
        assert done is not None
        seen = await bulk.progress(s, done, now())
    assert seen.status is BulkStatus.CANCELLED and seen.sent == len(refunds)
    assert seen.to_send == len(payments) - len(refunds)


async def test_rows_on_one_payment_run_side_by_side_without_refusing_each_other(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    """Seen on PostgreSQL (10,000-row bench, 50 rows per payment): 2,761 rows refused
    "the payment kept changing" — each row's write-ahead read the payment unlocked, so
    its neighbours' reservations beat the ledger's optimistic check three times over."""
    lead, approver = await desk.user(Role.LEAD), await desk.user(Role.LEAD, name="Bo")
    payment = await known(desk, simulator, 10_000)
    lines = ["paymentId,amount,reason,note"] + [
        f"{payment.payment_id},1.00,customer_request,line {i}" for i in range(20)
    ]
    batch, rows = await make_batch(desk, lead, csv_bytes(lines))
    assert batch.id is not None
    revision = batch.revision
    for row in rows:
        if row.excluded:  # later rows on the same payment start excluded: put them back
            assert row.id is not None
            revision = (
                await bulk.set_excluded(
                    desk.engine,
                    batch_pk=batch.id,
                    row_pk=row.id,
                    excluded=False,
                    user=lead,
                    revision=revision,
                    now=now(),
                )
            ).revision
    await bulk.approve(
        desk.engine, batch_pk=batch.id, approver=approver, revision=revision, comment="", now=now()
    )
    stats = await runner(desk, antom, max_rate=1_000, concurrency=16).drive(batch.id)
    assert (stats.outcome, stats.written, stats.refused) == ("finished", 20, 0)
    refunds = await desk.refunds()
    assert len(refunds) == 20 and all(r.status == RefundStatus.SUCCEEDED for r in refunds)
    at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
    assert sorted(r["refundRequestId"] for r in at_antom) == sorted(
        r.refund_request_id for r in refunds
    )
    async with desk.session() as s:
        settled = await s.get(Payment, payment.id, populate_existing=True)
    assert settled is not None
    assert (settled.refunded_minor, settled.reserved_minor) == (2_000, 0)
