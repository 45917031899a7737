"""Benchmark: the payments and refunds list pages on a big PostgreSQL database.

Not a pytest module (no ``test_`` prefix). Run it by hand::

    uv run python tests/bench/list_pages.py                       # smoke: 3k payments, 10k refunds
    uv run python tests/bench/list_pages.py --payments 300000 --refunds 1000000

It creates a scratch database on the server in ``--database-url``, fills it with
``generate_series`` (one INSERT ... SELECT per table, no Python row loop; the trigram
search index is built after the rows, as ``CREATE INDEX`` on a full table), builds the
app with ``create_app``, signs in, and for each scenario prints the p50/p95 time of the
whole page request (routing, auth, queries, template) next to the p50/p95 of the bare
SQL query the page's rows need, and their ratio. The database is dropped at the end
unless ``--keep`` is given. ``--profile DIR`` then samples another ``PROFILE_REQUESTS`` of each
scenario's page requests with py-spy and prints where the app's side of them went
(templates, database, framework, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import sqlalchemy as sa
from litestar.testing import AsyncTestClient
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex
from sqlmodel import SQLModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.harness import print_profile, profiled
from web.app import create_app
from web.db import make_engine, session_scope
from web.models import TRIGRAM_INDEXES, search_document
from web.services.listing import PAGE_SIZE, Cursor, _time_key
from web.services.users import create_user
from web.settings import Settings

PASSWORD = "benchmark password 1234"
PROFILE_REQUESTS = 200  # per scenario: about a thousand samples of a 25 ms page
METHODS = ["ALIPAY_CN", "ALIPAY_HK", "GCASH", "DANA", "KAKAOPAY", "TRUEMONEY", "CARD"]
CURRENCIES = ["USD", "JPY", "HKD", "PHP", "KRW"]


def conninfo(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql://", url)


def fill_sql(payments: int, refunds: int) -> list[str]:
    methods = "ARRAY[" + ",".join(f"'{m}'" for m in METHODS) + "]"
    currencies = "ARRAY[" + ",".join(f"'{c}'" for c in CURRENCIES) + "]"
    return [
        # 20 agents to spread refunds over.
        """INSERT INTO users (email, name, role, password_hash, active, session_version, created_at)
           SELECT 'bench' || g || '@desk.test', 'Bench Agent ' || g, 'agent', 'x', true, 1, now()
           FROM generate_series(1, 20) g""",
        # Created times step 20 s but are cut to the minute: three payments share each
        # timestamp, so the keyset tie-break on id is exercised at scale.
        f"""INSERT INTO payments (payment_id, payment_request_id, reference_order_id, buyer_email,
               buyer_name, method, currency, amount_minor, captured_minor, refunded_minor,
               reserved_minor, refund_count, status, dispute_open, paid_at, created_at, updated_at)
           SELECT '2026BENCH' || lpad(g::text, 10, '0'), 'REQ-' || g, 'ORDER-' || g,
                  'buyer' || (g % 100000) || '@example.com', 'Buyer ' || (g % 100000),
                  ({methods})[1 + g % {len(METHODS)}], ({currencies})[1 + g % {len(CURRENCIES)}],
                  100 + (g * 7919) % 100000, 100 + (g * 7919) % 100000, 0, 0, 0,
                  CASE WHEN g % 50 = 0 THEN 'FAIL' ELSE 'SUCCESS' END, false,
                  date_trunc('minute', timestamptz '2025-01-01' + g * interval '20 seconds'),
                  date_trunc('minute', timestamptz '2025-01-01' + g * interval '20 seconds'),
                  now()
           FROM generate_series(1::bigint, {payments}) g""",
        f"""INSERT INTO refunds (refund_request_id, payment_pk, refund_id, currency, amount_minor,
               status, reason, reason_text, agent_id, external, revision, attempts,
               outcome_unknown, unknown_inquiries, created_at, updated_at)
           SELECT 'rd_bench_' || g, p.id, 'REF' || g, p.currency, 1 + g % 50,
                  (ARRAY['succeeded','succeeded','succeeded','succeeded','succeeded',
                         'succeeded','succeeded','processing','failed','pending'])[1 + g % 10],
                  'customer_request', 'Customer request',
                  CASE WHEN g % 25 = 0 THEN NULL ELSE 1 + g % 20 END,
                  g % 25 = 0, 0, 1, false, 0,
                  p.created_at + ((g % 600) * interval '1 minute'), now()
           FROM generate_series(1::bigint, {refunds}) g
           JOIN payments p ON p.id = 1 + (g * 7) % {payments}""",
        "ANALYZE",
    ]


@dataclass
class Scenario:
    name: str
    url: str
    sql: str
    # The refunds list's exact totals per currency for the same filters (its aggregate).
    totals_sql: str | None = None
    # The same page read the naive way (OFFSET): what keyset pagination saves.
    offset_sql: str | None = None


def totals_sql(where: str = "") -> str:
    return (
        "SELECT currency, count(*), coalesce(sum(amount_minor), 0) FROM refunds "
        f"{where} GROUP BY currency ORDER BY currency"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def timed(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    await fn()  # warm caches and prepared plans
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def cursor_at(conn: psycopg.Connection, table: str, page: int, where: str = "") -> tuple[str, int]:
    """The next-link cursor that leads to ``page`` (newest first), clamped to the last page.

    Found with OFFSET once, here in setup: the page itself is then read by keyset.
    """
    total = conn.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0]
    page = max(2, min(page, (total - 1) // PAGE_SIZE + 1))
    row = conn.execute(
        f"SELECT created_at, id FROM {table} {where} "
        "ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
        ((page - 1) * PAGE_SIZE - 1,),
    ).fetchone()
    return Cursor("time", _time_key(row[0]), row[1]).encode(), page


async def run(args: argparse.Namespace) -> None:
    profiles: dict[str, Path] = {}
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("web").setLevel(logging.CRITICAL)
    server = conninfo(args.database_url)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_conninfo = server.rsplit("/", 1)[0] + f"/{name}"
    url = db_conninfo.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        started = time.perf_counter()
        with psycopg.connect(db_conninfo, autocommit=True) as conn:
            # Built once over the full table below: much faster than row by row.
            for index in TRIGRAM_INDEXES:
                conn.execute(f"DROP INDEX {index.name}")  # type: ignore[arg-type]
            for statement in fill_sql(args.payments, args.refunds):
                conn.execute(statement)  # type: ignore[arg-type]
            filled = time.perf_counter()
            for index in TRIGRAM_INDEXES:
                ddl = CreateIndex(index).compile(dialect=postgresql.dialect())
                conn.execute(str(ddl))  # type: ignore[call-overload]
            conn.execute("ANALYZE payments")
        print(
            f"filled {args.payments:,} payments and {args.refunds:,} refunds "
            f"in {filled - started:.1f} s; search index built in "
            f"{time.perf_counter() - filled:.1f} s"
        )
        async with session_scope(engine) as session:
            user = await create_user(
                session, email="lead@bench.test", name="Bench Lead", role="lead", password=PASSWORD
            )
            assert user.id is not None

        with psycopg.connect(db_conninfo, autocommit=True) as conn:
            pay_cursor, pay_page = cursor_at(conn, "payments", args.deep_page)
            ref_cursor, ref_page = cursor_at(conn, "refunds", args.deep_page)
            pay_key = Cursor.decode(pay_cursor, "time")
            ref_key = Cursor.decode(ref_cursor, "time")
            assert pay_key and ref_key
        limit = PAGE_SIZE + 1
        with psycopg.connect(db_conninfo, autocommit=True) as conn:
            newest = conn.execute("SELECT max(created_at) FROM refunds").fetchone()[0]
        last_week = (newest - timedelta(days=6)).date().isoformat()
        # The expression the trigram index is built on, as the list query writes it.
        document = search_document().compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
        seek = "(created_at, id) < (to_timestamp({k} / 1e6), {i})"
        scenarios = [
            Scenario(
                "payments, first page",
                "/payments",
                f"SELECT * FROM payments ORDER BY created_at DESC, id DESC LIMIT {limit}",
            ),
            Scenario(
                "payments, JPY + succeeded",
                "/payments?currency=JPY&status=SUCCESS",
                "SELECT * FROM payments WHERE currency = 'JPY' AND status = 'SUCCESS' "
                f"ORDER BY created_at DESC, id DESC LIMIT {limit}",
            ),
            *(
                Scenario(
                    f"payments, {what}",
                    f"/payments?q={quote(q)}",
                    f"SELECT * FROM payments WHERE {document} LIKE '%{q.lower()}%' "
                    f"ORDER BY created_at DESC, id DESC LIMIT {limit}",
                )
                for what, q in (
                    # The middle of each searched field (web/services/listing.py).
                    ("email fragment", "er4242@exa"),
                    ("name fragment", "yer 4242"),
                    ("order ref fragment", "DER-4242"),
                    ("id fragment", "CH0000242"),
                    # In every payment: the newest page, and the capped total.
                    ("fragment in all", "example.com"),
                )
            ),
            Scenario(
                f"payments, page {pay_page:,}",
                f"/payments?cursor={pay_cursor}",
                "SELECT * FROM payments WHERE "
                + seek.format(k=pay_key.key, i=pay_key.id)
                + f" ORDER BY created_at DESC, id DESC LIMIT {limit}",
                offset_sql=f"SELECT * FROM payments ORDER BY created_at DESC, id DESC "
                f"OFFSET {(pay_page - 1) * PAGE_SIZE} LIMIT {limit}",
            ),
            Scenario(
                "refunds, first page",
                "/refunds",
                f"SELECT * FROM refunds ORDER BY created_at DESC, id DESC LIMIT {limit}",
                totals_sql(),
            ),
            Scenario(
                "refunds, processing",
                "/refunds?status=processing",
                "SELECT * FROM refunds WHERE status = 'processing' "
                f"ORDER BY created_at DESC, id DESC LIMIT {limit}",
                totals_sql("WHERE status = 'processing'"),
            ),
            Scenario(
                "refunds, last 7 days",
                f"/refunds?date_from={last_week}",
                f"SELECT * FROM refunds WHERE created_at >= '{last_week}' "
                f"ORDER BY created_at DESC, id DESC LIMIT {limit}",
                totals_sql(f"WHERE created_at >= '{last_week}'"),
            ),
            Scenario(
                f"refunds, page {ref_page:,}",
                f"/refunds?cursor={ref_cursor}",
                "SELECT * FROM refunds WHERE "
                + seek.format(k=ref_key.key, i=ref_key.id)
                + f" ORDER BY created_at DESC, id DESC LIMIT {limit}",
                offset_sql=f"SELECT * FROM refunds ORDER BY created_at DESC, id DESC "
                f"OFFSET {(ref_page - 1) * PAGE_SIZE} LIMIT {limit}",
            ),
        ]

        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                database_url=url,
                secret_key="bench-only-key-2f9c1e8d7a6b5c4d3e2f1a0b9c8d7e6f",
                environment="test",
                data_dir=Path(tmp),
            )
            app = create_app(settings)
            async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
                login = await client.get("/login")
                token = re.search(r'name="_csrf_token" value="([^"]+)"', login.text)
                assert token
                signed = await client.post(
                    "/login",
                    data={
                        "_csrf_token": token.group(1),
                        "email": "lead@bench.test",
                        "password": PASSWORD,
                    },
                    follow_redirects=False,
                )
                assert signed.status_code == 303, signed.text

                print(
                    f"\n{'scenario':<28} {'page p50':>9} {'p95':>7} {'SQL p50':>9} {'p95':>7}"
                    f" {'page/SQL':>9}  plan"
                )
                for sc in scenarios:

                    async def page(url: str = sc.url) -> None:
                        answer = await client.get(url)
                        assert answer.status_code == 200, answer.text[:500]

                    async def bare(sql: str = sc.sql) -> None:
                        async with engine.connect() as conn:
                            (await conn.execute(sa.text(sql))).fetchall()

                    page_ms = await timed(page, args.runs)
                    if args.profile:
                        # A pass of its own, so that sampling does not slow the timed one.
                        slug = re.sub(r"[^a-z0-9]+", "-", sc.name.lower()).strip("-")
                        profiles[sc.name] = args.profile / f"{slug}.txt"
                        with profiled(os.getpid(), profiles[sc.name]):
                            await timed(page, PROFILE_REQUESTS)
                    sql_ms = await timed(bare, args.runs)
                    async with engine.connect() as conn:
                        plan = (await conn.execute(sa.text("EXPLAIN " + sc.sql))).fetchall()
                    lines = [r[0].strip().lstrip("-> ") for r in plan]
                    top = next(
                        (line for line in lines if "Index" in line),
                        next((line for line in lines if "Scan" in line), lines[0]),
                    ).split("  (")[0]
                    p50, s50 = statistics.median(page_ms), statistics.median(sql_ms)
                    print(
                        f"{sc.name:<28} {p50:>7.1f}ms {percentile(page_ms, 0.95):>5.1f}ms"
                        f" {s50:>7.2f}ms {percentile(sql_ms, 0.95):>5.2f}ms"
                        f" {p50 / s50:>8.1f}x  {top}"
                    )

                    async def beside(
                        label: str, sql: str, note: str, digits: int, page_p50: float = p50
                    ) -> None:
                        """Another query's time, as a row under the page it belongs to."""
                        ms = await timed(lambda: bare(sql), args.runs)
                        m50 = statistics.median(ms)
                        print(
                            f"{label:<28} {'':>9} {'':>7}"
                            f" {m50:>7.2f}ms {percentile(ms, 0.95):>5.2f}ms"
                            f" {m50 / page_p50:>8.{digits}f}x {note}"
                        )

                    if sc.totals_sql is not None:
                        await beside("  its totals per currency", sc.totals_sql, "of the page", 2)
                    if sc.offset_sql is not None:
                        await beside(
                            "  the same rows by OFFSET", sc.offset_sql, "the whole page", 1
                        )
        await engine.dispose()
        for label, raw in profiles.items():
            # The app's side only: the in-process client's own work is left out.
            print_profile(label, raw, within="Litestar.__call__")
    finally:
        if not args.keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            print(f"kept database {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server URL; a scratch database is created next to it",
    )
    parser.add_argument("--payments", type=int, default=3_000)
    parser.add_argument("--refunds", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20, help="timed requests per scenario")
    parser.add_argument("--deep-page", type=int, default=1_000, help="the far page to time")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--profile", type=Path, help="py-spy each scenario's page requests; raw stacks here"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
