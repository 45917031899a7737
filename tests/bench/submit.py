"""Refund submit overhead: everything a submit costs but the gateway round trip.

Plain script, not collected by pytest:

    uv run python tests/bench/submit.py                       # SQLite, 200 submits, 3 runs
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/<fresh db> uv run python tests/bench/submit.py

Each submit is ``web.services.refunds.submit_refund`` (the service the htmx POST calls:
validate, reserve, write ahead, sign, call Antom, record the answer) for one refund of
a fresh payment, against the simulator in its own process. The HTTP exchange itself is
timed inside the client's transport (request out, whole answer read) and taken away:
what is left is the desk's own work. The baseline, measured in the same run on the same
engine: one RSA-SHA256 signature of a refund request body plus the two bare commits a
submit cannot do without (the write-ahead and the recorded answer: each one
``UPDATE`` of one row and ``COMMIT``). Reported: median (min … max) over ``--runs`` of
the per-submit medians, and their ratio (goal: ≤ 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import col  # noqa: E402

from tests.bench.harness import (  # noqa: E402
    desk_with_simulator,
    print_profile,
    profiled,
    spread,
)
from web.antom import signing  # noqa: E402
from web.antom.keys import load_private_key  # noqa: E402
from web.db import session_scope  # noqa: E402
from web.models import Payment, Role, User, utcnow  # noqa: E402
from web.services.refunds import RefundDraft, new_form, submit_refund  # noqa: E402


class TimedTransport(httpx.AsyncBaseTransport):
    """The real transport, with the time of each whole exchange kept aside."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.last_s = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.last_s = time.perf_counter() - started
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def one_run(n: int, profile: Path | None = None) -> tuple[float, float]:
    async with desk_with_simulator() as (url, engine, sim):
        transport = TimedTransport()
        key = load_private_key(sim.merchant_private_key_pem)
        antom = sim.antom_client(http=httpx.AsyncClient(transport=transport))
        async with session_scope(engine) as session:
            lead = User(email=f"{uuid.uuid4().hex[:8]}@b.test", name="Lead", role=Role.LEAD,
                        password_hash="x")  # fmt: skip
            session.add(lead)
        payments = []
        for _ in range(n + 5):
            made = sim.create_payment(method="ALIPAY_CN", amount_minor=1000)
            payments.append(
                Payment(
                    payment_id=made["paymentId"],
                    payment_request_id=made["paymentRequestId"],
                    method="ALIPAY_CN",
                    currency="USD",
                    amount_minor=1000,
                    captured_minor=1000,
                    status="SUCCESS",
                    paid_at=utcnow(),
                )
            )
        async with session_scope(engine) as session:
            session.add_all(payments)
        overhead: list[float] = []
        with profiled(os.getpid() if profile else None, profile):
            for i, payment in enumerate(payments):
                async with session_scope(engine) as session:
                    draft, _ = await new_form(session, payment, lead, utcnow())
                draft = RefundDraft(
                    amount_text="1.00",
                    currency="USD",
                    reason="customer_request",
                    note="",
                    form_token=draft.form_token,
                    refundable_token=draft.refundable_token,
                )
                started = time.perf_counter()
                outcome = await submit_refund(
                    engine,
                    antom,
                    payment_pk=payment.id or 0,
                    user=lead,
                    draft=draft,
                    notify_url=None,
                    now=utcnow(),
                    retry_delays=(),
                )
                spent = time.perf_counter() - started - transport.last_s
                assert outcome.refund is not None, outcome
                if i >= 5:  # the first few warm caches and connections
                    overhead.append(spent * 1000)
        await antom.aclose()

        body = json.dumps({"refundRequestId": "x" * 32, "refundAmount": {"value": "100"}}).encode()
        baseline: list[float] = []
        for i in range(n):
            started = time.perf_counter()
            signing.sign(
                key,
                uri="/ams/api/v1/payments/refund",
                client_id=sim.client_id,
                time=str(int(time.time() * 1000)),
                body=body,
            )
            for _ in range(2):
                async with session_scope(engine) as session:
                    await session.exec(
                        sa.update(User).where(col(User.id) == lead.id).values(name=f"Lead {i}")
                    )
            baseline.append((time.perf_counter() - started) * 1000)
    submit_ms, base_ms = statistics.median(overhead), statistics.median(baseline)
    print(f"database        {url.split('://')[0]}")
    print(f"submit overhead {submit_ms:.2f} ms (median of {len(overhead)}, round trip taken out)")
    print(f"baseline        {base_ms:.2f} ms (one RSA sign + two one-row commits)")
    print(f"ratio           {submit_ms / base_ms:.2f}")
    return submit_ms, submit_ms / base_ms


async def main(n: int, runs: int, profile: Path | None) -> int:
    results = [await one_run(n, profile if run == runs - 1 else None) for run in range(runs)]
    print(f"submit overhead, ms, {runs} run(s):  {spread([r[0] for r in results])}")
    print(f"overhead / baseline (goal ≤ 3):     {spread([r[1] for r in results])}")
    if profile:
        print_profile("the last run's submits (the exchange with Antom shows as idle)", profile)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="submits per run (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--profile", type=Path, help="py-spy the last run's submits, raw stacks")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.n, args.runs, args.profile)))
