"""Payments and refunds lists: search, filters, sort and keyset pagination.

No Litestar here: routes turn query parameters into the filter dataclasses below and
render what comes back.

Pagination is keyset ("seek"), never OFFSET: a page is "the next N rows after (key, id)"
in the sort order, which an index on (key, id) answers by reading N rows wherever the
page is, while OFFSET reads and throws away every earlier row (page 1,000 of a million
rows would scan 25,000 of them). The row id breaks ties, so rows with equal sort keys are
never duplicated or skipped between pages. Totals are capped for the same reason: an
exact COUNT(*) over a million rows reads them all on every page view.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Generic, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from web.antom.money import ANTOM_EXPONENTS
from web.models import (
    Alert,
    Payment,
    Refund,
    RefundEvent,
    RefundReason,
    RefundStatus,
    User,
    search_document,
)
from web.rules.refunds import METHOD_PROFILES
from web.timezones import valid_zone, zone

PAGE_SIZE = 25
# Totals above this are shown as "1,000+": counting further would read the whole table.
COUNT_CAP = 1000

SortKey = Literal["time", "amount"]
Direction = Literal["desc", "asc"]
DateField = Literal["created", "paid"]

PAYMENT_STATUSES = ("SUCCESS", "PROCESSING", "PENDING", "FAIL", "CANCELLED")
# A refund Antom paid and then took back (the settlement file's REFUND_REVERSAL): the
# settlement work gives refunds this status; the read side knows it by name only.
REVERSED = "reversed"
REFUND_STATUS_VALUES = (*(s.value for s in RefundStatus), REVERSED)
# Refund "kind": all of the payment's captured amount at once, or a part of it.
RefundKind = Literal["", "full", "partial"]

T = TypeVar("T")
M = TypeVar("M", Payment, Refund)


# ---------------------------------------------------------------- cursors


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in one ordering: the boundary row's sort key and id.

    ``before`` means "the page ending just before this row" (the previous link).
    """

    sort: str
    key: int | str
    id: int
    before: bool = False

    def encode(self) -> str:
        raw = json.dumps([self.sort, self.key, self.id, int(self.before)], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, sort: str) -> Cursor | None:
        """The cursor, or None when it is malformed or belongs to another ordering."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            s, key, id_, before = json.loads(raw)
        except (ValueError, binascii.Error, TypeError):
            return None
        if s != sort or not isinstance(id_, int) or not isinstance(key, int | str):
            return None
        if isinstance(key, bool) or isinstance(id_, bool):
            return None
        return cls(sort=s, key=key, id=id_, before=bool(before))


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    rows: list[T]
    next_cursor: str | None
    prev_cursor: str | None
    # Rows matching the filters, up to COUNT_CAP; ``total_capped`` says there are more.
    total: int
    total_capped: bool

    @property
    def total_label(self) -> str:
        return f"{COUNT_CAP:,}+" if self.total_capped else f"{self.total:,}"


def _time_key(value: datetime) -> int:
    """Microseconds since the epoch: exact, and JSON-safe inside a cursor."""
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_time_key(key: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=key)


@dataclass(frozen=True, slots=True)
class _Ordering:
    name: str
    column: Any  # the sort column (InstrumentedAttribute)
    id_column: Any
    is_time: bool

    def key_of(self, row: Any) -> int | str:
        value = getattr(row, self.column.key)
        return _time_key(value) if self.is_time else int(value)

    def bind(self, key: int | str) -> Any:
        if self.is_time:
            if not isinstance(key, int):
                raise ValueError("time cursor needs an integer key")
            return _from_time_key(key)
        return int(key)


async def _keyset_page(
    session: AsyncSession,
    base: SelectOfScalar[T],
    ordering: _Ordering,
    direction: Direction,
    cursor: Cursor | None,
    page_size: int,
) -> tuple[list[T], str | None, str | None]:
    """One page of ``base`` in (key, id) order, seeking from ``cursor``."""
    col, idc = ordering.column, ordering.id_column
    descending = direction == "desc"
    stmt = base
    # Going back reads the previous rows in the reverse order, then flips them.
    reverse = cursor is not None and cursor.before
    if cursor is not None:
        try:
            bound = ordering.bind(cursor.key)
        except (ValueError, OverflowError):
            cursor = None
        else:
            boundary = sa.tuple_(col, idc)
            value = sa.tuple_(sa.literal(bound, col.type), sa.literal(cursor.id, idc.type))
            after = boundary < value if descending else boundary > value
            before = boundary > value if descending else boundary < value
            stmt = stmt.where(before if reverse else after)
    read_desc = descending != reverse
    stmt = stmt.order_by(
        *((col.desc(), idc.desc()) if read_desc else (col.asc(), idc.asc()))
    ).limit(page_size + 1)
    rows = list((await session.exec(stmt)).all())
    more = len(rows) > page_size
    rows = rows[:page_size]
    if reverse:
        rows.reverse()

    def cur(row: Any, before: bool) -> str:
        return Cursor(ordering.name, ordering.key_of(row), row.id, before).encode()

    if not rows:
        return rows, None, None
    if reverse:
        has_next, has_prev = True, more
    else:
        has_next, has_prev = more, cursor is not None
    next_cursor = cur(rows[-1], False) if has_next else None
    prev_cursor = cur(rows[0], True) if has_prev else None
    return rows, next_cursor, prev_cursor


async def _capped_count(session: AsyncSession, base: SelectOfScalar[Any]) -> tuple[int, bool]:
    limited = (
        base.with_only_columns(sa.literal(1), maintain_column_froms=True)
        .order_by(None)
        .limit(COUNT_CAP + 1)
    )
    counted = select(sa.func.count()).select_from(limited.subquery())
    total = (await session.exec(counted)).one()
    return min(total, COUNT_CAP), total > COUNT_CAP


def _day_start(day: date, zone_name: str = "UTC") -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone(zone_name)).astimezone(UTC)


def date_range(
    column: Any, start: date | None, end: date | None, zone_name: str = "UTC"
) -> list[ColumnElement[bool]]:
    """Whole days in the reader's time zone (the days the pages show), ``end`` included;
    half-open so an index range scan answers it."""
    clauses: list[ColumnElement[bool]] = []
    if start is not None:
        clauses.append(column >= _day_start(start, zone_name))
    if end is not None:
        clauses.append(column < _day_start(end + timedelta(days=1), zone_name))
    return clauses


async def time_page(
    session: AsyncSession,
    base: SelectOfScalar[T],
    *,
    at: Any,
    id_column: Any,
    cursor: str,
    direction: Direction = "desc",
    page_size: int = PAGE_SIZE,
) -> Page[T]:
    """One keyset page of any ``base`` ordered by a time column ``at`` and its row id
    (the lists below, and other read sides such as web/services/audit_log.py), seeking
    from the encoded ``cursor``; with the capped total."""
    ordering = _Ordering("time", at, id_column, is_time=True)
    found = Cursor.decode(cursor, ordering.name)
    rows, nxt, prev = await _keyset_page(session, base, ordering, direction, found, page_size)
    total, capped = await _capped_count(session, base)
    return Page(rows, nxt, prev, total, capped)


async def batches(
    session: AsyncSession,
    model: type[Payment] | type[Refund],
    where: Sequence[ColumnElement[bool]],
    columns: Sequence[Any],
    size: int = 1000,
    joins: Sequence[tuple[Any, ColumnElement[bool]]] = (),
) -> AsyncIterator[list[Any]]:
    """``columns`` of every ``model`` row matching ``where``, newest first, ``size`` rows
    at a time: one keyset page after another on (created_at, id), so each query is an
    index range read of ``size`` rows however far in (exports, web/services/exports.py).
    Plain rows, not ORM objects: nothing accumulates in the session. ``columns`` must
    include the model's ``created_at`` and ``id``."""
    ordering = _ordering(model, "time")
    cursor: Cursor | None = None
    base: Any = sa.select(*columns).select_from(model)
    for target, on in joins:
        base = base.join(target, on)
    base = base.where(*where)
    while True:
        rows, nxt, _prev = await _keyset_page(session, base, ordering, "desc", cursor, size)
        if rows:
            yield rows
        if nxt is None:
            return
        cursor = Cursor.decode(nxt, ordering.name)


def _ordering(model: type[Payment] | type[Refund], sort: SortKey) -> _Ordering:
    """Both lists sort by creation time or amount, the row id breaking ties."""
    if sort == "amount":
        return _Ordering("amount", col(model.amount_minor), col(model.id), is_time=False)
    return _Ordering("time", col(model.created_at), col(model.id), is_time=True)


async def _list_page(
    session: AsyncSession,
    model: type[M],
    where: list[ColumnElement[bool]],
    f: PaymentFilters | RefundFilters,
    page_size: int,
) -> Page[M]:
    """One page of ``model`` rows matching ``where``, in ``f``'s order from ``f.cursor``."""
    base = select(model).where(*where)
    ordering = _ordering(model, f.sort)
    cursor = Cursor.decode(f.cursor, ordering.name)
    rows, nxt, prev = await _keyset_page(session, base, ordering, f.direction, cursor, page_size)
    total, capped = await _capped_count(session, base)
    return Page(rows, nxt, prev, total, capped)


def _order_params(sort: SortKey, direction: Direction, cursor: str) -> dict[str, str]:
    """The ordering part of a list's GET parameters; defaults are left out of links."""
    return {
        "sort": "" if sort == "time" else sort,
        "direction": "" if direction == "desc" else direction,
        "cursor": cursor,
    }


def _parse_order(sort: str, direction: str, cursor: str) -> dict[str, Any]:
    """The ordering filters from raw query-string values; unknown ones fall back."""
    return {
        "sort": _choice(sort, ("time", "amount"), "time"),
        "direction": _choice(direction, ("desc", "asc"), "desc"),
        "cursor": cursor.strip()[:200],
    }


@dataclass(frozen=True, slots=True)
class Choices:
    """Options for a filter form (kept together so templates get one object)."""

    statuses: Sequence[str]
    methods: Sequence[str] = field(default_factory=list)
    currencies: Sequence[str] = field(default_factory=list)
    agents: Sequence[User] = field(default_factory=list)
    # (code, label) pairs: every refund reason, retired ones too (old refunds keep them).
    reasons: Sequence[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------- payments


@dataclass(frozen=True, slots=True)
class PaymentFilters:
    q: str = ""
    status: str = ""
    method: str = ""
    currency: str = ""
    date_field: DateField = "created"
    date_from: date | None = None
    date_to: date | None = None
    # "yes": at least one refund row (any status); "no": none.
    has_refunds: Literal["", "yes", "no"] = ""
    sort: SortKey = "time"
    direction: Direction = "desc"
    cursor: str = ""
    # The reader's time zone: which days the date range means (not a query parameter).
    zone: str = "UTC"

    @property
    def active(self) -> bool:
        """Whether anything narrows the list (the empty-state message depends on it)."""
        return bool(
            self.q
            or self.status
            or self.method
            or self.currency
            or self.date_from
            or self.date_to
            or self.has_refunds
        )

    def query_params(self, **changes: Any) -> dict[str, str]:
        """The filters as GET parameters, for links that keep them (sort, pagination)."""
        f = replace(self, **changes)
        params = {
            "q": f.q,
            "status": f.status,
            "method": f.method,
            "currency": f.currency,
            "date_field": f.date_field if (f.date_from or f.date_to) else "",
            "date_from": f.date_from.isoformat() if f.date_from else "",
            "date_to": f.date_to.isoformat() if f.date_to else "",
            "has_refunds": f.has_refunds,
            **_order_params(f.sort, f.direction, f.cursor),
        }
        return {k: v for k, v in params.items() if v}


# Shorter fragments have no trigram for an index to look up (pg_trgm needs three
# characters), so they would read every payment; below this they match from the start.
MIN_FRAGMENT = 3
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lower_like(column: Any, pattern: str) -> ColumnElement[bool]:
    return sa.func.lower(column).like(pattern, escape="\\")


def search_text(q: str) -> str:
    """The search box's value as it is matched: trimmed, without control characters (the
    search document separates its fields with one, web/models.py)."""
    return _CONTROL.sub("", q).strip()


def payment_search_clause(q: str) -> ColumnElement[bool] | None:
    """What the single search box matches (the rules are in README, "Payments").

    From three characters on, any *fragment*, in any case, of the paymentId,
    paymentRequestId, order reference, buyer email or buyer name: ``chen`` finds
    ``mei.chen@example.com``, ``10233`` finds ``ORD-10233``. It is one
    ``search_document() LIKE '%chen%'`` over those fields (web/models.py), which the
    trigram GIN index on that expression answers on PostgreSQL, so it stays fast at a
    million payments; SQLite scans.

    One or two characters have no trigram to look up, so they match what B-trees can
    answer: an id or order reference exactly, an email or name from its start
    (``lower(col) LIKE 'ab%'`` on the ``text_pattern_ops`` indexes).
    """
    text = search_text(q)
    if not text:
        return None
    needle = _like_escape(text.lower())
    if len(text) >= MIN_FRAGMENT:
        matched: ColumnElement[bool] = search_document().like(f"%{needle}%", escape="\\")
        return matched
    return sa.or_(
        col(Payment.payment_id) == text,
        col(Payment.payment_request_id) == text,
        col(Payment.reference_order_id) == text,
        _lower_like(col(Payment.buyer_email), needle + "%"),
        _lower_like(col(Payment.buyer_name), needle + "%"),
    )


def match_spans(value: str | None, q: str) -> list[tuple[int, int]]:
    """Where ``payment_search_clause(q)`` matched inside ``value``: (start, end) pairs,
    for highlighting. Every occurrence of a fragment; a short query's prefix only."""
    text = search_text(q)
    if not value or not text:
        return []
    if len(text) < MIN_FRAGMENT:
        return [(0, len(text))] if value[: len(text)].lower() == text.lower() else []
    return [m.span() for m in re.finditer(re.escape(text), value, flags=re.IGNORECASE)]


def _has_refund() -> ColumnElement[bool]:
    return sa.exists().where(col(Refund.payment_pk) == col(Payment.id))


def payment_where(f: PaymentFilters) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``f`` (the list and the export filter by these)."""
    return _payment_where(f)


def _payment_where(f: PaymentFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if (search := payment_search_clause(f.q)) is not None:
        where.append(search)
    if f.status:
        where.append(col(Payment.status) == f.status)
    if f.method:
        where.append(col(Payment.method) == f.method)
    if f.currency:
        where.append(col(Payment.currency) == f.currency)
    date_col = col(Payment.paid_at) if f.date_field == "paid" else col(Payment.created_at)
    where.extend(date_range(date_col, f.date_from, f.date_to, f.zone))
    if f.has_refunds == "yes":
        where.append(_has_refund())
    elif f.has_refunds == "no":
        where.append(~_has_refund())
    return where


async def list_payments(
    session: AsyncSession, f: PaymentFilters, *, page_size: int = PAGE_SIZE
) -> Page[Payment]:
    return await _list_page(session, Payment, _payment_where(f), f, page_size)


async def payment_ids_matching(
    session: AsyncSession, f: PaymentFilters, *, limit: int
) -> list[str]:
    """The paymentIds of every payment the filters match (a bulk refund of "all of
    them"), oldest first, at most ``limit``."""
    query = (
        select(Payment.payment_id)
        .where(*_payment_where(f))
        .order_by(col(Payment.created_at), col(Payment.id))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def payment_ids_of(session: AsyncSession, pks: Sequence[int]) -> list[str]:
    """The paymentIds of these payments (ticked on the list), in the order given."""
    if not pks:
        return []
    found = await session.exec(
        select(Payment.id, Payment.payment_id).where(col(Payment.id).in_(list(pks)[:10_000]))
    )
    by_pk = dict(found.all())
    return [by_pk[pk] for pk in pks if pk in by_pk]


def _with(options: Sequence[str], current: str) -> list[str]:
    """The known options, plus the one in the URL if it is unusual (so it stays selected)."""
    return sorted({*options, current} - {""})


def payment_choices(f: PaymentFilters) -> Choices:
    """Options for the payments filter selects.

    From the method and currency tables, not ``SELECT DISTINCT`` over the payments:
    that reads every row (300 ms at a million) on every page view.
    """
    return Choices(
        statuses=PAYMENT_STATUSES,
        methods=_with(list(METHOD_PROFILES), f.method),
        currencies=_with(list(ANTOM_EXPONENTS), f.currency),
    )


async def find_payment(session: AsyncSession, ref: str) -> Payment | None:
    """The payment an agent pasted: by paymentId, else paymentRequestId."""
    text = ref.strip()
    if not text:
        return None
    found = (await session.exec(select(Payment).where(col(Payment.payment_id) == text))).first()
    if found is None:
        found = (
            await session.exec(
                select(Payment)
                .where(col(Payment.payment_request_id) == text)
                .order_by(col(Payment.id).desc())
                .limit(1)
            )
        ).first()
    return found


# ---------------------------------------------------------------- refunds


@dataclass(frozen=True, slots=True)
class RefundFilters:
    status: str = ""
    agent_id: int | None = None
    currency: str = ""
    date_from: date | None = None
    date_to: date | None = None
    # paymentId or paymentRequestId of the payment the refunds belong to.
    payment: str = ""
    # "yes": only refunds made outside the desk; "no": only the desk's own.
    external: Literal["", "yes", "no"] = ""
    reason: str = ""  # the reason's code
    method: str = ""  # the payment's method
    # "yes": refunds that needed a second person's approval; "no": those that did not.
    approval: Literal["", "yes", "no"] = ""
    kind: RefundKind = ""
    sort: SortKey = "time"
    direction: Direction = "desc"
    cursor: str = ""
    # The reader's time zone: which days the date range means (not a query parameter).
    zone: str = "UTC"

    @property
    def active(self) -> bool:
        return bool(
            self.status
            or self.agent_id is not None
            or self.currency
            or self.date_from
            or self.date_to
            or self.payment
            or self.external
            or self.reason
            or self.method
            or self.approval
            or self.kind
        )

    def query_params(self, **changes: Any) -> dict[str, str]:
        f = replace(self, **changes)
        params = {
            "status": f.status,
            "agent": str(f.agent_id) if f.agent_id is not None else "",
            "currency": f.currency,
            "date_from": f.date_from.isoformat() if f.date_from else "",
            "date_to": f.date_to.isoformat() if f.date_to else "",
            "payment": f.payment,
            "external": f.external,
            "reason": f.reason,
            "method": f.method,
            "approval": f.approval,
            "kind": f.kind,
            **_order_params(f.sort, f.direction, f.cursor),
        }
        return {k: v for k, v in params.items() if v}


@dataclass(frozen=True, slots=True)
class RefundRow:
    refund: Refund
    payment: Payment
    agent: User | None


def _is_full_refund() -> ColumnElement[bool]:
    """The refund is for all the payment captured (a correlated primary-key lookup)."""
    captured = (
        sa.select(col(Payment.captured_minor))
        .where(col(Payment.id) == col(Refund.payment_pk))
        .scalar_subquery()
    )
    return col(Refund.amount_minor) == captured


def refund_where(f: RefundFilters) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``f``: the one definition the list, its totals, the export
    and the review page (web/services/review.py) all filter by."""
    return _refund_where(f)


def _refund_where(f: RefundFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.status:
        where.append(col(Refund.status) == f.status)
    if f.agent_id is not None:
        where.append(col(Refund.agent_id) == f.agent_id)
    if f.currency:
        where.append(col(Refund.currency) == f.currency)
    where.extend(date_range(col(Refund.created_at), f.date_from, f.date_to, f.zone))
    if f.payment.strip():
        ref = f.payment.strip()
        payment_pks = sa.select(col(Payment.id)).where(
            sa.or_(col(Payment.payment_id) == ref, col(Payment.payment_request_id) == ref)
        )
        where.append(col(Refund.payment_pk).in_(payment_pks))
    if f.external == "yes":
        where.append(col(Refund.external).is_(True))
    elif f.external == "no":
        where.append(col(Refund.external).is_(False))
    if f.reason:
        where.append(col(Refund.reason) == f.reason)
    if f.method:
        by_method = sa.select(col(Payment.id)).where(col(Payment.method) == f.method)
        where.append(col(Refund.payment_pk).in_(by_method))
    if f.approval == "yes":
        where.append(col(Refund.approval_reason).is_not(None))
    elif f.approval == "no":
        where.append(col(Refund.approval_reason).is_(None))
    if f.kind == "full":
        where.append(_is_full_refund())
    elif f.kind == "partial":
        where.append(~_is_full_refund())
    return where


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    """Refunds in one currency: how many and how much (minor units of ``currency``)."""

    currency: str
    count: int
    amount_minor: int


async def refund_totals(session: AsyncSession, f: RefundFilters) -> list[CurrencyTotal]:
    """Exact count and amount per currency of every refund matching ``f`` (never summed
    across currencies), by currency code. One ``GROUP BY currency`` over the list's own
    WHERE: the same index range the list's first page seeks (a date range on
    ix_refunds_created_id, a status on ix_refunds_status_next_check), read once."""
    stmt = (
        select(
            col(Refund.currency),
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(col(Refund.amount_minor)), 0),
        )
        .where(*_refund_where(f))
        .group_by(col(Refund.currency))
        .order_by(col(Refund.currency))
    )
    rows = (await session.exec(stmt)).all()
    return [CurrencyTotal(str(c), int(n), int(total)) for c, n, total in rows]


async def _rows_by_id(session: AsyncSession, model: Any, ids: set[int]) -> dict[int, Any]:
    if not ids:
        return {}
    found = (await session.exec(select(model).where(model.id.in_(ids)))).all()
    return {row.id: row for row in found}


async def list_refunds(
    session: AsyncSession, f: RefundFilters, *, page_size: int = PAGE_SIZE
) -> Page[RefundRow]:
    page = await _list_page(session, Refund, _refund_where(f), f, page_size)
    refunds = page.rows
    # Two primary-key lookups for the page's payments and agents, not a join over the list.
    payments = await _rows_by_id(session, Payment, {r.payment_pk for r in refunds})
    agents = await _rows_by_id(session, User, {r.agent_id for r in refunds if r.agent_id})
    rows = [
        RefundRow(r, payments[r.payment_pk], agents.get(r.agent_id) if r.agent_id else None)
        for r in refunds
    ]
    return Page(rows, page.next_cursor, page.prev_cursor, page.total, page.total_capped)


async def refund_choices(session: AsyncSession, f: RefundFilters) -> Choices:
    """Options for the refunds filter selects (staff accounts and reasons are few)."""
    agents = (await session.exec(select(User).order_by(col(User.name)))).all()
    reasons = (
        await session.exec(
            select(RefundReason).order_by(col(RefundReason.position), col(RefundReason.code))
        )
    ).all()
    known = [(r.code, r.label) for r in reasons]
    if f.reason and f.reason not in {code for code, _ in known}:
        known.append((f.reason, f.reason))
    return Choices(
        statuses=list(REFUND_STATUS_VALUES),
        methods=_with(list(METHOD_PROFILES), f.method),
        currencies=_with(list(ANTOM_EXPONENTS), f.currency),
        agents=list(agents),
        reasons=known,
    )


# ---------------------------------------------------------------- detail pages


async def refunds_of_payment(session: AsyncSession, payment: Payment) -> list[RefundRow]:
    """Every refund of one payment, newest first, with its agent."""
    refunds = (
        await session.exec(
            select(Refund)
            .where(col(Refund.payment_pk) == payment.id)
            .order_by(col(Refund.created_at).desc(), col(Refund.id).desc())
        )
    ).all()
    agents = await _rows_by_id(session, User, {r.agent_id for r in refunds if r.agent_id})
    return [RefundRow(r, payment, agents.get(r.agent_id) if r.agent_id else None) for r in refunds]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    event: RefundEvent
    actor: User | None


@dataclass(frozen=True, slots=True)
class RefundDetail:
    row: RefundRow
    timeline: list[TimelineEntry]


async def refund_detail(session: AsyncSession, refund_pk: int) -> RefundDetail | None:
    refund = await session.get(Refund, refund_pk)
    if refund is None:
        return None
    payment = await session.get(Payment, refund.payment_pk)
    if payment is None:  # the foreign key makes this impossible; keep mypy honest
        return None
    events = (
        await session.exec(
            select(RefundEvent)
            .where(col(RefundEvent.refund_pk) == refund_pk)
            .order_by(col(RefundEvent.at), col(RefundEvent.id))
        )
    ).all()
    people = await _rows_by_id(
        session,
        User,
        {e.actor_id for e in events if e.actor_id}
        | ({refund.agent_id} if refund.agent_id else set()),
    )
    return RefundDetail(
        row=RefundRow(refund, payment, people.get(refund.agent_id) if refund.agent_id else None),
        timeline=[TimelineEntry(e, people.get(e.actor_id) if e.actor_id else None) for e in events],
    )


# ---------------------------------------------------------------- query strings


def _choice(value: str, allowed: Sequence[str], default: str) -> str:
    return value if value in allowed else default


def parse_day(text: str) -> date | None:
    """A ``YYYY-MM-DD`` filter value; anything else means "no bound" (never an error page)."""
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def payment_filters(
    *,
    q: str = "",
    status: str = "",
    method: str = "",
    currency: str = "",
    date_field: str = "",
    date_from: str = "",
    date_to: str = "",
    has_refunds: str = "",
    sort: str = "",
    direction: str = "",
    cursor: str = "",
    zone: str | None = None,
) -> PaymentFilters:
    """Filters from raw query-string values; unknown choices fall back to the defaults.
    ``zone``: the reader's time zone (dates are whole days there)."""
    return PaymentFilters(
        zone=valid_zone(zone) or "UTC",
        q=q.strip()[:254],
        status=status.strip().upper()[:16],
        method=method.strip().upper()[:32],
        currency=currency.strip().upper()[:3],
        date_field=_choice(date_field, ("created", "paid"), "created"),  # type: ignore[arg-type]
        date_from=parse_day(date_from),
        date_to=parse_day(date_to),
        has_refunds=_choice(has_refunds, ("yes", "no"), ""),  # type: ignore[arg-type]
        **_parse_order(sort, direction, cursor),
    )


def refund_filters(
    *,
    status: str = "",
    agent: str = "",
    currency: str = "",
    date_from: str = "",
    date_to: str = "",
    payment: str = "",
    external: str = "",
    reason: str = "",
    method: str = "",
    approval: str = "",
    kind: str = "",
    sort: str = "",
    direction: str = "",
    cursor: str = "",
    zone: str | None = None,
) -> RefundFilters:
    return RefundFilters(
        zone=valid_zone(zone) or "UTC",
        status=_choice(status.strip().lower(), REFUND_STATUS_VALUES, ""),
        reason=reason.strip()[:64],
        method=method.strip().upper()[:32],
        approval=_choice(approval, ("yes", "no"), ""),  # type: ignore[arg-type]
        kind=_choice(kind, ("full", "partial"), ""),  # type: ignore[arg-type]
        agent_id=int(agent) if agent.strip().isdigit() and len(agent.strip()) <= 18 else None,
        currency=currency.strip().upper()[:3],
        date_from=parse_day(date_from),
        date_to=parse_day(date_to),
        payment=payment.strip()[:64],
        external=_choice(external, ("yes", "no"), ""),  # type: ignore[arg-type]
        **_parse_order(sort, direction, cursor),
    )


async def refund_by_pk(session: AsyncSession, refund_pk: int) -> Refund | None:
    return await session.get(Refund, refund_pk)


async def open_alerts(session: AsyncSession, limit: int = 500) -> list[Alert]:
    """Unresolved alerts, newest first."""
    result = await session.exec(
        select(Alert)
        .where(col(Alert.resolved_at).is_(None))
        .order_by(col(Alert.created_at).desc())
        .limit(limit)
    )
    return list(result.all())
