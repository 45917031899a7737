"""A bulk run against the simulator with injected faults: unknown results, rate limits,
HTTP 500 before and after the commit, a response that never arrives, async failures.
Afterwards every row is refunded exactly once or clearly failed, and the desk and the
simulator agree row by row.

``BULK_FAULT_ROWS`` sets the size. The default is 100: on the shared 2-core machine,
loaded by several people's work, 200 rows took about 50 s per database and the issue's
1,000-row run (``BULK_FAULT_ROWS=1000``) 164 s on SQLite and 221 s on PostgreSQL
(both passed) — too slow for the normal suite.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
from sqlmodel import col, select

from tests.services.conftest import Desk, now
from tests.services.test_bulk import csv_bytes, known, make_batch
from tests.support.waiting import wait_until
from web.antom.client import AntomClient
from web.models import BulkRow, Payment, Refund, RefundStatus, Role
from web.services import bulk
from web.services.bulk_run import BulkRunner
from web.services.poller import Poller
from web.settings import BulkConfig, PollerConfig
from web.sim.faults import Fault, magic_amount

ROWS = int(os.environ.get("BULK_FAULT_ROWS", "100"))
FAULTS = (
    Fault.UNKNOWN_EXCEPTION,  # 01: U, nothing executed
    Fault.RATE_LIMITED,  # 02: REQUEST_TRAFFIC_EXCEED_LIMIT
    Fault.HTTP_500,  # 03: 500, nothing executed
    Fault.HTTP_500_AFTER_COMMIT,  # 04: executed, then 500
    Fault.HANG_AFTER_COMMIT,  # 05: executed, the answer never arrives
    Fault.UNKNOWN_AFTER_COMMIT,  # 06: executed, then U
    Fault.ASYNC_FAIL,  # 07: REFUND_IN_PROCESS, later FAIL
    Fault.BALANCE_NOT_ENOUGH,  # 09: F
    Fault.ASYNC_SUCCESS,  # 10: REFUND_IN_PROCESS, later SUCCESS
)


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    return {"time_scale": 0.001, "hang_s": 0.5}


def amount_for(i: int) -> int:
    """Every fifth row carries a fault; the others are plain refunds."""
    if i % 5 == 0:
        return magic_amount(FAULTS[(i // 5) % len(FAULTS)], "USD")
    return 1_000 + i


async def test_a_batch_with_faults_ends_with_each_row_refunded_once_or_clearly_failed(
    desk: Desk, antom: AntomClient, simulator: Any
) -> None:
    lead, approver = await desk.user(Role.LEAD), await desk.user(Role.LEAD, name="Bo")
    payments = [await known(desk, simulator, amount_for(i)) for i in range(ROWS)]
    lines = ["paymentId,amount,reason"] + [
        f"{p.payment_id},full,customer_request" for p in payments
    ]
    batch, rows = await make_batch(desk, lead, csv_bytes(lines))
    assert batch.id is not None and all(r.expect == "ok" for r in rows)
    await bulk.approve(
        desk.engine, batch_pk=batch.id, approver=approver, revision=0, comment="", now=now()
    )
    # Antom's limit: below what the run would like, so it must learn it.
    simulator.set_faults(rateLimitPerSecond=60, rateLimitBurst=10)
    runner = BulkRunner(
        desk.engine, antom, notify_url=None, config=BulkConfig(max_rate=120, concurrency=8)
    )
    stats = await runner.drive(batch.id)
    assert stats.outcome == "finished"
    assert stats.written == ROWS
    assert stats.rate_limited > 0  # the limit was met, and learnt
    assert runner.limiter.rate < 120

    # What stayed unknown is settled by the poller, as for any refund.
    simulator.set_faults(rateLimitOff=True)
    poller = Poller(
        desk.engine,
        antom,
        notify_url=None,
        config=PollerConfig(pending_grace_s=0, max_rate=200, batch=50, concurrency=8),
    )

    async def all_final() -> bool:
        await poller.reconcile()  # every unsettled refund, whatever its schedule
        refunds = await desk.refunds()
        return all(RefundStatus(r.status).final for r in refunds)

    await wait_until(all_final, what="every refund of the batch to settle")

    refunds = {r.id: r for r in await desk.refunds()}
    async with desk.session() as s:
        batch_rows = list(
            (await s.exec(select(BulkRow).where(col(BulkRow.batch_pk) == batch.id))).all()
        )
        by_pk = {p.id: p for p in (await s.exec(select(Payment))).all()}
    assert len({r.refund_pk for r in batch_rows}) == ROWS  # one refund per row
    assert len(refunds) == ROWS
    outcomes: Counter[str] = Counter()
    for row in batch_rows:
        refund: Refund = refunds[row.refund_pk]
        payment = by_pk[row.payment_pk]
        at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
        status = RefundStatus(refund.status)
        outcomes[status.value] += 1
        succeeded_there = [r for r in at_antom if r["status"] == "SUCCESS"]
        # Never twice at Antom; never one the desk does not know.
        assert [r["refundRequestId"] for r in at_antom] in ([], [refund.refund_request_id])
        if status is RefundStatus.SUCCEEDED:
            assert len(succeeded_there) == 1
            assert (payment.refunded_minor, payment.reserved_minor) == (payment.amount_minor, 0)
        else:
            assert status is RefundStatus.FAILED and not succeeded_there, at_antom
            assert (payment.refunded_minor, payment.reserved_minor) == (0, 0)
    failing = sum(1 for i in range(ROWS) if i % 5 == 0 and FAULTS[(i // 5) % len(FAULTS)]
                  in (Fault.ASYNC_FAIL, Fault.BALANCE_NOT_ENOUGH))  # fmt: skip
    assert outcomes == {"succeeded": ROWS - failing, "failed": failing}
