"""Bulk run benchmark: rows per second of an N-row batch against a rate-limited simulator.

Plain script, not collected by pytest:

    uv run python tests/bench/bulk.py                       # smoke: 500 rows, 50 req/s
    uv run python tests/bench/bulk.py -n 10000 -r 50        # the real run (goal: ≥ 0.90)
    DATABASE_URL=postgresql://... uv run python tests/bench/bulk.py -n 10000 -r 50

The simulator, in its own process, refuses more than ``-r`` requests a second
(REQUEST_TRAFFIC_EXCEED_LIMIT). The batch (1.00 per row, 50 rows per payment) is made,
judged and approved as a lead would, then one driver runs it starting at ``--max-rate``
(above the limit, so it must learn it). Reported: rows written ahead and sent per second
from the run's start to its end, as a fraction of the allowed rate, and the refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import col  # noqa: E402

from tests.bench.harness import (  # noqa: E402
    desk_with_simulator,
    spread,
)
from web.db import session_scope  # noqa: E402
from web.models import BulkRow, Payment, Role, User, utcnow  # noqa: E402
from web.services import bulk  # noqa: E402
from web.services.bulk_run import BulkRunner  # noqa: E402
from web.settings import BulkConfig  # noqa: E402

PER_PAYMENT = 50


async def one_run(n: int, rate: float, max_rate: float, concurrency: int) -> tuple[float, int]:
    async with desk_with_simulator() as (url, engine, sim):
        antom = sim.antom_client()
        print(f"seeding {n} rows ({-(-n // PER_PAYMENT)} payments) ...", flush=True)
        inputs: list[bulk.RowInput] = []
        async with session_scope(engine) as session:
            lead = User(email=f"{uuid.uuid4().hex[:8]}@b.test", name="Lead", role=Role.LEAD,
                        password_hash="x")  # fmt: skip
            approver = User(email=f"{uuid.uuid4().hex[:8]}@b.test", name="Approver",
                            role=Role.LEAD, password_hash="x")  # fmt: skip
            session.add_all([lead, approver])
            for start in range(0, n, PER_PAYMENT):
                count = min(PER_PAYMENT, n - start)
                made = sim.create_payment(method="ALIPAY_CN", amount_minor=100 * count)
                session.add(
                    Payment(
                        payment_id=made["paymentId"],
                        payment_request_id=made["paymentRequestId"],
                        method="ALIPAY_CN",
                        currency="USD",
                        amount_minor=100 * count,
                        captured_minor=100 * count,
                        status="SUCCESS",
                        paid_at=utcnow(),
                    )
                )
                inputs += [
                    bulk.RowInput(
                        len(inputs) + 2,
                        made["paymentId"],
                        "payment_id",
                        "1.00",
                        "customer_request",
                    )
                    for _ in range(count)
                ]
        batch = await bulk.create_batch(
            engine, user=lead, inputs=inputs, source="csv", filename="bench.csv", now=utcnow()
        )
        assert batch.id is not None
        async with session_scope(engine) as session:
            # Several rows per payment are flagged as repeats (and the later ones left
            # out): the benchmark means them all.
            await session.exec(
                sa.update(BulkRow).where(col(BulkRow.batch_pk) == batch.id).values(excluded=False)
            )
        await bulk.approve(
            engine, batch_pk=batch.id, approver=approver, revision=0, comment="", now=utcnow()
        )
        sim.admin_post("faults", {"rateLimitPerSecond": rate, "rateLimitBurst": 5})
        runner = BulkRunner(
            engine,
            antom,
            notify_url=None,
            config=BulkConfig(max_rate=max_rate, concurrency=concurrency),
        )
        print(f"running: Antom allows {rate:g} req/s, the driver starts at {max_rate:g} ...")
        started = time.perf_counter()
        stats = await runner.drive(batch.id)
        elapsed = time.perf_counter() - started
        await antom.aclose()
    assert stats.outcome == "finished" and stats.written == n, stats
    throughput = n / elapsed
    print(f"database        {url.split('://')[0]}")
    print(f"rows            {n} sent in {elapsed:.1f} s")
    print(f"throughput      {throughput:.1f} rows/s = {throughput / rate:.2f} of the allowed rate")
    print(f"rate limited    {stats.rate_limited} answers; final rate {runner.limiter.rate:.1f}/s")
    return throughput / rate, stats.rate_limited


async def main(n: int, rate: float, max_rate: float, concurrency: int, runs: int) -> int:
    results = [await one_run(n, rate, max_rate, concurrency) for _ in range(runs)]
    print(f"fraction of the allowed rate, {runs} run(s): {spread([r[0] for r in results])}")
    print(f"rate-limit refusals:                       {spread([r[1] for r in results])}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="rows (default 500)")
    parser.add_argument("-r", type=float, default=50.0, help="Antom's limit, req/s (default 50)")
    parser.add_argument("--max-rate", type=float, default=100.0, help="starting rate (100)")
    parser.add_argument("--concurrency", type=int, default=16, help="rows in the air (16)")
    parser.add_argument("--runs", type=int, default=1, help="repetitions (default 1)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.n, args.r, args.max_rate, args.concurrency, args.runs)))
