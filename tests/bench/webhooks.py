"""Webhook ingest benchmark: POST /webhooks/antom vs a bare Litestar JSON handler.

Plain script, not collected by pytest:

    uv run python tests/bench/webhooks.py                        # 3 runs x 2,000, PostgreSQL
    uv run python tests/bench/webhooks.py -n 10000 --runs 5      # bigger
    uv run python tests/bench/webhooks.py --workers 2            # WEB_CONCURRENCY=2
    uv run python tests/bench/webhooks.py --sqlite               # SQLite instead

The desk runs as its real server process (uvicorn, as ``refund-desk serve`` starts it,
``tests/bench/bench_app.py``), with a bare handler (parse JSON, answer JSON) in the same
app and process for the baseline. wrk drives both with 50 connections and a Lua script
(``requests.lua``) that sends pre-computed requests: every notification is a distinct,
correctly signed REFUND_RESULT for a distinct processing refund, each sent once, so
dedupe never short-circuits. After each run the database is counted: every
notification must have stored its inbox row and settled its refund exactly once.

Printed per run and as median (min … max): requests/s of both, the ratio, the server's
CPU per notification, and lost notifications. ``--profile FILE`` also samples the server
with py-spy during the last run's webhooks and prints where its time went (database,
templates, framework, the desk's own code, idle) and the desk's hottest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from tests.bench.bench_app import BARE_POST  # noqa: E402
from tests.bench.harness import (  # noqa: E402
    BENCH_DIR,
    PG_SERVER,
    Server,
    cpu_seconds,
    print_profile,
    profiled,
    scratch_database,
    summary,
    wrk,
)
from web.antom import signing  # noqa: E402
from web.antom.keys import generate_private_key, private_key_pem, public_key_pem  # noqa: E402
from web.db import make_engine, migrate, session_scope  # noqa: E402
from web.settings import normalise_database_url  # noqa: E402

CLIENT_ID = "BENCH_CLIENT"
PATH = "/webhooks/antom"


async def seed(url: str, n: int) -> list[str]:
    """n processing refunds (10 per payment), in two INSERT ... SELECTs."""
    tag = uuid.uuid4().hex[:8]
    engine = make_engine(url)
    async with session_scope(engine) as session:
        conn = await session.connection()
        payments = (n + 9) // 10
        await conn.execute(
            sa.text(
                "INSERT INTO payments (payment_id, payment_request_id, method, currency, "
                "amount_minor, captured_minor, refunded_minor, reserved_minor, refund_count, "
                "status, dispute_open, paid_at, created_at, updated_at) "
                "SELECT :tag || '-pay-' || g, :tag || '-preq-' || g, 'ALIPAY_CN', 'USD', "
                "1000, 1000, 0, 1000, 10, 'SUCCESS', false, :now, :now, :now "
                "FROM (WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
                "WHERE g < :count) SELECT g FROM s) AS gs"
            ),
            {"tag": tag, "count": payments, "now": time_now()},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO refunds (refund_request_id, payment_pk, currency, amount_minor, "
                "status, reason, reason_text, revision, external, attempts, outcome_unknown, "
                "unknown_inquiries, created_at, updated_at) "
                "SELECT :tag || '-r-' || g, p.id, 'USD', 100, 'processing', "
                "'customer_request', 'Customer request', 0, false, 1, false, 0, :now, :now "
                "FROM (WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s "
                "WHERE g < :last) SELECT g FROM s) AS gs "
                "JOIN payments p ON p.payment_id = :tag || '-pay-' || (1 + g / 10)"
            ),
            {"tag": tag, "last": n - 1, "now": time_now()},
        )
    await engine.dispose()
    return [f"{tag}-r-{g}" for g in range(n)]


def time_now() -> Any:
    from web.models import utcnow

    return utcnow()


async def counts(url: str, rrids: list[str]) -> tuple[int, int, int]:
    """(settled refunds, inbox rows, succeeded transitions) for these refunds."""
    prefix = rrids[0].rsplit("-r-", 1)[0] + "-r-%"
    engine = make_engine(url)
    async with engine.connect() as conn:
        settled = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM refunds WHERE refund_request_id LIKE :p "
                    "AND status = 'succeeded'"
                ),
                {"p": prefix},
            )
        ).scalar_one()
        inbox = (
            await conn.execute(
                sa.text("SELECT count(*) FROM webhook_events WHERE refund_request_id LIKE :p"),
                {"p": prefix},
            )
        ).scalar_one()
        moved = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM refund_events e JOIN refunds r ON r.id = e.refund_pk "
                    "WHERE r.refund_request_id LIKE :p AND e.to_status = 'succeeded'"
                ),
                {"p": prefix},
            )
        ).scalar_one()
    await engine.dispose()
    return int(settled), int(inbox), int(moved)


def write_requests(path: Path, rrids: list[str], antom_private: Any) -> None:
    """One signed notification per line (requests.lua's format); signed before the clock."""
    with path.open("w") as out:
        for rrid in rrids:
            body = json.dumps(
                {
                    "notifyType": "REFUND_RESULT",
                    "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "ok"},
                    "refundStatus": "SUCCESS",
                    "refundRequestId": rrid,
                    "refundId": f"antom-{rrid}",
                    "refundAmount": {"currency": "USD", "value": "100"},
                    "refundTime": "2026-11-25T12:00:00+08:00",
                },
                separators=(",", ":"),
            ).encode()
            when = str(int(time.time() * 1000))
            value = signing.sign(antom_private, uri=PATH, client_id=CLIENT_ID, time=when, body=body)
            headers = "|".join(
                [
                    "Content-Type: application/json",
                    f"client-id: {CLIENT_ID}",
                    f"request-time: {when}",
                    f"signature: {signing.signature_header(value)}",
                ]
            )
            out.write(f"POST\t{PATH}\t{headers}\t{body.decode()}\n")


def bare_requests(path: Path, source: Path) -> None:
    """The same bodies to the bare handler (it ignores the signature headers)."""
    with source.open() as lines, path.open("w") as out:
        for line in lines:
            _method, _path, headers, body = line.rstrip("\n").split("\t", 3)
            out.write(f"POST\t{BARE_POST}\t{headers}\t{body}")
            out.write("\n")


def one_run(
    url: str, n: int, workers: int, connections: int, tmp: Path, profile: Path | None = None
) -> dict[str, float]:
    antom_key, merchant_key = generate_private_key(), generate_private_key()
    rrids = asyncio.run(seed(url, n))
    hooks, bare = tmp / "hooks.txt", tmp / "bare.txt"
    write_requests(hooks, rrids, antom_key)
    bare_requests(bare, hooks)
    env = {
        "DATABASE_URL": url,
        "APP_ENV": "development",
        "PUBLIC_BASE_URL": "http://127.0.0.1",
        "ANTOM_GATEWAY_URL": "http://127.0.0.1:9",
        "ANTOM_CLIENT_ID": CLIENT_ID,
        "ANTOM_MERCHANT_PRIVATE_KEY": private_key_pem(merchant_key),
        "ANTOM_PUBLIC_KEY": public_key_pem(antom_key.public_key()),
        "REFUND_DESK_POLLER": "off",
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING",
    }
    script = BENCH_DIR / "requests.lua"
    threads = 2
    with Server(env, workers=workers) as server:
        # Warm up both paths: connections, imports, caches (the bare handler, a few
        # refused webhooks: they cost a rejected_webhooks row, not a notification).
        wrk(server.base, script, [str(bare), str(threads), "cycle"], duration_s=2)
        base = wrk(
            server.base, script, [str(bare), str(threads), "cycle"],
            connections=connections, duration_s=max(3, n // 1000),
        )  # fmt: skip
        with profiled(server.pid, profile, children=True):
            cpu0 = cpu_seconds(server.pid)
            hook = wrk(
                server.base, script, [str(hooks), str(threads), "once"], connections=connections
            )
            cpu = cpu_seconds(server.pid) - cpu0
    settled, inbox, moved = asyncio.run(counts(url, rrids))
    lost = n - min(settled, inbox, moved)
    print(
        f"  bare {base.rate:8.1f} req/s p50 {base.p50_ms:6.1f} ms | webhook {hook.rate:7.1f} "
        f"req/s p50 {hook.p50_ms:6.1f} ms p99 {hook.p99_ms:6.1f} ms non-2xx {hook.non_2xx} | "
        f"ratio {hook.rate / base.rate:.3f} | CPU {cpu / n * 1000:.2f} ms/notification | "
        f"stored {inbox} settled {settled} transitions {moved} lost {lost}",
        flush=True,
    )
    return {
        "ratio": hook.rate / base.rate,
        "bare": base.rate,
        "hook": hook.rate,
        "cpu_ms": cpu / n * 1000,
        "lost": lost + hook.non_2xx + (moved - settled if moved > settled else 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="notifications per run (default 2000)")
    parser.add_argument("-c", type=int, default=50, help="connections (default 50)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (default 1)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--database-url", default=PG_SERVER, help="PostgreSQL server")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the server during the last run, raw stacks here"
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        if args.sqlite:
            url = normalise_database_url(f"sqlite:///{tmp}/bench.sqlite3", Path(tmp))
            migrate(url)
        else:
            url = stack.enter_context(scratch_database(args.database_url))
        print(
            f"webhook ingest: {url.split('://')[0]}, {args.n} notifications x {args.runs} runs, "
            f"{args.c} connections, {args.workers} worker(s)",
            flush=True,
        )
        for run in range(args.runs):
            last = run == args.runs - 1
            profile = args.profile if last else None
            results.append(one_run(url, args.n, args.workers, args.c, Path(tmp), profile))
    print(summary("bare handler, req/s", [r["bare"] for r in results]))
    print(summary("webhook ingest, req/s", [r["hook"] for r in results]))
    print(summary("webhook / bare throughput", [r["ratio"] for r in results]))
    print(summary("server CPU per notification, ms", [r["cpu_ms"] for r in results]))
    lost = sum(int(r["lost"]) for r in results)
    print(f"{'lost (not stored+settled once, or non-2xx)':<44} {lost}")
    if args.profile:
        print_profile("the server during the last run's webhooks", args.profile)
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.exit(main())
