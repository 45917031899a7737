"""CSV exports of a filtered refunds or payments list, streamed.

No Litestar here: the route records the export in the audit trail and streams what
``refund_rows``/``payment_rows`` yield. Rows are read in keyset batches
(``listing.batches``, plain rows, no ORM objects) and written out batch by batch, so memory stays
flat however many rows there are (a million in tests/services/test_exports.py). Amounts
are in major units with their currency beside them; times are in UTC and in the
exporting person's time zone.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import format_plain
from web.db import session_scope
from web.models import Payment, Refund, User
from web.rules.review import final_at
from web.services import audit, listing
from web.services.audit import Actor
from web.services.listing import PaymentFilters, RefundFilters
from web.timezones import zone

BATCH = 1000

REFUND_COLUMNS = (
    "refund_request_id",
    "antom_refund_id",
    "payment_id",
    "payment_request_id",
    "method",
    "currency",
    "amount",
    "status",
    "reason_code",
    "reason",
    "origin",
    "agent",
    "approver",
    "created_utc",
    "created_local",
    "final_utc",
    "final_local",
    "time_zone",
    "acquirer_reference_no",
)
PAYMENT_COLUMNS = (
    "payment_id",
    "payment_request_id",
    "reference_order_id",
    "method",
    "status",
    "currency",
    "amount",
    "captured",
    "refunded",
    "in_flight",
    "refund_count",
    "paid_utc",
    "paid_local",
    "created_utc",
    "created_local",
    "time_zone",
)


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _local(value: datetime | None, zone_name: str) -> str:
    return value.astimezone(zone(zone_name)).isoformat(timespec="seconds") if value else ""


def _csv(rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def export_name(kind: str, at: datetime) -> str:
    return f"{kind}-{at.strftime('%Y%m%d-%H%M%S')}.csv"


async def _people(session: AsyncSession) -> dict[int, str]:
    """Everyone's email by id (staff accounts are few: read once per export)."""
    users = (await session.exec(select(User.id, User.email))).all()
    return {pk: email for pk, email in users if pk is not None}


def _major(minor: int, places: int) -> str:
    """``1234, 2`` → ``12.34``: major units by integer arithmetic (no Decimal per row)."""
    if places == 0:
        return str(minor)
    sign, value = ("-", -minor) if minor < 0 else ("", minor)
    whole, part = divmod(value, 10**places)
    return f"{sign}{whole}.{part:0{places}d}"


def _amount(minor: int, currency: str) -> str:
    return _major(minor, _places(currency))


@functools.cache
def _places(currency: str) -> int:
    return len(format_plain(0, currency).partition(".")[2])


_REFUND_SELECT = (
    col(Refund.id),
    col(Refund.created_at),
    col(Refund.refund_request_id),
    col(Refund.refund_id),
    col(Payment.payment_id),
    col(Payment.payment_request_id),
    col(Payment.method),
    col(Refund.currency),
    col(Refund.amount_minor),
    col(Refund.status),
    col(Refund.reason),
    col(Refund.reason_text),
    col(Refund.external),
    col(Refund.agent_id),
    col(Refund.decided_by),
    col(Refund.refunded_at),
    col(Refund.decided_at),
    col(Refund.updated_at),
    col(Refund.acquirer_reference_no),
)


async def refund_rows(engine: AsyncEngine, f: RefundFilters) -> AsyncIterator[bytes]:
    """The header, then every refund matching ``f`` newest first, as CSV bytes."""
    yield _csv([REFUND_COLUMNS])
    async with session_scope(engine) as session:
        people = await _people(session)
        joins = [(Payment, col(Payment.id) == col(Refund.payment_pk))]
        async for batch in listing.batches(
            session, Refund, listing.refund_where(f), _REFUND_SELECT, BATCH, joins
        ):
            lines = []
            for r in batch:
                done = final_at(
                    str(r.status),
                    refunded_at=r.refunded_at,
                    decided_at=r.decided_at,
                    updated_at=r.updated_at,
                )
                lines.append(
                    (
                        r.refund_request_id,
                        r.refund_id or "",
                        r.payment_id,
                        r.payment_request_id,
                        r.method,
                        r.currency,
                        _amount(r.amount_minor, r.currency),
                        r.status,
                        r.reason,
                        r.reason_text,
                        "external" if r.external else "desk",
                        people.get(r.agent_id or 0, ""),
                        people.get(r.decided_by or 0, ""),
                        _utc(r.created_at),
                        _local(r.created_at, f.zone),
                        _utc(done),
                        _local(done, f.zone),
                        f.zone,
                        r.acquirer_reference_no or "",
                    )
                )
            yield _csv(lines)


_PAYMENT_SELECT = (
    col(Payment.id),
    col(Payment.created_at),
    col(Payment.payment_id),
    col(Payment.payment_request_id),
    col(Payment.reference_order_id),
    col(Payment.method),
    col(Payment.status),
    col(Payment.currency),
    col(Payment.amount_minor),
    col(Payment.captured_minor),
    col(Payment.refunded_minor),
    col(Payment.reserved_minor),
    col(Payment.refund_count),
    col(Payment.paid_at),
)


async def payment_rows(engine: AsyncEngine, f: PaymentFilters) -> AsyncIterator[bytes]:
    """The header, then every payment matching ``f`` newest first, as CSV bytes."""
    yield _csv([PAYMENT_COLUMNS])
    async with session_scope(engine) as session:
        async for batch in listing.batches(
            session, Payment, listing.payment_where(f), _PAYMENT_SELECT, BATCH
        ):
            yield _csv(
                (
                    p.payment_id,
                    p.payment_request_id,
                    p.reference_order_id or "",
                    p.method,
                    p.status,
                    p.currency,
                    _amount(p.amount_minor, p.currency),
                    _amount(p.captured_minor, p.currency),
                    _amount(p.refunded_minor, p.currency),
                    _amount(p.reserved_minor, p.currency),
                    p.refund_count,
                    _utc(p.paid_at),
                    _local(p.paid_at, f.zone),
                    _utc(p.created_at),
                    _local(p.created_at, f.zone),
                    f.zone,
                )
                for p in batch
            )


async def record_export(
    session: AsyncSession, actor: Actor, kind: str, params: dict[str, str], zone_name: str
) -> None:
    """One audit row per export: what was exported and with which filters."""
    await audit.record(
        session,
        audit.Action.EXPORTED,
        actor,
        object_type=kind,
        detail={"filters": params, "format": "csv", "time_zone": zone_name},
    )
