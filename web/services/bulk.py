"""Bulk refunds: a batch from a CSV (or ticked payments), its preview, four eyes, cancel.

No web framework here. A batch's life (``BulkStatus``):

1. ``create_from_csv`` / ``create_from_selection``: the rows are stored and judged at
   once (``evaluate``) by the same rules as the single refund form — eligibility, the
   amount still refundable counting refunds in flight *and the batch's own earlier rows*,
   the refund window, the method's rules, the reason's requirements — each row getting an
   expected outcome (ok / needs attention / refused, with the reason). Duplicate rows
   (a payment already on an earlier line) and payments refunded in the last N days need
   attention; later duplicates start excluded. Nothing is sent, nothing is reserved.
2. The requester may exclude, include or edit rows (``set_excluded``, ``edit_row``):
   each change re-judges the batch and moves its ``revision``.
3. ``approve``: someone else holding APPROVE (``may_approve``: never the requester)
   approves the revision they saw; ``reject`` ends it. The run itself is
   ``web/services/bulk_run.py``.
4. ``cancel``: a lead stops it, before or during the run. The cancel is committed under
   the batch row's lock, which every row's write-ahead also takes: once it is committed,
   no further row is written ahead, so none is sent; rows already written ahead finish
   through the one send path (a written-ahead refund is always sent, same id).

Every step is an audit row (``bulk.*``) in the step's own transaction.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import MoneyError, format_minor, format_plain, parse_amount
from web.db import session_scope
from web.models import (
    BulkBatch,
    BulkExpect,
    BulkRow,
    BulkStatus,
    Payment,
    Refund,
    RefundStatus,
    User,
    utcnow,
)
from web.rules import refunds as rules
from web.rules.access import Permission, can, may_approve
from web.rules.refunds import Reason
from web.services import audit
from web.services.reasons import catalogue
from web.services.refunds import NOTE_MAX, NOTE_MIN_REQUIRED, facts_of

MAX_CSV_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000
DEFAULT_RECENT_DAYS = 30
COMMENT_MAX = 500
FULL = "full"
_CHUNK = 500  # ids per IN (...) query


class BulkError(Exception):
    """A step that cannot be taken; the message says why, for the person who tried."""


# ---------------------------------------------------------------- the CSV file

# Header spellings (case, spaces and punctuation ignored) → the field they fill.
_HEADERS = {
    "paymentid": "payment_id",
    "paymentrequestid": "payment_request_id",
    "requestid": "payment_request_id",
    "referenceorderid": "order_ref",
    "orderref": "order_ref",
    "orderreference": "order_ref",
    "order": "order_ref",
    "orderid": "order_ref",
    "ref": "order_ref",
    "amount": "amount",
    "refundamount": "amount",
    "reason": "reason",
    "refundreason": "reason",
    "note": "note",
    "notes": "note",
    "comment": "note",
    "currency": "currency",
}
_KEYS = ("payment_id", "payment_request_id", "order_ref")


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    values: dict[str, str]


@dataclass
class ParsedCsv:
    rows: list[CsvRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def parse_csv(data: bytes, *, max_rows: int = DEFAULT_MAX_ROWS) -> ParsedCsv:
    """Read a bulk refund file: UTF-8 with or without a BOM (or UTF-16), CRLF or LF,
    commas, semicolons or tabs, columns in any order, blank lines skipped.

    Columns: ``paymentId`` or ``paymentRequestId`` or ``orderRef`` (one per row is
    enough), ``amount`` (a number in the payment's currency, or ``full``), ``reason``
    (a reason's code or label), ``note``; optional ``currency`` (checked, never converted).
    """
    parsed = ParsedCsv()
    if len(data) > MAX_CSV_BYTES:
        parsed.errors.append(f"The file is larger than {MAX_CSV_BYTES // 1024 // 1024} MB")
        return parsed
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        parsed.errors.append("The file is not UTF-8 text. Save it as “CSV UTF-8” and upload again")
        return parsed
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    columns: list[str | None] | None = None
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if columns is None:
                columns = _map_header(parsed, cells)
                if parsed.errors:
                    return parsed
                continue
            values = {
                name: cell.strip()
                for name, cell in zip(columns, cells, strict=False)
                if name is not None
            }
            parsed.rows.append(CsvRow(line, values))
            if len(parsed.rows) > max_rows:
                parsed.errors.append(
                    f"More than {max_rows:,} rows in one batch; split the file into several"
                )
                return parsed
    except csv.Error as exc:
        parsed.errors.append(f"Line {start}: the file is not valid CSV ({exc})")
        return parsed
    if columns is None:
        parsed.errors.append("The file is empty: it needs a header line and one line per refund")
    elif not parsed.rows:
        parsed.errors.append("The file has a header but no refunds")
    return parsed


def _map_header(parsed: ParsedCsv, header: Sequence[str]) -> list[str | None]:
    columns: list[str | None] = []
    seen: dict[str, str] = {}
    for cell in header:
        name = _HEADERS.get(_normalise(cell))
        if name is None:
            if cell.strip():
                parsed.ignored_columns.append(cell.strip())
            columns.append(None)
            continue
        if name in seen:
            parsed.errors.append(f"Columns “{seen[name]}” and “{cell.strip()}” are both {name}")
        seen[name] = cell.strip()
        columns.append(name)
    if not any(k in seen for k in _KEYS):
        parsed.errors.append(
            "The header needs a paymentId, paymentRequestId or orderRef column "
            "(the first line names the columns: paymentId, amount, reason, note)"
        )
    if "amount" not in seen:
        parsed.errors.append("The header needs an amount column (a number, or “full”)")
    if "reason" not in seen:
        parsed.errors.append("The header needs a reason column")
    return columns


# ---------------------------------------------------------------- creating a batch


@dataclass(frozen=True, slots=True)
class RowInput:
    """One refund asked for: a key naming the payment, an amount, a reason, a note."""

    line: int
    key: str
    key_kind: str  # payment_id, payment_request_id, order_ref
    amount_text: str
    reason: str
    note: str = ""
    currency: str = ""


def rows_of(parsed: ParsedCsv) -> list[RowInput]:
    found = []
    for row in parsed.rows:
        kind = next((k for k in _KEYS if row.values.get(k)), "payment_id")
        found.append(
            RowInput(
                line=row.line,
                key=row.values.get(kind, ""),
                key_kind=kind,
                amount_text=row.values.get("amount", ""),
                reason=row.values.get("reason", ""),
                note=row.values.get("note", ""),
                currency=row.values.get("currency", "").upper(),
            )
        )
    return found


async def create_batch(
    engine: AsyncEngine,
    *,
    user: User,
    inputs: Sequence[RowInput],
    source: str,
    filename: str | None,
    now: datetime,
    who: audit.Actor | None = None,
    recent_days: int = DEFAULT_RECENT_DAYS,
) -> BulkBatch:
    """Store a batch awaiting approval with its rows judged (nothing sent or reserved)."""
    if not can(user, Permission.RUN_BULK):
        raise BulkError("You may not start bulk refunds")
    if not inputs:
        raise BulkError("There is nothing to refund in this batch")
    async with session_scope(engine) as session:
        batch = BulkBatch(
            status=BulkStatus.AWAITING,
            source=source,
            filename=(filename or None) and filename[:200],
            created_by=user.id or 0,
        )
        session.add(batch)
        await session.flush()
        assert batch.id is not None
        rows = []
        kinds: dict[int, str] = {}  # where each row's key is looked up first
        for item in inputs:
            key = _clip(item.key, 64)
            row = BulkRow(
                batch_pk=batch.id,
                line=item.line,
                key=key,
                amount_text=_clip(item.amount_text, 32),
                reason=_clip(item.reason, 64),
                note=_clip(item.note, 256) or None,
                currency=item.currency[:3] or None,
                expect=BulkExpect.OK,
            )
            kinds[id(row)] = item.key_kind
            rows.append(row)
        session.add_all(rows)
        await session.flush()
        await _evaluate(session, rows, now, recent_days=recent_days, kinds=kinds, first=True)
        totals = _totals(rows)
        await audit.record(
            session,
            audit.Action.BULK_REQUESTED,
            _actor(user, who),
            object_type="bulk_batch",
            object_id=batch.id,
            after={"status": BulkStatus.AWAITING.value},
            detail={"source": source, "filename": filename, "rows": len(rows), "totals": totals},
        )
    return batch


def _clip(text: str, limit: int) -> str:
    return text.strip()[:limit]


# ---------------------------------------------------------------- judging the rows


@dataclass
class _Found:
    by_payment_id: dict[str, Payment] = field(default_factory=dict)
    by_request_id: dict[str, list[Payment]] = field(default_factory=dict)
    by_order_ref: dict[str, list[Payment]] = field(default_factory=dict)
    by_pk: dict[int, Payment] = field(default_factory=dict)


async def _find_payments(session: AsyncSession, rows: Sequence[BulkRow]) -> _Found:
    found = _Found()
    keys = sorted({r.key for r in rows if r.key})
    pks = sorted({r.payment_pk for r in rows if r.payment_pk is not None})
    for start in range(0, max(len(keys), 1), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        if not chunk:
            break
        query = select(Payment).where(
            sa.or_(
                col(Payment.payment_id).in_(chunk),
                col(Payment.payment_request_id).in_(chunk),
                col(Payment.reference_order_id).in_(chunk),
            )
        )
        for payment in (await session.exec(query.execution_options(populate_existing=True))).all():
            _remember(found, payment)
    for start in range(0, len(pks), _CHUNK):
        query = select(Payment).where(col(Payment.id).in_(pks[start : start + _CHUNK]))
        for payment in (await session.exec(query.execution_options(populate_existing=True))).all():
            _remember(found, payment)
    return found


def _remember(found: _Found, payment: Payment) -> None:
    assert payment.id is not None
    if payment.id in found.by_pk:
        return
    found.by_pk[payment.id] = payment
    found.by_payment_id[payment.payment_id] = payment
    found.by_request_id.setdefault(payment.payment_request_id, []).append(payment)
    if payment.reference_order_id:
        found.by_order_ref.setdefault(payment.reference_order_id, []).append(payment)


def _resolve(found: _Found, row: BulkRow, kind: str | None) -> Payment | str:
    """The payment a row names, or why it names none (or several)."""
    if not row.key:
        return "No paymentId, paymentRequestId or order reference on this line"
    if row.payment_pk is not None and kind is None and row.payment_pk in found.by_pk:
        return found.by_pk[row.payment_pk]
    order = {
        "payment_id": ("payment_id", "payment_request_id", "order_ref"),
        "payment_request_id": ("payment_request_id", "payment_id", "order_ref"),
        "order_ref": ("order_ref", "payment_request_id", "payment_id"),
    }[kind or "payment_id"]
    for how in order:
        if how == "payment_id" and row.key in found.by_payment_id:
            return found.by_payment_id[row.key]
        matches = (found.by_request_id if how == "payment_request_id" else found.by_order_ref).get(
            row.key, []
        )
        if how != "payment_id" and len(matches) == 1:
            return matches[0]
        if how != "payment_id" and len(matches) > 1:
            return (
                f"{len(matches)} payments have the reference “{row.key}”; "
                "give the paymentId instead"
            )
    return f"The desk has no payment “{row.key}” (use “Find a payment in Antom” first)"


async def _recently_refunded(
    session: AsyncSession, payment_pks: Iterable[int], since: datetime
) -> dict[int, datetime]:
    """Payments with a refund (not failed or rejected) made since ``since``: the latest."""
    pks = sorted(set(payment_pks))
    latest: dict[int, datetime] = {}
    for start in range(0, len(pks), _CHUNK):
        query = (
            select(Refund.payment_pk, sa.func.max(Refund.created_at))
            .where(
                col(Refund.payment_pk).in_(pks[start : start + _CHUNK]),
                col(Refund.created_at) >= since,
                col(Refund.status).not_in([RefundStatus.FAILED, RefundStatus.REJECTED]),
            )
            .group_by(col(Refund.payment_pk))
        )
        for pk, at in (await session.exec(query)).all():
            if isinstance(at, datetime):
                latest[int(pk)] = at
    return latest


def _reason_of(reasons: dict[str, Reason], text: str) -> Reason | None:
    wanted = text.strip().lower()
    return reasons.get(wanted) or next(
        (r for r in reasons.values() if r.label.lower() == wanted), None
    )


async def _evaluate(
    session: AsyncSession,
    rows: Sequence[BulkRow],
    now: datetime,
    *,
    recent_days: int,
    kinds: dict[int, str] | None = None,
    first: bool = False,
) -> None:
    """Judge every row, in line order, as the refund form would; writes expect/problem.

    The batch's own rows count: a payment's earlier included rows are held against it
    like refunds in flight, so two lines refunding one payment cannot both pass.
    """
    found = await _find_payments(session, rows)
    reasons = {r.code.lower(): r for r in await catalogue(session) if r.active}
    recent = await _recently_refunded(
        session, found.by_pk, now - timedelta(days=max(recent_days, 0))
    )
    held: dict[int, int] = defaultdict(int)  # payment pk → this batch's earlier amounts
    count: dict[int, int] = defaultdict(int)
    first_line: dict[int, int] = {}
    for row in sorted(rows, key=lambda r: (r.line, r.id or 0)):
        problems: list[str] = []
        attention: list[str] = []
        resolved = _resolve(found, row, (kinds or {}).get(id(row)))
        if isinstance(resolved, str):
            row.payment_pk, row.amount_minor = None, None
            _judged(row, BulkExpect.REFUSED, [resolved])
            continue
        payment = resolved
        assert payment.id is not None
        row.payment_pk, row.currency = payment.id, row.currency or payment.currency
        facts = facts_of(payment)
        facts = rules.PaymentFacts(
            method=facts.method,
            currency=facts.currency,
            amount_minor=facts.amount_minor,
            captured_minor=facts.captured_minor,
            succeeded=facts.succeeded,
            dispute_open=facts.dispute_open,
            paid_at=facts.paid_at,
            refunded_minor=facts.refunded_minor,
            in_flight_minor=facts.in_flight_minor + held[payment.id],
            refund_count=facts.refund_count + count[payment.id],
        )
        if row.currency != payment.currency:
            problems.append(
                f"The file says {row.currency}; the payment is in {payment.currency} "
                "(refunds are always in the payment's currency)"
            )
            row.currency = payment.currency
        amount = _amount_of(row, facts, problems)
        reason = _reason_of(reasons, row.reason)
        note = (row.note or "").strip()
        if reason is None:
            problems.append(
                f"“{row.reason}” is not a reason the desk knows" if row.reason else "Give a reason"
            )
        elif reason.ticket_required:
            problems.append(f"“{reason.label}” needs a support ticket: refund it on its own")
        elif reason.note_required and len(note) < NOTE_MIN_REQUIRED:
            problems.append(f"“{reason.label}” needs a note saying why")
        if reason is not None:
            row.reason = reason.code
        if len(note) > NOTE_MAX:
            problems.append(f"The note can be at most {NOTE_MAX} characters")
        if amount is not None:
            problems += [
                v.message for v in rules.check_refund(facts, payment.currency, amount, now)
            ]
        if payment.id in first_line:
            duplicate = f"Line {first_line[payment.id]} refunds this payment too"
            attention.append(duplicate)
            if problems:
                problems.insert(0, duplicate)
        if payment.id in recent:
            attention.append(f"Refunded on {recent[payment.id]:%Y-%m-%d} already")
        row.amount_minor = amount
        if problems:
            _judged(row, BulkExpect.REFUSED, problems)
        elif attention:
            _judged(row, BulkExpect.ATTENTION, attention)
            if first and payment.id in first_line:
                row.excluded = True  # a later duplicate: left out unless put back
        else:
            _judged(row, BulkExpect.OK, [])
        first_line.setdefault(payment.id, row.line)
        if not problems and not row.excluded and amount is not None:
            held[payment.id] += amount
            count[payment.id] += 1
    await session.flush()


def _amount_of(row: BulkRow, facts: rules.PaymentFacts, problems: list[str]) -> int | None:
    text = row.amount_text.strip()
    if text.lower() in (FULL, "all", "") or text.lower() == "max":
        if facts.refundable_minor <= 0:
            problems.append("Nothing is left to refund")
            return None
        return facts.refundable_minor
    try:
        return parse_amount(text, facts.currency)
    except MoneyError as exc:
        problems.append(str(exc))
        return None


def _judged(row: BulkRow, expect: BulkExpect, messages: list[str]) -> None:
    row.expect = expect
    text = "; ".join(dict.fromkeys(messages))
    row.problem = (text[:499] + "…" if len(text) > 500 else text) or None


# ---------------------------------------------------------------- reading a batch


@dataclass(frozen=True, slots=True)
class Total:
    currency: str
    rows: int
    amount_minor: int

    @property
    def amount(self) -> str:
        return format_minor(self.amount_minor, self.currency)


def _totals(rows: Iterable[BulkRow]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.excluded or row.expect is BulkExpect.REFUSED or row.amount_minor is None:
            continue
        entry = out.setdefault(row.currency or "?", {"rows": 0, "amount_minor": 0})
        entry["rows"] += 1
        entry["amount_minor"] += row.amount_minor
    return dict(sorted(out.items()))


def totals_of(rows: Iterable[BulkRow]) -> list[Total]:
    return [Total(c, t["rows"], t["amount_minor"]) for c, t in _totals(rows).items()]


def typed(batch: BulkBatch) -> BulkBatch:
    """The status as the BulkStatus its annotation promises (the column holds a string),
    without marking the row changed."""
    set_committed_value(batch, "status", BulkStatus(batch.status))
    return batch


async def get_batch(session: AsyncSession, batch_pk: int) -> BulkBatch | None:
    batch = await session.get(BulkBatch, batch_pk, populate_existing=True)
    return typed(batch) if batch is not None else None


async def rows_of_batch(session: AsyncSession, batch_pk: int) -> list[BulkRow]:
    query = (
        select(BulkRow)
        .where(col(BulkRow.batch_pk) == batch_pk)
        .order_by(col(BulkRow.line), col(BulkRow.id))
        .execution_options(populate_existing=True)
    )
    rows = list((await session.exec(query)).all())
    for row in rows:
        set_committed_value(row, "expect", BulkExpect(row.expect))
    return rows


async def recent_batches(session: AsyncSession, limit: int = 20) -> list[BulkBatch]:
    query = select(BulkBatch).order_by(col(BulkBatch.id).desc()).limit(limit)
    return list((await session.exec(query)).all())


@dataclass(frozen=True, slots=True)
class Counts:
    """One currency's rows by what became of them (and their amounts)."""

    currency: str
    queued: int = 0
    processing: int = 0
    done: int = 0
    failed: int = 0
    refused: int = 0
    excluded: int = 0
    done_minor: int = 0
    processing_minor: int = 0

    def amount(self, minor: int) -> str:
        return format_minor(minor, self.currency) if self.currency != "?" else str(minor)


@dataclass(frozen=True, slots=True)
class Progress:
    status: BulkStatus
    counts: list[Counts]
    sent: int  # rows written ahead and handed to the send path
    to_send: int  # rows not written ahead yet (queued)
    rows_per_s: float | None
    seconds_left: float | None

    @property
    def total(self) -> int:
        return sum(c.queued + c.processing + c.done + c.failed + c.refused for c in self.counts)

    @property
    def settled(self) -> int:
        return sum(c.done + c.failed + c.refused for c in self.counts)


def _category() -> Any:
    return sa.case(
        (col(BulkRow.excluded), sa.literal_column("'excluded'")),
        (col(BulkRow.expect) == BulkExpect.REFUSED, sa.literal_column("'refused'")),
        (col(BulkRow.run_problem).is_not(None), sa.literal_column("'refused'")),
        (col(Refund.status) == RefundStatus.SUCCEEDED, sa.literal_column("'done'")),
        (col(Refund.status) == RefundStatus.FAILED, sa.literal_column("'failed'")),
        (col(Refund.id).is_not(None), sa.literal_column("'processing'")),
        else_=sa.literal_column("'queued'"),
    )


async def progress(session: AsyncSession, batch: BulkBatch, now: datetime) -> Progress:
    """Rows per currency by outcome, rows per second since the start, time left."""
    category = _category().label("category")
    query = (
        select(
            col(BulkRow.currency),
            category,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(col(BulkRow.amount_minor)), 0),
        )
        .select_from(BulkRow)
        .join(Refund, col(Refund.id) == col(BulkRow.refund_pk), isouter=True)
        .where(col(BulkRow.batch_pk) == batch.id)
        .group_by(col(BulkRow.currency), sa.literal_column("category"))
    )
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for currency, cat, n, minor in (await session.exec(query)).all():
        table[currency or "?"][str(cat)] += int(n)
        table[currency or "?"][f"{cat}_minor"] += int(minor or 0)
    counts = [
        Counts(
            currency=currency,
            queued=t["queued"],
            processing=t["processing"],
            done=t["done"],
            failed=t["failed"],
            refused=t["refused"],
            excluded=t["excluded"],
            done_minor=t["done_minor"],
            processing_minor=t["processing_minor"],
        )
        for currency, t in sorted(table.items())
    ]
    queued = sum(c.queued for c in counts)
    sent = sum(c.processing + c.done + c.failed for c in counts)
    rate: float | None = None
    left: float | None = None
    status = BulkStatus(batch.status)
    if batch.started_at is not None and sent:
        until = batch.finished_at or batch.cancelled_at or batch.progress_at or now
        elapsed = (until - batch.started_at).total_seconds()
        if elapsed > 0:
            rate = sent / elapsed
            if status is BulkStatus.RUNNING and rate > 0:
                left = queued / rate
    return Progress(status, counts, sent, queued, rate, left)


def progress_version(p: Progress) -> str:
    """What the stream compares (web/live.py): the status and every count."""
    parts = [p.status.value] + [
        f"{c.currency}:{c.queued}:{c.processing}:{c.done}:{c.failed}:{c.refused}:{c.excluded}"
        for c in p.counts
    ]
    return ".".join(parts).replace(".", "_")[:64] if parts else "none"


# ---------------------------------------------------------------- requester's edits


async def _editable(session: AsyncSession, batch_pk: int, user: User, revision: int) -> BulkBatch:
    batch = await _locked(session, batch_pk)
    if batch is None:
        raise BulkError("There is no such batch")
    if batch.created_by != user.id:
        raise BulkError("Only the person who made the batch can change its rows")
    if batch.status is not BulkStatus.AWAITING:
        raise BulkError("This batch is no longer awaiting approval; its rows cannot change")
    if batch.revision != revision:
        raise BulkError(_changed_meanwhile)
    return batch


async def set_excluded(
    engine: AsyncEngine,
    *,
    batch_pk: int,
    row_pk: int,
    excluded: bool,
    user: User,
    revision: int,
    now: datetime,
    who: audit.Actor | None = None,
    recent_days: int = DEFAULT_RECENT_DAYS,
) -> BulkBatch:
    return await _change_row(
        engine, batch_pk, row_pk, user, revision, now, who, recent_days, excluded=excluded
    )


async def edit_row(
    engine: AsyncEngine,
    *,
    batch_pk: int,
    row_pk: int,
    user: User,
    revision: int,
    amount_text: str,
    reason: str,
    note: str,
    now: datetime,
    who: audit.Actor | None = None,
    recent_days: int = DEFAULT_RECENT_DAYS,
) -> BulkBatch:
    return await _change_row(
        engine,
        batch_pk,
        row_pk,
        user,
        revision,
        now,
        who,
        recent_days,
        amount_text=_clip(amount_text, 32),
        reason=_clip(reason, 64),
        note=_clip(note, 256) or None,
    )


async def _change_row(
    engine: AsyncEngine,
    batch_pk: int,
    row_pk: int,
    user: User,
    revision: int,
    now: datetime,
    who: audit.Actor | None,
    recent_days: int,
    **change: Any,
) -> BulkBatch:
    async with session_scope(engine) as session:
        batch = await _editable(session, batch_pk, user, revision)
        rows = await rows_of_batch(session, batch_pk)
        row = next((r for r in rows if r.id == row_pk), None)
        if row is None:
            raise BulkError("There is no such row in this batch")
        before = {k: getattr(row, k) for k in change}
        for name, value in change.items():
            setattr(row, name, value)
        await _evaluate(session, rows, now, recent_days=recent_days)
        batch.revision += 1
        batch.updated_at = utcnow()
        await audit.record(
            session,
            audit.Action.BULK_EDITED,
            _actor(user, who),
            object_type="bulk_batch",
            object_id=batch_pk,
            before={"line": row.line} | before,
            after={"line": row.line, "revision": batch.revision} | change,
        )
        return batch


# ---------------------------------------------------------------- four eyes, cancel


async def approve(
    engine: AsyncEngine,
    *,
    batch_pk: int,
    approver: User,
    revision: int,
    comment: str,
    now: datetime,
    who: audit.Actor | None = None,
    recent_days: int = DEFAULT_RECENT_DAYS,
) -> BulkBatch:
    """Approve the revision the approver saw (never one's own batch). The rows are judged
    again now (what the approver sees is what runs); the run starts next."""
    async with session_scope(engine) as session:
        batch = await _decidable(session, batch_pk, approver, revision)
        rows = await rows_of_batch(session, batch_pk)
        await _evaluate(session, rows, now, recent_days=recent_days)
        if not any(not r.excluded and r.expect is not BulkExpect.REFUSED for r in rows):
            raise BulkError("No row of this batch can be refunded: nothing to approve")
        batch.status = BulkStatus.APPROVED
        batch.decided_by, batch.decided_at = approver.id, utcnow()
        batch.decision_note = comment.strip()[:COMMENT_MAX] or None
        batch.updated_at = utcnow()
        await audit.record(
            session,
            audit.Action.BULK_APPROVED,
            _actor(approver, who),
            object_type="bulk_batch",
            object_id=batch_pk,
            before={"status": BulkStatus.AWAITING.value},
            after={"status": BulkStatus.APPROVED.value, "revision": revision},
            detail={"totals": _totals(rows), "comment": batch.decision_note},
        )
        return batch


async def reject(
    engine: AsyncEngine,
    *,
    batch_pk: int,
    approver: User,
    revision: int,
    comment: str,
    who: audit.Actor | None = None,
) -> BulkBatch:
    said = comment.strip()[:COMMENT_MAX]
    if not said:
        raise BulkError("Say why it is rejected: the requester reads it")
    async with session_scope(engine) as session:
        batch = await _decidable(session, batch_pk, approver, revision)
        batch.status = BulkStatus.REJECTED
        batch.decided_by, batch.decided_at, batch.decision_note = approver.id, utcnow(), said
        batch.updated_at = utcnow()
        await audit.record(
            session,
            audit.Action.BULK_REJECTED,
            _actor(approver, who),
            object_type="bulk_batch",
            object_id=batch_pk,
            before={"status": BulkStatus.AWAITING.value},
            after={"status": BulkStatus.REJECTED.value},
            detail={"comment": said},
        )
        return batch


async def cancel(
    engine: AsyncEngine, *, batch_pk: int, user: User, who: audit.Actor | None = None
) -> BulkBatch:
    """Stop a batch before or during its run: committed under the batch row's lock, so
    no row is written ahead (hence sent) after this commits."""
    if not can(user, Permission.RUN_BULK):
        raise BulkError("You may not cancel bulk refunds")
    async with session_scope(engine) as session:
        batch = await _locked(session, batch_pk)
        if batch is None:
            raise BulkError("There is no such batch")
        if batch.status.final:
            raise BulkError(f"This batch is already {batch.status.value}")
        before = batch.status
        batch.status = BulkStatus.CANCELLED
        batch.cancelled_by, batch.cancelled_at = user.id, utcnow()
        batch.updated_at = utcnow()
        sent = (
            await session.exec(
                select(sa.func.count())
                .select_from(BulkRow)
                .where(col(BulkRow.batch_pk) == batch_pk, col(BulkRow.refund_pk).is_not(None))
            )
        ).one()
        await audit.record(
            session,
            audit.Action.BULK_CANCELLED,
            _actor(user, who),
            object_type="bulk_batch",
            object_id=batch_pk,
            before={"status": before.value},
            after={"status": BulkStatus.CANCELLED.value},
            detail={"rows_sent": int(sent)},
        )
        return batch


async def _decidable(
    session: AsyncSession, batch_pk: int, approver: User, revision: int
) -> BulkBatch:
    batch = await _locked(session, batch_pk)
    if batch is None:
        raise BulkError("There is no such batch")
    if not may_approve(approver, batch.created_by):
        if approver.id == batch.created_by:
            raise BulkError("You cannot approve or reject your own batch: ask another lead")
        raise BulkError("You may not decide on bulk refunds")
    if batch.status is not BulkStatus.AWAITING or batch.revision != revision:
        raise BulkError(_changed_meanwhile)
    return batch


async def _locked(session: AsyncSession, batch_pk: int) -> BulkBatch | None:
    batch = (
        await session.exec(
            select(BulkBatch)
            .where(col(BulkBatch.id) == batch_pk)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    return typed(batch) if batch is not None else None


_changed_meanwhile = (
    "This batch changed since you opened it (edited, decided or cancelled): "
    "reload it and look again"
)


def _actor(user: User, who: audit.Actor | None) -> audit.Actor:
    base = who or audit.Actor()
    return audit.Actor(
        user_id=user.id,
        label=base.label or user.email,
        ip=base.ip,
        user_agent=base.user_agent,
        request_id=base.request_id,
    )


# ---------------------------------------------------------------- the result file

RESULT_COLUMNS = (
    "line",
    "key",
    "paymentId",
    "currency",
    "amount",
    "reason",
    "expected",
    "problem",
    "outcome",
    "refundRequestId",
    "refundId",
    "resultCode",
    "resultMessage",
)


async def result_csv(session: AsyncSession, batch_pk: int) -> str:
    """One line per row: what was asked, what the preview expected, what happened."""
    query = (
        select(BulkRow, Payment, Refund)
        .join(Payment, col(Payment.id) == col(BulkRow.payment_pk), isouter=True)
        .join(Refund, col(Refund.id) == col(BulkRow.refund_pk), isouter=True)
        .where(col(BulkRow.batch_pk) == batch_pk)
        .order_by(col(BulkRow.line), col(BulkRow.id))
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RESULT_COLUMNS)
    for row, payment, refund in (await session.exec(query)).all():
        amount = (
            format_plain(row.amount_minor, row.currency)
            if row.amount_minor is not None and row.currency
            else row.amount_text
        )
        writer.writerow(
            [
                row.line,
                _safe(row.key),
                payment.payment_id if payment else "",
                row.currency or "",
                amount,
                _safe(row.reason),
                BulkExpect(row.expect).value,
                _safe(row.problem or ""),
                outcome_of(row, refund),
                refund.refund_request_id if refund else "",
                (refund.refund_id or "") if refund else "",
                (refund.result_code or "") if refund else "",
                _safe((refund.result_message or "") if refund else (row.run_problem or "")),
            ]
        )
    return out.getvalue()


def outcome_of(row: BulkRow, refund: Refund | None) -> str:
    if row.excluded:
        return "excluded"
    if row.expect == BulkExpect.REFUSED or row.run_problem:
        return "refused"
    if refund is None:
        return "not sent"
    return str(RefundStatus(refund.status).value)


def _safe(text: str) -> str:
    """No formula injection when the file is opened in a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
