"""Child process for tests/services/test_exports.py: export N refunds from a fresh SQLite
database through the real streaming export and report its peak memory.

Prints one JSON line: rows written, peak RSS (KiB, ``ru_maxrss``) after the first
``--warm`` rows, and at the end. Run by the test in its own process so nothing else in
the test run shares the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.schema import create_schema
from web.services import exports
from web.services.listing import RefundFilters


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


FILL = [
    """INSERT INTO users (email, name, role, password_hash, active, session_version, created_at)
       VALUES ('a@x.test', 'A', 'agent', 'x', 1, 1, '2026-01-01 00:00:00')""",
    """WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1000)
       INSERT INTO payments (payment_id, payment_request_id, method, currency, amount_minor,
           captured_minor, refunded_minor, reserved_minor, refund_count, status, dispute_open,
           created_at, updated_at)
       SELECT 'PAY' || n, 'REQ' || n, 'CARD', 'USD', 100000, 100000, 0, 0, 0, 'SUCCESS', 0,
              '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM g""",
    """WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :rows)
       INSERT INTO refunds (refund_request_id, payment_pk, refund_id, currency, amount_minor,
           status, reason, reason_text, agent_id, external, revision, attempts,
           outcome_unknown, unknown_inquiries, created_at, updated_at, refunded_at)
       SELECT 'rr-' || n, 1 + n % 1000, 'REF' || n, 'USD', 1 + n % 5000, 'succeeded',
              'duplicate', 'Duplicate charge', 1, 0, 0, 1, 0, 0,
              datetime('2026-01-01', '+' || n || ' seconds') || '.000000',
              datetime('2026-01-01', '+' || n || ' seconds') || '.000000',
              datetime('2026-01-01', '+' || (n + 60) || ' seconds') || '.000000'
       FROM g""",
]


async def main(db: Path, rows: int, warm: int) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    async with engine.begin() as conn:
        await create_schema(conn)
        for statement in FILL:
            await conn.execute(sa.text(statement), {"rows": rows})
    written = -1  # the header line is not a row
    warm_peak = 0
    async for chunk in exports.refund_rows(engine, RefundFilters(zone="Europe/Paris")):
        written += chunk.count(b"\r\n")
        if not warm_peak and written >= warm:
            warm_peak = peak_kib()
    await engine.dispose()
    print(json.dumps({"rows": written, "warm_kib": warm_peak, "end_kib": peak_kib()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--warm", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.db, args.rows, args.warm))
