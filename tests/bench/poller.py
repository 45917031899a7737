"""Poller benchmark: settle N processing refunds against a rate-limited simulator.

Plain script, not collected by pytest:

    uv run python tests/bench/poller.py                         # smoke: 200 refunds, 50 req/s
    uv run python tests/bench/poller.py -n 10000 -r 100 --runs 3  # the real run
    DATABASE_URL=postgresql://... uv run python tests/bench/poller.py -p 2

Every refund exists at the simulator (already settled there) and is PROCESSING at the
desk, so each needs exactly one successful inquiry. The simulator, in its own process,
then refuses more than ``-r`` requests a second (REQUEST_TRAFFIC_EXCEED_LIMIT), and
``-p`` pollers (sharing the database through leases) run until every refund is settled.
Reported per run and as median (min … max): refunds settled per second as a fraction of
the allowed rate, and rate-limit hits. ``--profile FILE`` samples this process (the
pollers; the simulator is another process) with py-spy during the last run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import col, select  # noqa: E402

from tests.bench.harness import (  # noqa: E402
    desk_with_simulator,
    print_profile,
    profiled,
    spread,
)
from web.antom.messages import RefundRequest  # noqa: E402
from web.antom.money import Money  # noqa: E402
from web.db import session_scope  # noqa: E402
from web.models import Payment, Refund, RefundStatus, utcnow  # noqa: E402
from web.services.poller import Poller  # noqa: E402
from web.settings import PollerConfig  # noqa: E402

PER_PAYMENT = 50


async def unsettled(engine: sa.ext.asyncio.AsyncEngine) -> int:
    async with session_scope(engine) as session:
        return int(
            (
                await session.exec(
                    select(sa.func.count())
                    .select_from(Refund)
                    .where(col(Refund.status) != RefundStatus.SUCCEEDED)
                )
            ).one()
        )


async def one_run(
    n: int, rate: float, pollers: int, max_rate: float, profile: Path | None = None
) -> tuple[float, int]:
    async with desk_with_simulator() as (url, engine, sim):
        antom = sim.antom_client()
        print(f"seeding {n} refunds at the simulator and the desk ...", flush=True)
        semaphore = asyncio.Semaphore(16)

        async def make(payment_id: str, payment_pk: int) -> None:
            rrid = f"bench-{uuid.uuid4().hex}"
            async with semaphore:
                answer = await antom.refund(RefundRequest(rrid, payment_id, Money(100, "USD")))
            assert answer.result_code == "SUCCESS", answer.result_code
            async with session_scope(engine) as session:
                session.add(
                    Refund(
                        refund_request_id=rrid,
                        payment_pk=payment_pk,
                        currency="USD",
                        amount_minor=100,
                        status=RefundStatus.PROCESSING,
                        reason="customer_request",
                        reason_text="Customer request",
                    )
                )

        for start in range(0, n, PER_PAYMENT):
            count = min(PER_PAYMENT, n - start)
            made = sim.create_payment(method="ALIPAY_CN", amount_minor=100 * count)
            async with session_scope(engine) as session:
                payment = Payment(
                    payment_id=made["paymentId"],
                    payment_request_id=made["paymentRequestId"],
                    method="ALIPAY_CN",
                    currency="USD",
                    amount_minor=100 * count,
                    captured_minor=100 * count,
                    reserved_minor=100 * count,
                    refund_count=count,
                    status="SUCCESS",
                    paid_at=utcnow(),
                )
                session.add(payment)
                await session.flush()
                payment_pk = payment.id or 0
            await asyncio.gather(*(make(made["paymentId"], payment_pk) for _ in range(count)))

        sim.admin_post("faults", {"rateLimitPerSecond": rate, "rateLimitBurst": 5})
        config = PollerConfig(
            batch=50,
            concurrency=16,
            max_rate=max_rate,
            base_delay_s=0.5,
            max_delay_s=2.0,
            pending_grace_s=0.0,
            idle_s=0.05,
            gauges_every_s=3600,
        )
        instances = [Poller(engine, antom, notify_url=None, config=config) for _ in range(pollers)]
        stop = asyncio.Event()
        print(f"settling with {pollers} poller(s), Antom allows {rate:g} req/s ...", flush=True)
        with profiled(os.getpid() if profile else None, profile):
            started = time.perf_counter()
            tasks = [asyncio.create_task(p.run_forever(stop)) for p in instances]
            while await unsettled(engine):  # noqa: ASYNC110 - the database is the signal
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*tasks)
        await antom.aclose()

    hits = sum(p.rate_limit_hits for p in instances)
    checks = sum(p.checks for p in instances)
    throughput = n / elapsed
    print(f"database        {url.split('://')[0]}")
    print(f"refunds         {n} settled in {elapsed:.1f} s")
    print(
        f"throughput      {throughput:.1f} refunds/s = {throughput / rate:.2f} of the allowed rate"
    )
    print(f"inquiries       {checks} ({hits} refused as rate limited)")
    print(f"final rates     {', '.join(f'{p.limiter.rate:.1f}/s' for p in instances)}")
    return throughput / rate, hits


async def main(
    n: int, rate: float, pollers: int, max_rate: float, runs: int, profile: Path | None
) -> int:
    results = [
        await one_run(n, rate, pollers, max_rate, profile if run == runs - 1 else None)
        for run in range(runs)
    ]
    print(f"fraction of the allowed rate, {runs} run(s): {spread([r[0] for r in results])}")
    print(f"rate-limit refusals:                       {spread([r[1] for r in results])}")
    if profile:
        print_profile("the pollers during the last run", profile)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="refunds (default 200)")
    parser.add_argument("-r", type=float, default=50.0, help="Antom's limit, req/s (default 50)")
    parser.add_argument("-p", type=int, default=1, help="pollers sharing the work (default 1)")
    parser.add_argument(
        "--max-rate", type=float, default=200.0, help="each poller's starting rate (default 200)"
    )
    parser.add_argument("--runs", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--profile", type=Path, help="py-spy the last run's pollers, raw stacks")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.n, args.r, args.p, args.max_rate, args.runs, args.profile)))
