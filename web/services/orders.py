"""The order feed: buyer and order details from the merchant, joined to Antom payments.

Antom's notifications and inquiries carry no buyer and no order reference, so without
this an agent could not find a caller's payment by email, name or order number. The
merchant's systems send them, as JSON (``POST /api/orders``, web/routes/api.py) or as a
CSV file a lead uploads (web/routes/orders.py); both end in ``save_record`` here.

* **One record** is a dict with the JSON field names of ``FIELDS``. ``validate`` turns
  it into an ``OrderRecord`` or a list of field-level ``Problem`` s; nothing is stored
  for a record with a problem, and the other records of the batch are not affected.
* **Idempotent.** An order is identified by its ``paymentRequestId`` (the merchant's own
  id, known before the payment exists), else its ``paymentId``. A later record for it
  changes the fields it carries (sent empty: cleared; left out: kept); sending the same
  record again changes nothing and says ``unchanged``. A whole batch can therefore be
  retried safely.
* **Either order of arrival.** A record for a payment the desk already has is copied
  onto it at once; one that arrives first waits in ``orders`` until the payment is
  created (``attach_waiting``, called by ``ledger.create_payment``). The payment keeps
  the searchable copy (order reference, buyer name and email: the list searches one
  table); the order row keeps the rest (phone, customer id, total, items).

Every import adds one audit row (web/services/audit.py) with its counts: an API request
when its records are saved (``ingest``), a CSV upload when its last line is (``run_import``).

No Litestar here.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import ANTOM_EXPONENTS, ISO_EXPONENTS, MoneyError, parse_amount
from web.db import session_scope
from web.models import Order, OrderImport, OrderImportStatus, Payment, User, utcnow
from web.services import audit
from web.services.audit import Action, Actor
from web.services.uploads import normalise_header, report_line

MAX_RECORDS = 1000  # per API request; more is one more request
MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_CSV_ROWS = 50_000
CSV_CHUNK = 200  # lines per transaction while importing (progress moves per chunk)
# An import whose progress has not moved for this long lost its process (a restart).

Source = Literal["api", "csv"]
Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class Spec:
    """One field of a record: its JSON name, the Order column, its size, CSV aliases."""

    name: str
    column: str
    max_chars: int
    label: str
    aliases: tuple[str, ...] = ()


FIELDS: tuple[Spec, ...] = (
    Spec("paymentRequestId", "payment_request_id", 64, "Antom paymentRequestId"),
    Spec("paymentId", "payment_id", 64, "Antom paymentId"),
    Spec(
        "referenceOrderId",
        "reference_order_id",
        64,
        "your order reference",
        ("orderreference", "orderref", "orderid", "order"),
    ),
    Spec("buyerName", "buyer_name", 120, "the buyer's name", ("name", "customername")),
    Spec("buyerEmail", "buyer_email", 254, "the buyer's email", ("email", "customeremail")),
    Spec("buyerPhone", "buyer_phone", 32, "the buyer's phone", ("phone", "customerphone")),
    Spec("customerId", "customer_id", 64, "your customer id", ("customer",)),
    Spec("orderTotal", "total_minor", 40, "the order total", ("total", "amount")),
    Spec("currency", "total_currency", 3, "the total's currency", ("ordercurrency",)),
    Spec("itemsSummary", "items_summary", 500, "what was ordered", ("items", "summary")),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
_BY_NAME = {f.name: f for f in FIELDS}
# Copied onto the payment: what the payments list shows and searches.
PAYMENT_COPY = ("reference_order_id", "buyer_name", "buyer_email")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ().-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one field of a record (``field`` "" for the record itself)."""

    field: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A valid record: column name → value, for the Order row."""

    values: Mapping[str, str | int | None]

    @property
    def payment_request_id(self) -> str | None:
        return _text(self.values.get("payment_request_id"))

    @property
    def payment_id(self) -> str | None:
        return _text(self.values.get("payment_id"))

    @property
    def key(self) -> str:
        return self.payment_request_id or self.payment_id or ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, FIELD_NAMES, n=1, cutoff=0.6)
    if not close:
        for spec in FIELDS:
            if normalise_header(name) in (normalise_header(spec.name), *spec.aliases):
                close = [spec.name]
    return f" (did you mean {close[0]}?)" if close else ""


def _clean_text(spec: Spec, raw: object) -> tuple[str | None, Problem | None]:
    if raw is None:
        return None, None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None, Problem(spec.name, f"{spec.name} must be text, not {type(raw).__name__}")
    text = str(raw).strip()
    if not text:
        return None, None
    if _CONTROL.search(text):
        return None, Problem(spec.name, f"{spec.name} contains a control character")
    if len(text) > spec.max_chars:
        return None, Problem(
            spec.name,
            f"{spec.name} is {len(text)} characters long; at most {spec.max_chars} are allowed",
        )
    return text, None


def _check_formats(values: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for column in ("payment_request_id", "payment_id", "customer_id"):
        if (value := values.get(column)) and any(c.isspace() for c in value):
            name = next(f.name for f in FIELDS if f.column == column)
            problems.append(Problem(name, f"{name} cannot contain spaces"))
    if (email := values.get("buyer_email")) and not _EMAIL.fullmatch(email):
        problems.append(Problem("buyerEmail", f"“{email}” is not an email address"))
    phone = values.get("buyer_phone")
    if phone and (not _PHONE.fullmatch(phone) or sum(c.isdigit() for c in phone) < 5):
        problems.append(
            Problem("buyerPhone", "buyerPhone: use digits, spaces and + ( ) . - only (5+ digits)")
        )
    return problems


def _check_currency(values: dict[str, Any]) -> list[Problem]:
    currency = values.get("total_currency")
    if currency is not None:
        currency = values["total_currency"] = currency.upper()
        if currency not in ANTOM_EXPONENTS and currency not in ISO_EXPONENTS:
            return [Problem("currency", f"“{currency}” is not a currency code Antom uses")]
    return []


def _check_total(values: dict[str, Any], raw_total: object) -> list[Problem]:
    """``orderTotal`` in major units ("129.00", or a JSON number) with its ``currency``."""
    if problems := _check_currency(values):
        return problems
    currency = values.get("total_currency")
    if raw_total is None or (isinstance(raw_total, str) and not raw_total.strip()):
        values["total_minor"] = None
        return []
    if isinstance(raw_total, bool) or not isinstance(raw_total, str | int | float):
        return [Problem("orderTotal", "orderTotal must be a number like 129.00")]
    if currency is None:
        return [Problem("currency", "Give the currency of orderTotal, e.g. USD")]
    try:
        values["total_minor"] = parse_amount(str(raw_total), currency)
    except MoneyError as exc:
        return [Problem("orderTotal", f"orderTotal: {exc}")]
    return []


def validate(raw: object) -> OrderRecord | list[Problem]:
    """One record from the feed, checked field by field; every problem is reported."""
    if not isinstance(raw, Mapping):
        return [Problem("", "Each record must be a JSON object with fields like paymentId")]
    problems = [
        Problem(str(name), f"Unknown field “{name}”{_suggest(str(name))}")
        for name in raw
        if name not in _BY_NAME
    ]
    # Only the fields the record carries: one it leaves out keeps its stored value.
    values: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.name == "orderTotal" or spec.name not in raw:
            continue
        value, problem = _clean_text(spec, raw[spec.name])
        if problem:
            problems.append(problem)
        else:
            values[spec.column] = value
    # Every problem at once, so one round trip fixes the record.
    problems += _check_formats(values)
    if "orderTotal" in raw and not any(p.field == "currency" for p in problems):
        problems += _check_total(values, raw["orderTotal"])
    elif not any(p.field == "currency" for p in problems):
        problems += _check_currency(values)
    if (
        not values.get("payment_request_id")
        and not values.get("payment_id")
        and not any(p.field in ("paymentRequestId", "paymentId") for p in problems)
    ):
        problems.append(
            Problem(
                "paymentRequestId",
                "Give paymentRequestId or paymentId: the Antom payment this order belongs to",
            )
        )
    if problems:
        return problems
    return OrderRecord(values)


# ---------------------------------------------------------------- storing and joining


@dataclass(frozen=True, slots=True)
class Saved:
    order: Order
    outcome: Outcome
    # The payment it is joined to, or None while that payment has not reached the desk.
    payment_pk: int | None


class Conflict(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


async def _order_by(session: AsyncSession, column: Any, value: str | None) -> Order | None:
    if value is None:
        return None
    return (await session.exec(select(Order).where(column == value))).first()


async def _existing(session: AsyncSession, record: OrderRecord) -> Order | None:
    """The order this record is about, by the identity rules in the module docstring."""
    prid, pid = record.payment_request_id, record.payment_id
    by_prid = await _order_by(session, col(Order.payment_request_id), prid)
    by_pid = await _order_by(session, col(Order.payment_id), pid)
    if by_prid is not None:
        if by_pid is not None and by_pid.id != by_prid.id:
            raise Conflict(
                Problem(
                    "paymentId",
                    f"paymentId {pid} already belongs to another order "
                    f"(paymentRequestId {by_pid.payment_request_id or 'none'})",
                )
            )
        return by_prid
    if by_pid is not None and by_pid.payment_request_id and prid:
        raise Conflict(
            Problem(
                "paymentId",
                f"paymentId {pid} belongs to the order with paymentRequestId "
                f"{by_pid.payment_request_id}, not {prid}",
            )
        )
    return by_pid


def _apply(order: Order, record: OrderRecord) -> bool:
    """Copy the fields the record carries onto the order (one sent empty clears it, one
    left out is kept; an identifier is never cleared); whether anything changed."""
    changed = False
    for column, value in record.values.items():
        if value is None and column in ("payment_request_id", "payment_id"):
            continue
        if getattr(order, column) != value:
            setattr(order, column, value)
            changed = True
    return changed


async def _payments_for(session: AsyncSession, order: Order) -> Sequence[Payment]:
    keys: list[sa.ColumnElement[bool]] = []
    if order.payment_request_id:
        keys.append(col(Payment.payment_request_id) == order.payment_request_id)
    if order.payment_id:
        keys.append(col(Payment.payment_id) == order.payment_id)
    if not keys:
        return []
    result = await session.exec(select(Payment).where(sa.or_(*keys)).order_by(col(Payment.id)))
    return result.all()


def _copy_onto(payment: Payment, order: Order) -> None:
    """The payment shows its order's latest details (the feed is their only source)."""
    for column in PAYMENT_COPY:
        if getattr(payment, column) != getattr(order, column):
            setattr(payment, column, getattr(order, column))
            payment.updated_at = utcnow()


async def _join(session: AsyncSession, order: Order) -> int | None:
    payments = await _payments_for(session, order)
    for payment in payments:
        _copy_onto(payment, order)
        session.add(payment)
    if payments and order.payment_pk != payments[-1].id:
        order.payment_pk = payments[-1].id
        order.joined_at = utcnow()
        session.add(order)
    await session.flush()
    return order.payment_pk


async def save_record(
    session: AsyncSession,
    record: OrderRecord,
    *,
    source: Source,
    api_key_pk: int | None = None,
    uploaded_by: int | None = None,
) -> Saved:
    """Create or update the order ``record`` is about and join it to its payment.

    Raises ``Conflict`` when its ids contradict an order already stored. Does not commit.
    """
    for attempt in (1, 2):
        order = await _existing(session, record)
        if order is not None:
            if not _apply(order, record):
                joined = order.payment_pk or await _join(session, order)
                return Saved(order, "unchanged", joined)
            order.source, order.api_key_pk, order.uploaded_by = source, api_key_pk, uploaded_by
            order.updated_at = utcnow()
            session.add(order)
            await session.flush()
            return Saved(order, "updated", await _join(session, order))
        order = Order(source=source, api_key_pk=api_key_pk, uploaded_by=uploaded_by)
        _apply(order, record)
        try:
            # A savepoint: a concurrent request that created the same order first makes
            # this insert fail alone, and the second pass then updates that order.
            async with session.begin_nested():
                session.add(order)
                await session.flush()
        except IntegrityError:
            if attempt == 2:
                raise
            continue
        return Saved(order, "created", await _join(session, order))
    raise AssertionError("unreachable")


async def attach_waiting(session: AsyncSession, payment: Payment) -> Order | None:
    """Called when the desk stores a new payment: copy a waiting order's details onto it.

    Two lookups on unique columns; the latest order wins if both ids match one each.
    """
    candidates = [
        o
        for o in (
            await _order_by(session, col(Order.payment_request_id), payment.payment_request_id),
            await _order_by(session, col(Order.payment_id), payment.payment_id),
        )
        if o is not None
    ]
    if not candidates:
        return None
    order = max(candidates, key=lambda o: (o.updated_at, o.id or 0))
    _copy_onto(payment, order)
    order.payment_pk, order.joined_at = payment.id, utcnow()
    session.add_all([payment, order])
    await session.flush()
    return order


async def order_for_payment(session: AsyncSession, payment: Payment) -> Order | None:
    """The order details to show on a payment's page (the latest one that matches it)."""
    keys = [col(Order.payment_id) == payment.payment_id]
    if payment.payment_request_id:
        keys.append(col(Order.payment_request_id) == payment.payment_request_id)
    result = await session.exec(
        select(Order).where(sa.or_(*keys)).order_by(col(Order.updated_at).desc()).limit(1)
    )
    return result.first()


# ---------------------------------------------------------------- batches (the API)


@dataclass(frozen=True, slots=True)
class RecordResult:
    index: int
    key: str | None = None
    outcome: Outcome | None = None
    payment_pk: int | None = None
    problems: Sequence[Problem] = ()

    @property
    def accepted(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        if self.problems:
            return {
                "index": self.index,
                "status": "rejected",
                "errors": [p.as_json() for p in self.problems],
            }
        return {
            "index": self.index,
            "status": self.outcome,
            "key": self.key,
            "payment": "joined" if self.payment_pk else "waiting",
        }


async def save_one(
    session: AsyncSession,
    index: int,
    raw: object,
    *,
    source: Source,
    api_key_pk: int | None = None,
    uploaded_by: int | None = None,
) -> RecordResult:
    checked = validate(raw)
    if isinstance(checked, list):
        return RecordResult(index, problems=checked)
    try:
        saved = await save_record(
            session, checked, source=source, api_key_pk=api_key_pk, uploaded_by=uploaded_by
        )
    except Conflict as exc:
        return RecordResult(index, key=checked.key, problems=[exc.problem])
    return RecordResult(index, checked.key, saved.outcome, saved.payment_pk)


class BatchError(ValueError):
    """The request as a whole is unusable (not a record or a list of records)."""


def records_of(body: object) -> list[object]:
    """The records in a request body: one JSON object, or a list of them."""
    if isinstance(body, Mapping):
        return [body]
    if isinstance(body, list):
        if not body:
            raise BatchError("The list of orders is empty")
        if len(body) > MAX_RECORDS:
            raise BatchError(
                f"{len(body):,} orders in one request; send at most {MAX_RECORDS:,} at a time"
            )
        return list(body)
    raise BatchError("Send one order as a JSON object, or several as a JSON list")


def _outcome_counts(results: Sequence[RecordResult]) -> dict[str, int]:
    outcomes = [r.outcome for r in results if r.accepted]
    return {
        "created": outcomes.count("created"),
        "updated": outcomes.count("updated"),
        "unchanged": outcomes.count("unchanged"),
        "rejected": sum(not r.accepted for r in results),
    }


async def ingest(
    session: AsyncSession,
    body: object,
    *,
    api_key_pk: int | None = None,
    actor: Actor | None = None,
) -> list[RecordResult]:
    """Every record of an API request, each accepted or rejected on its own; one audit
    row for the request (by ``actor``, the key's caller), with the counts."""
    results = [
        await save_one(session, i, raw, source="api", api_key_pk=api_key_pk)
        for i, raw in enumerate(records_of(body))
    ]
    await audit.record(
        session,
        Action.IMPORTED,
        actor,
        object_type="api_key" if api_key_pk is not None else None,
        object_id=api_key_pk,
        detail={"source": "api", "records": len(results), **_outcome_counts(results)},
    )
    return results


# ---------------------------------------------------------------- CSV files


_HEADER_NAMES: dict[str, str] = {}
for _spec in FIELDS:
    for _alias in (normalise_header(_spec.name), normalise_header(_spec.column), *_spec.aliases):
        _HEADER_NAMES[_alias] = _spec.name


@dataclass(frozen=True, slots=True)
class CsvLine:
    line: int  # where the record starts in the file, counting from 1 (the header)
    record: dict[str, str]
    # A line that cannot be a record at all (more values than the header has columns).
    problem: str | None = None


@dataclass
class CsvFile:
    """A parsed upload: its lines as records, or why the file cannot be read at all."""

    lines: list[CsvLine] = field(default_factory=list)
    # Problems with the file as a whole (encoding, header); no line is imported then.
    errors: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    # The file's own header for each field, to report problems in the file's words.
    headers: dict[str, str] = field(default_factory=dict)


def _decode(data: bytes) -> str | None:
    """UTF-8 with or without a BOM; UTF-16 when it starts with one (Excel's "Unicode")."""
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _delimiter(header_line: str) -> str:
    """Comma, or the semicolon or tab a spreadsheet in another locale writes."""
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_csv(data: bytes) -> CsvFile:
    """Read an uploaded CSV: BOM, CRLF or LF, any column order, blank lines skipped.

    The header names the columns (JSON names, snake_case or common aliases like
    ``email``; case, spaces and punctuation do not matter).
    """
    parsed = CsvFile()
    if len(data) > MAX_CSV_BYTES:
        parsed.errors.append(
            f"The file is {len(data) / 1024 / 1024:.1f} MB; upload at most "
            f"{MAX_CSV_BYTES // 1024 // 1024} MB at a time (split it into several files)"
        )
        return parsed
    text = _decode(data)
    if text is None:
        parsed.errors.append("The file is not UTF-8 text. Save it as “CSV UTF-8” and upload again")
        return parsed
    first = next((line for line in text.splitlines() if line.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first), strict=False)
    header: list[str] | None = None
    columns: list[str | None] = []
    start = 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = row
                columns = _map_header(parsed, header)
                if parsed.errors:
                    return parsed
                continue
            if len(row) > len(header):
                problem = f"{len(row)} values, but the header has {len(header)} columns"
                parsed.lines.append(CsvLine(line, {}, problem))
                continue
            record = {
                name: cell for name, cell in zip(columns, row, strict=False) if name is not None
            }
            parsed.lines.append(CsvLine(line, record))
            if len(parsed.lines) > MAX_CSV_ROWS:
                parsed.errors.append(
                    f"More than {MAX_CSV_ROWS:,} orders in one file; split it into several files"
                )
                return parsed
    except csv.Error as exc:
        parsed.errors.append(f"Line {start}: the file is not valid CSV ({exc})")
        return parsed
    if header is None:
        parsed.errors.append("The file is empty: it needs a header line and one line per order")
    return parsed


def _map_header(parsed: CsvFile, header: Sequence[str]) -> list[str | None]:
    columns: list[str | None] = []
    for cell in header:
        name = _HEADER_NAMES.get(normalise_header(cell))
        if name is None:
            if cell.strip():
                parsed.ignored_columns.append(cell.strip())
            columns.append(None)
            continue
        if name in parsed.headers:
            parsed.errors.append(
                f"Columns “{parsed.headers[name]}” and “{cell.strip()}” are both {name}"
            )
        parsed.headers[name] = cell.strip()
        columns.append(name)
    if "paymentRequestId" not in parsed.headers and "paymentId" not in parsed.headers:
        parsed.errors.append(
            "The header needs a paymentRequestId or paymentId column (the first line names "
            "the columns: " + ", ".join(FIELD_NAMES) + ")"
        )
    return columns


def _line_problems(parsed: CsvFile, line: CsvLine, problems: Iterable[Problem]) -> dict[str, Any]:
    return {
        "line": line.line,
        "errors": [
            {"field": parsed.headers.get(p.field, p.field), "message": p.message} for p in problems
        ],
    }


async def start_import(
    session: AsyncSession, user: User, filename: str, parsed: CsvFile
) -> OrderImport:
    """Record an upload whose lines ``run_import`` will then save."""
    assert user.id is not None and not parsed.errors
    job = OrderImport(
        filename=(filename or "orders.csv")[:200],
        uploaded_by=user.id,
        status=OrderImportStatus.RUNNING,
        total_lines=len(parsed.lines),
    )
    session.add(job)
    await session.flush()
    return job


async def _audit_import(session: AsyncSession, job: OrderImport, actor: Actor | None) -> None:
    """The import's one audit row, in the transaction that marks it done or failed."""
    await audit.record(
        session,
        Action.IMPORTED,
        actor,
        object_type="order_import",
        object_id=job.id,
        detail={
            "source": "csv",
            "filename": job.filename,
            "status": str(job.status),
            "lines": job.total_lines,
            "processed": job.processed_lines,
            "created": job.created_count,
            "updated": job.updated_count,
            "unchanged": job.unchanged_count,
            "rejected": job.rejected_count,
        },
    )


async def run_import(
    engine: AsyncEngine, import_pk: int, parsed: CsvFile, actor: Actor | None = None
) -> None:
    """Save an upload's lines, ``CSV_CHUNK`` per transaction, counting as it goes.

    Runs after the upload's response (a background task); the page polls the counts.
    A failure marks the import failed; the chunks already saved stay (they are upserts,
    so uploading the file again is safe). Either way the transaction that ends the
    import adds its audit row, naming ``actor`` (who uploaded it, from their request).
    """
    try:
        for start in range(0, len(parsed.lines), CSV_CHUNK):
            chunk = parsed.lines[start : start + CSV_CHUNK]
            async with session_scope(engine) as session:
                job = await session.get(OrderImport, import_pk)
                assert job is not None
                for line in chunk:
                    if line.problem is not None:
                        result = RecordResult(line.line, problems=[Problem("", line.problem)])
                    else:
                        result = await save_one(
                            session,
                            line.line,
                            line.record,
                            source="csv",
                            uploaded_by=job.uploaded_by,
                        )
                    _count(job, parsed, line, result)
                job.processed_lines += len(chunk)
                job.updated_at = utcnow()
                session.add(job)
        async with session_scope(engine) as session:
            job = await session.get(OrderImport, import_pk)
            assert job is not None
            job.status, job.finished_at = OrderImportStatus.DONE, utcnow()
            session.add(job)
            await _audit_import(session, job, actor)
    except Exception:
        async with session_scope(engine) as session:
            job = await session.get(OrderImport, import_pk)
            if job is not None and job.status == OrderImportStatus.RUNNING:
                job.status, job.finished_at = OrderImportStatus.FAILED, utcnow()
                session.add(job)
                await _audit_import(session, job, actor)
        raise


def _count(job: OrderImport, parsed: CsvFile, line: CsvLine, result: RecordResult) -> None:
    if result.problems:
        job.rejected_count += 1
        entry = _line_problems(parsed, line, result.problems)
        report_line(job, entry["line"], entry["errors"])
    elif result.outcome == "created":
        job.created_count += 1
    elif result.outcome == "updated":
        job.updated_count += 1
    else:
        job.unchanged_count += 1


async def get_import(session: AsyncSession, import_pk: int) -> OrderImport | None:
    return await session.get(OrderImport, import_pk)


async def recent_imports(session: AsyncSession, limit: int = 10) -> Sequence[OrderImport]:
    result = await session.exec(
        select(OrderImport).order_by(col(OrderImport.created_at).desc()).limit(limit)
    )
    return result.all()


async def waiting_count(session: AsyncSession) -> int:
    """Orders whose payment has not reached the desk yet."""
    result = await session.exec(
        select(sa.func.count()).select_from(Order).where(col(Order.payment_pk).is_(None))
    )
    return int(result.one())
