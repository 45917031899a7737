"""Antom settlement details reports: import them, reconcile refunds, record reversals.

A report (docs.antom.com/ac/reconcile/settlement_details) is a CSV in three parts: header
information (the line of parameter names; anything before it is skipped), one detail row
per settled transaction, and ``<END>`` on the last line. Columns may come in any order;
UTF-8 with or without a BOM, CRLF or LF, blank lines skipped. The file is read as a
stream from disk, ``CHUNK`` rows per transaction, so memory stays bounded whatever its
size; the progress counts move per chunk.

A row is identified by (``settlementBatchId``, ``transactionType``, ``transactionId``):
it is stored once (``settlement_lines``) and acts only when it is new, so importing a
report again changes nothing. What a row does:

* ``REFUND`` — reconciles: a desk refund Antom settled that the desk holds as failed,
  processing (or anything but succeeded/reversed), or for another amount, is raised
  (``AlertKind.RECONCILE``); so is a settled refund the desk does not know on a payment
  it does. Matched by refundRequestId, then refundId, then ``acquirerReferenceNo``.
* ``REFUND_REVERSAL`` — the refund came back: the ledger moves it SUCCEEDED → REVERSED
  (the amount stays out of reach until a lead decides), the timeline says what came back,
  and leads are alerted (``AlertKind.REVERSED``). Matched by the refund's refundRequestId
  (``transactionRequestId``), then ``acquirerReferenceNo``.
* anything else (``PAYMENT``, ``CAPTURE``, fees…) is stored, and changes nothing.

Amounts are taken as minor units of their currency, signed from the merchant's side
(refunds negative); the sign of a REFUND or REFUND_REVERSAL amount is not relied on.
Nothing here imports Litestar.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.messages import parse_time
from web.antom.money import MoneyError, exponent, format_minor
from web.db import session_scope
from web.models import (
    AlertKind,
    EventSource,
    OrderImportStatus,
    Payment,
    Refund,
    RefundStatus,
    SettlementImport,
    SettlementLine,
    utcnow,
)
from web.services import audit, ledger
from web.services.alerts import raise_alert
from web.services.uploads import normalise_header, report_line

CHUNK = 500  # rows per transaction (and per progress step)
END = "<END>"
MAX_TEXT = 64
REFUND, REVERSAL = "REFUND", "REFUND_REVERSAL"
_TYPE = re.compile(r"[A-Z][A-Z_]{0,31}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # the parameter name in Antom's report
    attr: str  # SettlementLine's attribute
    required: bool = False


COLUMNS = (
    Column("settlementBatchId", "settlement_batch_id", required=True),
    Column("transactionType", "transaction_type", required=True),
    Column("transactionId", "transaction_id", required=True),
    Column("transactionAmountValue", "amount_minor", required=True),
    Column("transactionCurrency", "currency", required=True),
    Column("transactionRequestId", "transaction_request_id"),
    Column("originalTransactionId", "original_transaction_id"),
    Column("acquirerReferenceNo", "acquirer_reference_no"),
    Column("paymentMethodType", "payment_method_type"),
    Column("settlementAmountValue", "settlement_amount_minor"),
    Column("settlementCurrency", "settlement_currency"),
    Column("feeAmountValue", "fee_minor"),
    Column("feeCurrency", "fee_currency"),
    Column("transactionTime", "transaction_time"),
)
_BY_HEADER = {normalise_header(c.name): c for c in COLUMNS}
_AMOUNTS = {"amount_minor", "settlement_amount_minor", "fee_minor"}
_CURRENCIES = {"currency", "settlement_currency", "fee_currency"}
KEY = ("settlement_batch_id", "transaction_type", "transaction_id")


class SettlementFileError(ValueError):
    """The file cannot be read as a settlement report at all: nothing is imported."""


# ---------------------------------------------------------------- reading the file


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # where the row starts in the file, counting from 1
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Reader:
    """Streams a report's detail rows; ``notes`` says what was odd about the file."""

    headers: dict[str, str] = field(default_factory=dict)  # attr → the file's own header
    notes: list[str] = field(default_factory=list)
    ended: bool = False
    width: int = 0  # how many columns the header line has


def _open_text(path: Path) -> IO[str]:
    raw = path.open("rb")
    start = raw.read(2)
    raw.seek(0)
    encoding = "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    return io.TextIOWrapper(raw, encoding=encoding, newline="")


def count_lines(path: Path) -> int:
    """Physical lines in the file (for the progress bar), read in blocks."""
    lines, last = 0, b"\n"
    with path.open("rb") as raw:
        while block := raw.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (0 if last == b"\n" else 1)


def _header_of(cells: Sequence[str]) -> dict[int, Column] | None:
    found = {
        i: _BY_HEADER[normalise_header(c)]
        for i, c in enumerate(cells)
        if normalise_header(c) in _BY_HEADER
    }
    names = {c.name for c in found.values()}
    return found if {"transactionType", "transactionId"} <= names else None


def read_rows(path: Path, reader: Reader) -> Iterator[Row]:
    """The detail rows of the report at ``path``, checked one by one. Raises
    ``SettlementFileError`` when no header line is found or it lacks a required column."""
    with _open_text(path) as text:
        rows = csv.reader(text, strict=False)
        columns: dict[int, Column] | None = None
        start = 1
        try:
            for cells in rows:
                line, start = start, rows.line_num + 1
                if not any(c.strip() for c in cells):
                    continue
                if cells[0].strip() == END and not any(c.strip() for c in cells[1:]):
                    reader.ended = True
                    continue
                if reader.ended:
                    reader.notes.append(f"Line {line} comes after the <END> line and was ignored")
                    continue
                if columns is None:
                    columns = _header_of(cells)
                    if columns is not None:
                        _check_header(reader, columns, cells)
                    continue
                yield _row(line, cells, columns, reader)
        except csv.Error as exc:
            raise SettlementFileError(f"Line {start}: the file is not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise SettlementFileError(
                "The file is not UTF-8 text. Download it from Antom again and upload it as is"
            ) from None
    if columns is None:
        raise SettlementFileError(
            "No header line: a settlement details report names its columns "
            "(settlementBatchId, transactionType, transactionId, …) before its rows"
        )
    if not reader.ended:
        reader.notes.append("The file has no <END> line: it may have been cut short")


def _check_header(reader: Reader, columns: dict[int, Column], cells: Sequence[str]) -> None:
    reader.width = len(cells)
    for i, column in columns.items():
        if column.attr in reader.headers:
            raise SettlementFileError(
                f"Columns “{reader.headers[column.attr]}” and “{cells[i].strip()}” are both "
                f"{column.name}"
            )
        reader.headers[column.attr] = cells[i].strip()
    missing = [c.name for c in COLUMNS if c.required and c.attr not in reader.headers]
    if missing:
        raise SettlementFileError("The header has no " + ", ".join(missing) + " column")


def _row(line: int, cells: Sequence[str], columns: dict[int, Column], reader: Reader) -> Row:
    values: dict[str, Any] = {}
    errors: list[dict[str, str]] = []

    def problem(column: Column, message: str) -> None:
        errors.append({"field": reader.headers.get(column.attr, column.name), "message": message})

    raw = {c.attr: cells[i].strip() for i, c in columns.items() if i < len(cells)}
    for column in COLUMNS:
        value = raw.get(column.attr, "")
        if not value:
            if column.required:
                problem(column, f"{column.name} is missing")
            values[column.attr] = None
            continue
        if column.attr in _AMOUNTS:
            if not _INTEGER.fullmatch(value):
                problem(column, f"“{value[:40]}” is not a whole number of minor units")
                continue
            values[column.attr] = int(value)
        elif column.attr in _CURRENCIES:
            try:
                exponent(value.upper())
            except MoneyError:
                problem(column, f"“{value[:40]}” is not a currency code")
                continue
            values[column.attr] = value.upper()
        elif column.attr == "transaction_time":
            at = parse_time(value)
            if at is None:
                problem(column, f"“{value[:40]}” is not a time (ISO 8601)")
                continue
            values[column.attr] = at
        elif len(value) > MAX_TEXT:
            problem(column, f"longer than {MAX_TEXT} characters")
        else:
            values[column.attr] = value
    kind = values.get("transaction_type")
    if kind is not None and not _TYPE.fullmatch(kind):
        problem(COLUMNS[1], f"“{kind}” is not a transaction type")
    if kind in (REFUND, REVERSAL) and not errors:
        for name in ("original_transaction_id", "transaction_request_id"):
            if not values.get(name):
                column = next(c for c in COLUMNS if c.attr == name)
                problem(column, f"{column.name} is needed on a {kind} row")
    if any(c.strip() for c in cells[reader.width :]):
        errors.append({"field": "", "message": "more values than the header has columns"})
    return Row(line, values if not errors else {}, errors)


# ---------------------------------------------------------------- the import


async def start_import(
    session: AsyncSession, *, filename: str, path: Path, user_pk: int | None
) -> SettlementImport:
    """Record an import of the report at ``path``, its size counted for the progress bar."""
    job = SettlementImport(
        filename=(filename or "settlement.csv")[:200],
        uploaded_by=user_pk,
        status=OrderImportStatus.RUNNING,
        total_lines=count_lines(path),
    )
    session.add(job)
    await session.flush()
    return job


async def run_import(
    engine: AsyncEngine,
    import_pk: int,
    path: Path,
    actor: audit.Actor | None = None,
    *,
    remove: bool = False,
) -> SettlementImport:
    """Import the report at ``path`` into ``import_pk``, ``CHUNK`` rows per transaction.

    A file that cannot be read marks the import failed with the reason (nothing stored);
    an error part-way leaves the chunks already done (importing again finishes it).
    ``remove`` deletes the file afterwards (an upload's temporary copy)."""
    reader = Reader()
    cause = ledger.Cause(
        EventSource.RECONCILIATION,
        request_id=actor.request_id if actor else None,
        actor_id=actor.user_id if actor else None,
        who=actor,
    )
    try:
        chunk: list[Row] = []
        for row in read_rows(path, reader):
            chunk.append(row)
            if len(chunk) >= CHUNK:
                await _import_chunk(engine, import_pk, chunk, cause)
                chunk = []
        await _import_chunk(engine, import_pk, chunk, cause, last=True)
        return await _finish(engine, import_pk, OrderImportStatus.DONE, reader.notes, actor)
    except SettlementFileError as exc:
        return await _finish(engine, import_pk, OrderImportStatus.FAILED, [str(exc)], actor)
    except Exception:
        await _finish(engine, import_pk, OrderImportStatus.FAILED, reader.notes, actor)
        raise
    finally:
        if remove:
            await asyncio.to_thread(path.unlink, missing_ok=True)


async def _import_chunk(
    engine: AsyncEngine, import_pk: int, rows: list[Row], cause: ledger.Cause, *, last: bool = False
) -> None:
    async with session_scope(engine) as session:
        job = await session.get(SettlementImport, import_pk)
        assert job is not None
        good: dict[tuple[str, str, str], Row] = {}
        for row in rows:
            if row.errors:
                job.rejected_count += 1
                report_line(job, row.line, row.errors)
            else:
                key = (
                    row.values["settlement_batch_id"],
                    row.values["transaction_type"],
                    row.values["transaction_id"],
                )
                if key in good:
                    job.unchanged_count += 1  # the same row twice in one file
                else:
                    good[key] = row
        new = await _store(session, import_pk, list(good.values()))
        job.new_count += len(new)
        job.unchanged_count += len(good) - len(new)
        for row in new:
            await _act(session, job, row, cause)
        job.processed_lines = (
            job.total_lines if last else max(job.processed_lines, rows[-1].line if rows else 0)
        )
        job.updated_at = utcnow()
        session.add(job)


async def _store(session: AsyncSession, import_pk: int, rows: list[Row]) -> list[Row]:
    """Insert the rows not stored before (by their key); the ones inserted, in file order."""
    if not rows:
        return []
    table = SettlementLine.__table__  # type: ignore[attr-defined]
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(table)
        .values([{"import_pk": import_pk, "line": r.line, **r.values} for r in rows])
        .on_conflict_do_nothing(index_elements=list(KEY))
        .returning(*(table.c[k] for k in KEY))
    )
    inserted = {tuple(k) for k in (await session.exec(stmt)).all()}
    return [r for r in rows if tuple(r.values[k] for k in KEY) in inserted]


async def _act(session: AsyncSession, job: SettlementImport, row: Row, cause: ledger.Cause) -> None:
    kind = row.values["transaction_type"]
    if kind not in (REFUND, REVERSAL):
        return
    refund = await _match(session, row, by_refund_id=kind == REFUND)
    if refund is not None:
        await session.exec(
            sa.update(SettlementLine)
            .where(*(col(getattr(SettlementLine, k)) == row.values[k] for k in KEY))
            .values(refund_pk=refund.id)
        )
    if kind == REFUND:
        await _reconcile(session, job, row, refund)
    else:
        await _reversal(session, job, row, refund, cause)


async def _match(session: AsyncSession, row: Row, *, by_refund_id: bool) -> Refund | None:
    v = row.values
    tries: list[sa.ColumnElement[bool]] = [
        col(Refund.refund_request_id) == v["transaction_request_id"]
    ]
    if by_refund_id:
        tries.append(col(Refund.refund_id) == v["transaction_id"])
    if v.get("acquirer_reference_no"):
        tries.append(col(Refund.acquirer_reference_no) == v["acquirer_reference_no"])
    for condition in tries:
        found = (await session.exec(select(Refund).where(condition).limit(2))).all()
        if len(found) == 1:
            return ledger.typed(found[0])
    return None


def _amount(row: Row) -> str:
    return format_minor(abs(row.values["amount_minor"]), row.values["currency"])


def _same_amount(row: Row, refund: Refund) -> bool:
    minor: int = abs(row.values["amount_minor"])
    currency: str = row.values["currency"]
    return minor == refund.amount_minor and currency == refund.currency


async def _payment_pk(session: AsyncSession, payment_id: str | None) -> int | None:
    if not payment_id:
        return None
    found = await session.exec(select(Payment.id).where(col(Payment.payment_id) == payment_id))
    pk: int | None = found.first()
    return pk


async def _raise(
    session: AsyncSession,
    job: SettlementImport,
    kind: AlertKind,
    subject: str,
    message: str,
    row: Row,
    **links: int | None,
) -> None:
    detail = {
        "settlement_import": job.id,
        "line": row.line,
        "settlementBatchId": row.values["settlement_batch_id"],
        "transactionId": row.values["transaction_id"],
    }
    if await raise_alert(session, kind, subject, message, detail=detail, **links):
        job.raised_count += 1


async def _reconcile(
    session: AsyncSession, job: SettlementImport, row: Row, refund: Refund | None
) -> None:
    v = row.values
    if refund is None:
        payment_pk = await _payment_pk(session, v["original_transaction_id"])
        if payment_pk is not None:
            await _raise(
                session,
                job,
                AlertKind.RECONCILE,
                f"settled:{v['transaction_id']}",
                f"Antom settled a refund of {_amount(row)} ({v['transaction_id']}) the desk "
                "has no record of on this payment",
                row,
                payment_pk=payment_pk,
            )
        return
    status = RefundStatus(refund.status)
    if status in (RefundStatus.SUCCEEDED, RefundStatus.REVERSED) and _same_amount(row, refund):
        return
    if not _same_amount(row, refund):
        why = f"Antom settled {_amount(row)}, the desk recorded " + format_minor(
            refund.amount_minor, refund.currency
        )
    else:
        why = f"Antom settled it ({_amount(row)}) but the desk holds it as {status.value}"
    await _raise(
        session,
        job,
        AlertKind.RECONCILE,
        f"settled:refund:{refund.id}",
        f"Refund {refund.refund_request_id}: {why}",
        row,
        refund_pk=refund.id,
        payment_pk=refund.payment_pk,
    )


async def _reversal(
    session: AsyncSession,
    job: SettlementImport,
    row: Row,
    refund: Refund | None,
    cause: ledger.Cause,
) -> None:
    v = row.values
    if refund is None:
        payment_pk = await _payment_pk(session, v["original_transaction_id"])
        if payment_pk is not None:
            await _raise(
                session,
                job,
                AlertKind.RECONCILE,
                f"reversal:{v['transaction_id']}",
                f"Antom reversed a refund ({v['transaction_request_id']}, {_amount(row)}) the "
                "desk has no record of on this payment",
                row,
                payment_pk=payment_pk,
            )
        return
    assert refund.id is not None
    batch = v["settlement_batch_id"]
    moved = await ledger.reverse(
        session,
        refund.id,
        returned_minor=abs(v["amount_minor"]),
        reversed_at=v["transaction_time"] or utcnow(),
        cause=cause,
        summary=(
            f"Antom reversed the refund: {_amount(row)} came back to the merchant "
            f"(settlement batch {batch}); not refundable again until a lead decides"
        ),
        detail={"settlementBatchId": batch, "transactionId": v["transaction_id"], "line": row.line},
    )
    links = {"refund_pk": refund.id, "payment_pk": refund.payment_pk}
    if moved is not None:
        job.reversed_count += 1
        await _raise(
            session,
            job,
            AlertKind.REVERSED,
            f"refund:{refund.id}",
            f"Refund {refund.refund_request_id} was reversed: {_amount(row)} came back to the "
            "merchant, the buyer did not get it. Decide whether it is refundable again",
            row,
            **links,
        )
    elif refund.status is not RefundStatus.REVERSED:
        await _raise(
            session,
            job,
            AlertKind.RECONCILE,
            f"reversal:refund:{refund.id}",
            f"Refund {refund.refund_request_id}: Antom reversed it ({_amount(row)}) but the "
            f"desk holds it as {refund.status.value}",
            row,
            **links,
        )
    if not _same_amount(row, refund):
        await _raise(
            session,
            job,
            AlertKind.RECONCILE,
            f"reversal-amount:refund:{refund.id}",
            f"Refund {refund.refund_request_id}: Antom reversed {_amount(row)}, the desk "
            f"recorded {format_minor(refund.amount_minor, refund.currency)}",
            row,
            **links,
        )


async def _finish(
    engine: AsyncEngine,
    import_pk: int,
    status: OrderImportStatus,
    notes: list[str],
    actor: audit.Actor | None,
) -> SettlementImport:
    async with session_scope(engine) as session:
        job = await session.get(SettlementImport, import_pk)
        assert job is not None
        if job.status == OrderImportStatus.RUNNING:
            job.status, job.finished_at, job.updated_at = status, utcnow(), utcnow()
            job.notes = [*job.notes, *notes]
            if status is OrderImportStatus.DONE:
                job.processed_lines = job.total_lines
            session.add(job)
            await audit.record(
                session,
                audit.Action.IMPORTED,
                actor,
                object_type="settlement_import",
                object_id=job.id,
                detail={
                    "source": "settlement",
                    "filename": job.filename,
                    "status": str(job.status),
                    "new": job.new_count,
                    "unchanged": job.unchanged_count,
                    "rejected": job.rejected_count,
                    "reversed": job.reversed_count,
                    "raised": job.raised_count,
                },
            )
        await session.flush()
        await session.refresh(job)
        return job


# ---------------------------------------------------------------- reading imports back


async def get_import(session: AsyncSession, import_pk: int) -> SettlementImport | None:
    return await session.get(SettlementImport, import_pk)


async def recent_imports(session: AsyncSession, limit: int = 10) -> Sequence[SettlementImport]:
    result = await session.exec(
        select(SettlementImport).order_by(col(SettlementImport.id).desc()).limit(limit)
    )
    return result.all()


def shown_name(name: str) -> str:
    """An uploaded file's name as it may be shown and stored (no folders)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1][:200] or "settlement.csv"


async def reversal_lines(session: AsyncSession, payment_pk: int) -> Sequence[SettlementLine]:
    """The REFUND_REVERSAL rows about a payment's refunds, for its page."""
    result = await session.exec(
        select(SettlementLine)
        .join(Refund, col(Refund.id) == col(SettlementLine.refund_pk))
        .where(col(Refund.payment_pk) == payment_pk, SettlementLine.transaction_type == REVERSAL)
        .order_by(col(SettlementLine.id))
    )
    return result.all()


class ReleaseError(ValueError):
    """The refund cannot be made refundable again (not reversed, or already released)."""


async def make_refundable_again(
    session: AsyncSession, refund_pk: int, *, actor: audit.Actor, note: str
) -> Refund:
    """A lead's decision on a reversed refund: its amount is refundable again. The note
    (why) is required and kept on the refund, its timeline and the audit trail."""
    if len(note.strip()) < 5:
        raise ReleaseError("Say why the amount may be refunded again (at least 5 characters)")
    cause = ledger.Cause(
        EventSource.AGENT, request_id=actor.request_id, actor_id=actor.user_id, who=actor
    )
    refund = await ledger.release_reversal(
        session,
        refund_pk,
        cause=cause,
        note=note,
        summary=f"Made refundable again after the reversal: {note.strip()}",
    )
    if refund is None:
        raise ReleaseError("This refund is not reversed, or was made refundable again already")
    return refund
