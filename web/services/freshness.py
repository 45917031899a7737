"""What changed on an open list: newer rows, and the shown rows as they are now.

The read side of live lists (no Litestar). A list page keeps what it shows until the
agent asks for more: it re-renders the rows it has on screen from the database, in the
order it shows them, and counts the rows that arrived since it was rendered ("3 new
refunds — show"); it never slips new rows in under the reader.

"Arrived since" is "has a larger id than the newest row when the page was rendered"
(``newest_*_id``): ids grow with every insert, whatever the list's sort order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Payment, Refund, User
from web.services.listing import (
    PaymentFilters,
    RefundFilters,
    RefundRow,
    _payment_where,
    _refund_where,
)

# Beyond this the bar says "50+ new": counting further would read the whole table.
NEW_CAP = 50
MAX_SHOWN = 200

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Fresh(Generic[T]):
    """A list's shown rows re-read, and how many rows arrived since ``since``."""

    rows: list[T]
    # Ids of shown rows that no longer match the list's filters (a settled refund on a
    # "processing" worklist): still shown, marked, until the agent reloads the list.
    stale_ids: set[int]
    new_count: int
    new_capped: bool
    since: int

    @property
    def new_label(self) -> str:
        return f"{NEW_CAP}+" if self.new_capped else str(self.new_count)


async def newest_payment_id(session: AsyncSession) -> int:
    return int((await session.exec(select(sa.func.max(col(Payment.id))))).one() or 0)


async def newest_refund_id(session: AsyncSession) -> int:
    return int((await session.exec(select(sa.func.max(col(Refund.id))))).one() or 0)


async def _count_newer(
    session: AsyncSession, model: type[Payment] | type[Refund], where: list[sa.ColumnElement[bool]]
) -> tuple[int, bool]:
    limited = select(col(model.id)).where(*where).limit(NEW_CAP + 1).subquery()
    total = int((await session.exec(select(sa.func.count()).select_from(limited))).one())
    return min(total, NEW_CAP), total > NEW_CAP


async def _matching(
    session: AsyncSession,
    model: type[Payment] | type[Refund],
    where: list[sa.ColumnElement[bool]],
    ids: Sequence[int],
) -> set[int]:
    if not ids:
        return set()
    found = await session.exec(select(col(model.id)).where(col(model.id).in_(ids), *where))
    return {int(pk) for pk in found.all() if pk is not None}


async def fresh_payments(
    session: AsyncSession, f: PaymentFilters, shown: Sequence[int], since: int
) -> Fresh[Payment]:
    ids = list(dict.fromkeys(shown))[:MAX_SHOWN]
    where = _payment_where(f)
    found = (await session.exec(select(Payment).where(col(Payment.id).in_(ids)))).all()
    by_id = {p.id: p for p in found if p.id is not None}
    count, capped = await _count_newer(session, Payment, [*where, col(Payment.id) > since])
    matching = await _matching(session, Payment, where, ids)
    return Fresh(
        rows=[by_id[pk] for pk in ids if pk in by_id],
        stale_ids=set(by_id) - matching,
        new_count=count,
        new_capped=capped,
        since=since,
    )


async def fresh_refunds(
    session: AsyncSession, f: RefundFilters, shown: Sequence[int], since: int
) -> Fresh[RefundRow]:
    ids = list(dict.fromkeys(shown))[:MAX_SHOWN]
    where = _refund_where(f)
    refunds = {
        r.id: r for r in (await session.exec(select(Refund).where(col(Refund.id).in_(ids)))).all()
    }
    payment_ids = {r.payment_pk for r in refunds.values()}
    payments = {
        p.id: p
        for p in (await session.exec(select(Payment).where(col(Payment.id).in_(payment_ids)))).all()
    }
    agent_ids = {r.agent_id for r in refunds.values() if r.agent_id}
    agents = {
        u.id: u for u in (await session.exec(select(User).where(col(User.id).in_(agent_ids)))).all()
    }
    rows = [
        RefundRow(r, payments[r.payment_pk], agents.get(r.agent_id) if r.agent_id else None)
        for pk in ids
        if (r := refunds.get(pk)) is not None
    ]
    count, capped = await _count_newer(session, Refund, [*where, col(Refund.id) > since])
    matching = await _matching(session, Refund, where, ids)
    return Fresh(
        rows=rows,
        stale_ids={pk for pk in refunds if pk is not None} - matching,
        new_count=count,
        new_capped=capped,
        since=since,
    )
