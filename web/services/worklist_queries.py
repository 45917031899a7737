"""Reading the worklists: per-queue counts, one queue's items a page at a time, one item
with its thread. The read side of web/services/worklists.py and alerts.py.

Items page through the list pages' own keyset cursors on (raised at, id)
(web/services/listing.py ``time_page``): open items oldest first (the backlog in the
order it came), closed ones newest first. Which queue an item is in comes from the one
table in web/rules/worklists.py, so a kind added later is listed without a change here.
No Litestar here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Alert, AlertNote, Payment, Refund, RefundStatus, User
from web.rules.access import Permission, can
from web.rules.worklists import FALLBACK_QUEUE, QUEUE_OF_KIND, QUEUES, Queue, queue_of
from web.services.listing import PAGE_SIZE, Page, _rows_by_id, time_page

Who = Literal["anyone", "mine", "unassigned"]
State = Literal["open", "closed"]


@dataclass(frozen=True, slots=True)
class WorklistFilters:
    queue: Queue = Queue.FAILED
    who: Who = "anyone"
    state: State = "open"
    cursor: str = ""

    def query_params(self, **changes: Any) -> dict[str, str]:
        f = replace(self, **changes)
        params = {
            "queue": str(f.queue),
            "who": "" if f.who == "anyone" else f.who,
            "show": "" if f.state == "open" else f.state,
            "cursor": f.cursor,
        }
        return {k: v for k, v in params.items() if v}


def worklist_filters(
    *, queue: str = "", who: str = "", state: str = "", cursor: str = ""
) -> WorklistFilters:
    """Filters from raw query-string values; unknown ones fall back to the defaults."""
    known = {q.value: q for q in Queue}
    return WorklistFilters(
        queue=known.get(queue.strip().lower(), Queue.FAILED),
        who=who if who in ("mine", "unassigned") else "anyone",  # type: ignore[arg-type]
        state="closed" if state == "closed" else "open",
        cursor=cursor.strip()[:200],
    )


def in_queue(queue: Queue) -> ColumnElement[bool]:
    """Items of ``queue``: the kinds the table sends there (the fallback queue also
    takes every kind the table does not name)."""
    kinds = [kind for kind, q in QUEUE_OF_KIND.items() if q is queue]
    clause: ColumnElement[bool] = col(Alert.kind).in_(kinds)
    if queue is FALLBACK_QUEUE:
        clause = sa.or_(clause, col(Alert.kind).not_in(list(QUEUE_OF_KIND)))
    return clause


async def queue_counts(session: AsyncSession) -> dict[Queue, int]:
    """Open items per queue (every queue, zero included); awaiting approval counts the
    refunds that wait."""
    counts = dict.fromkeys(QUEUES, 0)
    by_kind = await session.exec(
        select(Alert.kind, sa.func.count())
        .where(col(Alert.resolved_at).is_(None))
        .group_by(col(Alert.kind))
    )
    for kind, n in by_kind.all():
        counts[queue_of(kind)] += int(n)
    awaiting = await session.exec(
        select(sa.func.count())
        .select_from(Refund)
        .where(col(Refund.status) == RefundStatus.AWAITING_APPROVAL)
    )
    counts[Queue.APPROVAL] = int(awaiting.one())
    return counts


async def assigned_to_count(session: AsyncSession, user_pk: int | None) -> int:
    """Open items assigned to this person (the navigation's "mine")."""
    if user_pk is None:
        return 0
    counted = (
        select(sa.func.count())
        .select_from(Alert)
        .where(col(Alert.resolved_at).is_(None), col(Alert.assignee_id) == user_pk)
    )
    return int((await session.exec(counted)).one())


@dataclass(frozen=True, slots=True)
class ItemRow:
    alert: Alert
    queue: Queue
    assignee: User | None
    notes: int


async def list_items(
    session: AsyncSession, f: WorklistFilters, viewer: User, *, page_size: int = PAGE_SIZE
) -> Page[ItemRow]:
    """One page of a (raised) queue's items, with who each is assigned to."""
    where = [in_queue(f.queue)]
    where.append(
        col(Alert.resolved_at).is_(None)
        if f.state == "open"
        else col(Alert.resolved_at).is_not(None)
    )
    if f.who == "mine":
        where.append(col(Alert.assignee_id) == viewer.id)
    elif f.who == "unassigned":
        where.append(col(Alert.assignee_id).is_(None))
    page = await time_page(
        session,
        select(Alert).where(*where),
        at=col(Alert.created_at),
        id_column=col(Alert.id),
        cursor=f.cursor,
        direction="asc" if f.state == "open" else "desc",
        page_size=page_size,
    )
    alerts = page.rows
    people = await _rows_by_id(session, User, {a.assignee_id for a in alerts if a.assignee_id})
    notes: dict[int, int] = {}
    if alerts:
        counted = await session.exec(
            select(AlertNote.alert_pk, sa.func.count())
            .where(col(AlertNote.alert_pk).in_([a.id for a in alerts]))
            .group_by(col(AlertNote.alert_pk))
        )
        notes = {int(pk): int(n) for pk, n in counted.all()}
    rows = [
        ItemRow(
            a,
            queue_of(a.kind),
            people.get(a.assignee_id) if a.assignee_id else None,
            notes.get(a.id or 0, 0),
        )
        for a in alerts
    ]
    return Page(rows, page.next_cursor, page.prev_cursor, page.total, page.total_capped)


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    note: AlertNote
    author: User | None


@dataclass(frozen=True, slots=True)
class ItemDetail:
    alert: Alert
    queue: Queue
    assignee: User | None
    closer: User | None
    refund: Refund | None
    payment: Payment | None
    thread: list[ThreadEntry]


async def item_detail(session: AsyncSession, alert_pk: int) -> ItemDetail | None:
    alert = await session.get(Alert, alert_pk, populate_existing=True)
    if alert is None:
        return None
    notes = (
        await session.exec(
            select(AlertNote).where(col(AlertNote.alert_pk) == alert_pk).order_by(col(AlertNote.id))
        )
    ).all()
    people = await _rows_by_id(
        session,
        User,
        {n.author_id for n in notes if n.author_id}
        | {pk for pk in (alert.assignee_id, alert.resolved_by) if pk},
    )
    return ItemDetail(
        alert=alert,
        queue=queue_of(alert.kind),
        assignee=people.get(alert.assignee_id) if alert.assignee_id else None,
        closer=people.get(alert.resolved_by) if alert.resolved_by else None,
        refund=await session.get(Refund, alert.refund_pk) if alert.refund_pk else None,
        payment=await session.get(Payment, alert.payment_pk) if alert.payment_pk else None,
        thread=[ThreadEntry(n, people.get(n.author_id) if n.author_id else None) for n in notes],
    )


async def assignees(session: AsyncSession) -> list[User]:
    """Who items may be assigned to: active people who see the worklists (staff are few)."""
    users = (await session.exec(select(User).order_by(col(User.name), col(User.id)))).all()
    return [u for u in users if can(u, Permission.VIEW_ALERTS)]
