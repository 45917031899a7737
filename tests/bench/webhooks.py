"""Webhook ingest benchmark: POST /webhooks/antom vs a bare Litestar JSON handler.

Plain script, not collected by pytest:

    uv run python tests/bench/webhooks.py                 # smoke: 500 notifications
    uv run python tests/bench/webhooks.py -n 5000 -c 50   # the real run
    DATABASE_URL=postgresql://... uv run python tests/bench/webhooks.py

The app runs as a separate uvicorn process (this file with ``--serve``) so the senders
do not share its GIL. Every notification is a distinct, correctly signed REFUND_RESULT
for a distinct processing refund; signatures are made before the clock starts. The same
server also mounts a bare handler (parse JSON, answer JSON) for the baseline. At the end
the database is counted: every notification must have settled its refund exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402
from web.antom import signing  # noqa: E402
from web.antom.keys import (  # noqa: E402
    generate_private_key,
    private_key_pem,
    public_key_pem,
)

CLIENT_ID = "BENCH_CLIENT"
BARE_PATH = "/bench/bare"


def serve() -> None:
    """Child process: the real app plus one bare handler, on $PORT."""
    import uvicorn
    from litestar import post

    from web.app import create_app
    from web.settings import Settings

    @post(BARE_PATH, exclude_from_auth=True, exclude_from_csrf=True, status_code=200)
    async def bare(data: dict[str, Any]) -> dict[str, Any]:
        return {"result": {"resultCode": "SUCCESS", "resultStatus": "S"}}

    app = create_app(Settings.from_env())
    app.register(bare)
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")


async def seed(database_url: str, n: int) -> list[tuple[str, int]]:
    """n processing refunds (10 per payment); returns (refundRequestId, amount) pairs."""
    import uuid

    from web.db import make_engine, session_scope
    from web.models import Payment, Refund, RefundStatus, utcnow

    engine = make_engine(database_url)
    refunds: list[tuple[str, int]] = []
    async with session_scope(engine) as session:
        for p in range(0, n, 10):
            count = min(10, n - p)
            payment = Payment(
                payment_id=f"bench-pay-{uuid.uuid4().hex[:20]}",
                payment_request_id=f"bench-preq-{p}",
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
            for _ in range(count):
                rrid = f"bench-{uuid.uuid4().hex}"
                session.add(
                    Refund(
                        refund_request_id=rrid,
                        payment_pk=payment.id or 0,
                        currency="USD",
                        amount_minor=100,
                        status=RefundStatus.PROCESSING,
                        reason="customer_request",
                        reason_text="Customer request",
                    )
                )
                refunds.append((rrid, 100))
    await engine.dispose()
    return refunds


async def counts(database_url: str) -> tuple[int, int, int]:
    import sqlalchemy as sa
    from sqlmodel import col, select

    from web.db import make_engine, session_scope
    from web.models import Refund, RefundEvent, RefundStatus, WebhookEvent

    engine = make_engine(database_url)
    async with session_scope(engine) as session:
        settled = (
            await session.exec(
                select(sa.func.count())
                .select_from(Refund)
                .where(col(Refund.status) == RefundStatus.SUCCEEDED)
            )
        ).one()
        inbox = (await session.exec(select(sa.func.count()).select_from(WebhookEvent))).one()
        transitions = (
            await session.exec(
                select(sa.func.count())
                .select_from(RefundEvent)
                .where(col(RefundEvent.to_status) == RefundStatus.SUCCEEDED)
            )
        ).one()
    await engine.dispose()
    return int(settled), int(inbox), int(transitions)


def start_server(env: dict[str, str], base: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, __file__, "--serve"], env=env, cwd=ROOT)
    for _ in range(600):
        try:
            httpx.get(f"{base}/healthz", timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the app did not start")


def sign_all(
    refunds: list[tuple[str, int]], antom_private: Any
) -> list[tuple[bytes, dict[str, str]]]:
    signed = []
    for rrid, amount in refunds:
        body = json.dumps(
            {
                "notifyType": "REFUND_RESULT",
                "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "ok"},
                "refundStatus": "SUCCESS",
                "refundRequestId": rrid,
                "refundId": f"antom-{rrid}",
                "refundAmount": {"currency": "USD", "value": str(amount)},
                "refundTime": "2026-11-25T12:00:00+08:00",
            }
        ).encode()
        when = str(int(time.time() * 1000))
        value = signing.sign(
            antom_private, uri="/webhooks/antom", client_id=CLIENT_ID, time=when, body=body
        )
        signed.append(
            (
                body,
                {
                    "content-type": "application/json",
                    "client-id": CLIENT_ID,
                    "request-time": when,
                    "signature": signing.signature_header(value),
                },
            )
        )
    return signed


async def blast(
    base_url: str, path: str, items: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> tuple[float, list[float], int]:
    """Send every item with ``concurrency`` senders; (seconds, latencies, non-2xx count)."""
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def sender() -> None:
            nonlocal failures
            while not queue.empty():
                body, headers = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(path, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(n: int, concurrency: int) -> int:
    antom_key, merchant_key = generate_private_key(), generate_private_key()
    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp}/bench.sqlite3"
        from web.db import migrate
        from web.settings import normalise_database_url

        url = normalise_database_url(database_url, Path(tmp))
        await asyncio.to_thread(migrate, url)
        refunds = await seed(url, n)
        port = free_port()
        env = os.environ | {
            "PORT": str(port),
            "DATABASE_URL": database_url,
            "APP_ENV": "development",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "ANTOM_GATEWAY_URL": "http://127.0.0.1:9",
            "ANTOM_CLIENT_ID": CLIENT_ID,
            "ANTOM_MERCHANT_PRIVATE_KEY": private_key_pem(merchant_key),
            "ANTOM_PUBLIC_KEY": public_key_pem(antom_key.public_key()),
            "REFUND_DESK_POLLER": "off",
        }
        base = f"http://127.0.0.1:{port}"
        server = await asyncio.to_thread(start_server, env, base)
        try:
            notifications = sign_all(refunds, antom_key)
            bare_items = [(body, {"content-type": "application/json"}) for body, _ in notifications]
            # Warm both paths (connections, imports, caches) outside the measurement.
            await blast(base, BARE_PATH, bare_items[: min(50, n)], concurrency)
            bare_s, bare_lat, bare_fail = await blast(base, BARE_PATH, bare_items, concurrency)
            hook_s, hook_lat, hook_fail = await blast(
                base, "/webhooks/antom", notifications, concurrency
            )
        finally:
            server.terminate()
            await asyncio.to_thread(server.wait, 20)
        settled, inbox, transitions = await counts(url)

    lost = n - settled
    print(f"database        {url.split('://')[0]}")
    print(f"notifications   {n}  senders {concurrency}")
    print(
        f"bare handler    {n / bare_s:8.1f} req/s  p50 {pct(bare_lat, 0.5):7.1f} ms  "
        f"p99 {pct(bare_lat, 0.99):7.1f} ms  non-2xx {bare_fail}"
    )
    print(
        f"webhook ingest  {n / hook_s:8.1f} req/s  p50 {pct(hook_lat, 0.5):7.1f} ms  "
        f"p99 {pct(hook_lat, 0.99):7.1f} ms  non-2xx {hook_fail}"
    )
    print(f"ratio           {bare_s / hook_s:.3f} of the bare handler's throughput")
    print(f"                p50 x{statistics.median(hook_lat) / statistics.median(bare_lat):.1f}")
    print(f"stored          {inbox} inbox rows, {transitions} transitions, {settled} settled")
    print(f"lost            {lost}")
    return 0 if lost == 0 and hook_fail == 0 and inbox == n and transitions == n else 1


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve()
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="notifications (default 500)")
    parser.add_argument("-c", type=int, default=50, help="concurrent senders (default 50)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.n, args.c)))
