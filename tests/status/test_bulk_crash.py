"""kill -9 in the middle of a bulk run, then resume: every row is refunded exactly once.

A helper process (``tests/status/crash_bulk.py``) drives the batch and is SIGKILLed at a
fault point on its N-th pass (after a row's write-ahead, or after Antom answered a row
and before the desk recorded it); another driver resumes the batch once the dead one's
lease has lapsed. Afterwards the simulator holds exactly one refund per row, with the
desk's own ``refundRequestId``, and the desk agrees row by row.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.services.conftest import antom_client_for
from tests.status.conftest import desk_payment
from tests.support.simulator import SimHandle
from tests.support.waiting import wait_until
from web.db import session_scope
from web.models import BulkBatch, BulkRow, BulkStatus, Payment, Refund, RefundStatus, utcnow
from web.services import bulk
from web.services.bulk_run import BulkRunner, RunStats
from web.services.poller import Poller
from web.settings import BulkConfig, PollerConfig, Settings

ROOT = Path(__file__).resolve().parents[2]
ROWS = 24
LEASE_S = 3.0


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str, simulator: SimHandle) -> Settings:
    return make_settings(database_url=db_url, simulator=simulator)


def crash_run(
    settings: Settings, batch_pk: int, point: str, after: int
) -> subprocess.CompletedProcess[str]:
    args = {
        "fault_point": point,
        "after": after,
        "database_url": settings.database_url,
        "gateway_url": settings.antom_gateway_url,
        "client_id": settings.antom_client_id,
        "merchant_pem": settings.antom_merchant_private_key,
        "antom_pem": settings.antom_public_keys[0],
        "batch_pk": batch_pk,
        "lease_s": LEASE_S,
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.status.crash_bulk"],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("point", ["bulk_after_write_ahead", "after_antom_call"])
async def test_a_bulk_run_killed_mid_way_resumes_without_sending_anything_twice(
    settings: Settings,
    engine: AsyncEngine,
    simulator: SimHandle,
    make_user: Callable[..., Any],
    point: str,
) -> None:
    payments = [await desk_payment(engine, simulator, amount_minor=1_000 + i) for i in range(ROWS)]
    lead = await make_user(role="lead")
    approver = await make_user(role="lead")
    rows = [
        bulk.RowInput(line=i + 2, key=p.payment_id, key_kind="payment_id",
                      amount_text="full", reason="customer_request")
        for i, p in enumerate(payments)
    ]  # fmt: skip
    batch = await bulk.create_batch(
        engine, user=lead, inputs=rows, source="csv", filename="crash.csv", now=utcnow()
    )
    assert batch.id is not None
    await bulk.approve(
        engine, batch_pk=batch.id, approver=approver, revision=0, comment="", now=utcnow()
    )

    proc = crash_run(settings, batch.id, point, after=8)

    assert proc.returncode == -signal.SIGKILL, (proc.stdout, proc.stderr[-3000:])
    async with session_scope(engine) as session:
        written = (await session.exec(select(Refund))).all()
        halted = await session.get(BulkBatch, batch.id)
    assert 8 <= len(written) < ROWS  # killed part-way
    assert halted is not None and halted.status == BulkStatus.RUNNING
    assert any(r.status == RefundStatus.PENDING for r in written)  # one was in the air

    antom = antom_client_for(simulator)
    try:
        runner = BulkRunner(
            engine, antom, notify_url=None, config=BulkConfig(max_rate=50, lease_s=LEASE_S)
        )

        async def resumed() -> RunStats | None:
            stats = await runner.drive(batch.id or 0)
            return None if stats.outcome == "busy" else stats

        stats = await wait_until(resumed, what="the dead driver's lease to lapse")
        assert stats.outcome == "finished"
        assert stats.written == ROWS - len(written)
        assert stats.resent >= 1  # the row in the air was sent again, with its own id

        poller = Poller(engine, antom, notify_url=None, config=PollerConfig(pending_grace_s=0))

        async def all_final() -> bool:
            await poller.reconcile()
            async with session_scope(engine) as session:
                refunds = (await session.exec(select(Refund))).all()
            return all(RefundStatus(r.status).final for r in refunds)

        await wait_until(all_final, what="every refund to settle")
    finally:
        await antom.aclose()

    async with session_scope(engine) as session:
        batch_rows = (
            await session.exec(select(BulkRow).where(col(BulkRow.batch_pk) == batch.id))
        ).all()
        refunds = {r.id: r for r in (await session.exec(select(Refund))).all()}
        by_pk = {p.id: p for p in (await session.exec(select(Payment))).all()}
    assert len(refunds) == ROWS and len({r.refund_pk for r in batch_rows}) == ROWS
    for row in batch_rows:
        refund = refunds[row.refund_pk]
        payment = by_pk[row.payment_pk]
        at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
        assert [r["refundRequestId"] for r in at_antom] == [refund.refund_request_id]
        assert refund.status == RefundStatus.SUCCEEDED
        assert (payment.refunded_minor, payment.reserved_minor) == (payment.amount_minor, 0)
