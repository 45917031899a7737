"""Running an approved bulk batch: paced, leased, resumable, exactly once per row.

No web framework here. ``BulkRunner.drive(batch_pk)`` takes the batch's lease (one
driver per batch across every instance: ``web/services/leases.py`` on ``bulk_batches``)
and sends its rows, a few at a time, each through the same exactly-once path as a
single refund:

1. **Write ahead**, one short transaction per row: the batch row is read under a shared
   lock and must still be RUNNING and leased to this driver (a cancel takes the same row
   exclusively, so no row is written ahead once a cancel has committed); the payment is
   judged again by the refund rules (it may have changed since the preview); the ledger
   reserves the amount and writes the refund PENDING with a fresh ``refundRequestId``,
   its ``form_token`` ``bulk:<row id>`` (UNIQUE: one refund per row, ever), already
   leased to this driver so no poller asks about it meanwhile; the row points at it.
2. **Send** (``web.services.sending.send``, the one send path): Antom is called with no
   transaction open; every answer is recorded by the ledger. Calls (not write-aheads)
   are spaced by the shared ``RateLimiter`` (``web/services/pacing.py``), which learns
   Antom's limit from ``REQUEST_TRAFFIC_EXCEED_LIMIT``; a rate-limited or unknown answer
   is retried with the SAME ``refundRequestId``. What stays unknown is left PROCESSING
   for the poller — unknown is never failed.
3. **Resume**: a driver that finds rows written ahead but never finished (its
   predecessor died) re-sends those still PENDING with their own ids (Antom's
   idempotency on ``refundRequestId`` makes a call that did arrive harmless), once it
   holds their refund's lease; it never writes a second refund for a row.

Refunds carry the batch's requester as agent and its approver as ``decided_by``; they
count against nobody's personal limits (the batch's approval is the four eyes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.client import AntomClient
from web.antom.messages import RefundRequest
from web.antom.money import format_minor
from web.db import read_scope, session_scope
from web.faults import fault_point
from web.models import (
    BulkBatch,
    BulkExpect,
    BulkRow,
    BulkStatus,
    EventSource,
    Payment,
    Refund,
    RefundStatus,
    utcnow,
)
from web.rules import refunds as rules
from web.services import audit, ledger
from web.services.bulk import progress, typed
from web.services.leases import Leases, new_owner
from web.services.pacing import RateLimiter, retry_after
from web.services.reasons import catalogue
from web.services.refunds import PENDING_RECHECK, facts_of, new_refund_request_id
from web.services.sending import refund_request_for, send
from web.settings import BulkConfig

log = logging.getLogger(__name__)

CHUNK = 200  # rows read per query
# Same-id retries of one row after a rate-limit answer (each waits for the limiter),
# and after an unknown answer (timeout, 5xx, U); then the poller takes over.
RATE_LIMIT_RETRIES = 20
UNKNOWN_RETRY_DELAYS_S = (0.3, 1.0)
PROGRESS_EVERY_S = 0.5  # how often the batch row is touched (open pages hear it)


@dataclass(slots=True)
class RunStats:
    batch_pk: int
    written: int = 0  # refunds written ahead (and sent) by this driver
    resent: int = 0  # refunds a predecessor wrote ahead, sent again by this one
    refused: int = 0  # rows the rules refused when their turn came
    rate_limited: int = 0
    outcome: str = ""  # finished, cancelled, lost_lease, busy


class BulkRunner:
    """One process's driver of bulk batches (any number may run; leases share them)."""

    def __init__(
        self,
        engine: AsyncEngine,
        antom: AntomClient,
        *,
        notify_url: str | None,
        config: BulkConfig | None = None,
        owner: str | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.engine = engine
        self.antom = antom
        self.notify_url = notify_url
        self.config = config or BulkConfig()
        self.owner = owner or new_owner()
        self.batches = Leases(engine, self.owner, self.config.lease_s, model=BulkBatch)
        self.refunds = Leases(engine, self.owner, self.config.lease_s)
        self.limiter = limiter or RateLimiter(self.config.max_rate, self.config.min_rate)
        self._reason_labels: dict[str, str] = {}

    # ------------------------------------------------------------ batches

    async def drive_due(self) -> list[RunStats]:
        """Drive every approved or interrupted batch nobody else is driving."""
        async with read_scope(self.engine) as session:
            due = (
                await session.exec(
                    select(BulkBatch.id)
                    .where(col(BulkBatch.status).in_([BulkStatus.APPROVED, BulkStatus.RUNNING]))
                    .order_by(col(BulkBatch.id))
                )
            ).all()
        done = []
        for pk in due:
            if pk is not None:
                done.append(await self.drive(pk))
        return done

    async def drive(self, batch_pk: int) -> RunStats:
        """Run (or resume) one batch to its end, unless another driver holds it."""
        stats = RunStats(batch_pk)
        claimed = await self.batches.claim(
            utcnow(),
            [
                col(BulkBatch.id) == batch_pk,
                col(BulkBatch.status).in_([BulkStatus.APPROVED, BulkStatus.RUNNING]),
            ],
            [col(BulkBatch.id)],
            1,
        )
        if not claimed:
            stats.outcome = "busy"
            return stats
        try:
            stats.outcome = await self._run(batch_pk, stats)
        finally:
            await self._let_go(batch_pk)
        log.info(
            "bulk batch %s %s: written=%d resent=%d refused=%d rate_limited=%d owner=%s",
            batch_pk,
            stats.outcome,
            stats.written,
            stats.resent,
            stats.refused,
            stats.rate_limited,
            self.owner,
        )
        return stats

    async def _run(self, batch_pk: int, stats: RunStats) -> str:
        batch = await self._start(batch_pk)
        if batch is None:
            return "lost_lease"
        self._reason_labels = await self._labels()
        cause = self._cause(batch)
        slots = asyncio.Semaphore(self.config.concurrency)
        stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        self._touched = time.monotonic()

        async def run_one(row_pk: int, resume_refund: int | None) -> None:
            try:
                if resume_refund is not None:
                    await self._resume(row_pk, resume_refund, cause, stats, stop)
                else:
                    await self._row(batch, row_pk, cause, stats, stop)
            except Exception:
                # One bad row must not end the run; its refund (if written) is the poller's.
                log.exception("bulk batch %s: row %s failed", batch_pk, row_pk)
            finally:
                slots.release()
                await self._maybe_touch(batch_pk)

        async def launch(row_pk: int, resume_refund: int | None = None) -> bool:
            await slots.acquire()
            if stop.is_set() or not await self.batches.renew(batch_pk):
                slots.release()
                stop.set()
                return False
            tasks.add(asyncio.create_task(run_one(row_pk, resume_refund)))
            tasks.difference_update({t for t in tasks if t.done()})
            return True

        # Rows a predecessor wrote ahead and never finished, first.
        for row_pk, refund_pk in await self._unfinished(batch_pk):
            if not await launch(row_pk, refund_pk):
                break
        cursor = 0
        while not stop.is_set():
            chunk = await self._to_write(batch_pk, cursor)
            if not chunk:
                break
            for row_pk in chunk:
                cursor = row_pk
                if not await launch(row_pk):
                    break
        if tasks:
            await asyncio.gather(*tasks)
        return await self._finish(batch_pk)

    async def _start(self, batch_pk: int) -> BulkBatch | None:
        async with session_scope(self.engine) as session:
            batch = await _batch_locked(session, batch_pk, read=False)
            if batch is None or batch.lease_owner != self.owner:
                return None
            resumed = batch.status is BulkStatus.RUNNING
            if batch.status is BulkStatus.APPROVED:
                batch.status = BulkStatus.RUNNING
                batch.started_at = utcnow()
            batch.progress_at = utcnow()
            await audit.record(
                session,
                audit.Action.BULK_STARTED,
                audit.Actor(label="bulk", request_id=_request_id(batch_pk)),
                object_type="bulk_batch",
                object_id=batch_pk,
                before={"status": BulkStatus.RUNNING.value if resumed else "approved"},
                after={"status": BulkStatus.RUNNING.value},
                detail={"resumed": resumed, "driver": self.owner},
            )
            return batch

    async def _finish(self, batch_pk: int) -> str:
        async with session_scope(self.engine) as session:
            batch = await _batch_locked(session, batch_pk, read=False)
            if batch is None:
                return "lost_lease"
            if batch.status is BulkStatus.CANCELLED:
                return "cancelled"
            if batch.status is not BulkStatus.RUNNING or batch.lease_owner != self.owner:
                return "lost_lease"
            if await self._to_write(batch_pk, 0, session=session, limit=1):
                return "lost_lease"  # stopped early (the lease lapsed): the next driver goes on
            now = utcnow()
            batch.status = BulkStatus.FINISHED
            batch.finished_at = batch.progress_at = now
            seen = await progress(session, batch, now)
            await audit.record(
                session,
                audit.Action.BULK_FINISHED,
                audit.Actor(label="bulk", request_id=_request_id(batch_pk)),
                object_type="bulk_batch",
                object_id=batch_pk,
                before={"status": BulkStatus.RUNNING.value},
                after={"status": BulkStatus.FINISHED.value},
                detail={
                    "counts": {
                        c.currency: {
                            "done": c.done,
                            "processing": c.processing,
                            "failed": c.failed,
                            "refused": c.refused,
                            "excluded": c.excluded,
                        }
                        for c in seen.counts
                    }
                },
            )
            return "finished"

    async def _let_go(self, batch_pk: int) -> None:
        with contextlib.suppress(Exception):
            async with session_scope(self.engine) as session:
                await self.batches.release(session, batch_pk, None)

    async def _maybe_touch(self, batch_pk: int) -> None:
        """Touch the batch row now and then: its commit tells open pages (web/live.py)."""
        if time.monotonic() - self._touched < PROGRESS_EVERY_S:
            return
        self._touched = time.monotonic()
        with contextlib.suppress(Exception):
            async with session_scope(self.engine) as session:
                batch = await session.get(BulkBatch, batch_pk)
                if batch is not None:
                    batch.progress_at = utcnow()

    # ------------------------------------------------------------ rows

    async def _to_write(
        self,
        batch_pk: int,
        after_id: int,
        *,
        session: AsyncSession | None = None,
        limit: int = CHUNK,
    ) -> list[int]:
        query = (
            select(BulkRow.id)
            .where(
                col(BulkRow.batch_pk) == batch_pk,
                col(BulkRow.id) > after_id,
                sa.not_(col(BulkRow.excluded)),
                col(BulkRow.expect) != BulkExpect.REFUSED,
                col(BulkRow.refund_pk).is_(None),
                col(BulkRow.run_problem).is_(None),
            )
            .order_by(col(BulkRow.id))
            .limit(limit)
        )
        if session is not None:
            return [pk for pk in (await session.exec(query)).all() if pk is not None]
        async with read_scope(self.engine) as own:
            return [pk for pk in (await own.exec(query)).all() if pk is not None]

    async def _unfinished(self, batch_pk: int) -> list[tuple[int, int]]:
        """Rows whose refund was written ahead and never answered (a driver died)."""
        async with read_scope(self.engine) as session:
            rows = (
                await session.exec(
                    select(BulkRow.id, BulkRow.refund_pk)
                    .join(Refund, col(Refund.id) == col(BulkRow.refund_pk))
                    .where(
                        col(BulkRow.batch_pk) == batch_pk,
                        col(Refund.status) == RefundStatus.PENDING,
                    )
                    .order_by(col(BulkRow.id))
                )
            ).all()
        return [(int(r), int(f)) for r, f in rows if r is not None and f is not None]

    async def _row(
        self,
        batch: BulkBatch,
        row_pk: int,
        cause: ledger.Cause,
        stats: RunStats,
        stop: asyncio.Event,
    ) -> None:
        # Paced right before each call, not before the write-ahead: transactions queue
        # for the database at uneven speeds, and pacing ahead of that queue let calls
        # reach Antom in bursts, which its limit refuses (and the limiter then learnt a
        # rate below the real one). At most ``concurrency`` rows wait written ahead.
        written = await self._write_ahead(batch, row_pk, stop)
        if written is None:
            return
        if isinstance(written, str):
            stats.refused += 1
            return
        refund, payment = written
        stats.written += 1
        fault_point("bulk_after_write_ahead")
        await self._send(refund, payment, cause, stats, stop)

    async def _write_ahead(
        self, batch: BulkBatch, row_pk: int, stop: asyncio.Event
    ) -> tuple[Refund, Payment] | str | None:
        """The row's refund, written ahead and leased to this driver; a message when the
        rules refuse it now; None when the batch must not go on (cancelled, lease lost)."""
        assert batch.id is not None
        now = utcnow()
        for _ in range(3):
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                current = await _batch_locked(session, batch.id, read=True)
                if (
                    current is None
                    or current.status is not BulkStatus.RUNNING
                    or current.lease_owner != self.owner
                ):
                    stop.set()
                    return None
                row = await session.get(BulkRow, row_pk, populate_existing=True)
                if row is None or row.refund_pk is not None or row.payment_pk is None:
                    return None
                # Locked (PostgreSQL; SQLite has one writer anyway): rows of one payment
                # run side by side, and each must judge it with the others' reservations
                # in, not fail the ledger's optimistic check (``Expected``) over and over.
                payment = await session.get(
                    Payment, row.payment_pk, populate_existing=True, with_for_update=True
                )
                assert payment is not None and row.amount_minor is not None
                facts = facts_of(payment)
                violations = rules.check_refund(facts, payment.currency, row.amount_minor, now)
                if violations:
                    message = "; ".join(v.message for v in violations)
                    row.run_problem = f"Refused when its turn came: {message}"[:500]
                    await session.commit()
                    return message
                amount = format_minor(row.amount_minor, payment.currency)
                label = self._reason_labels.get(row.reason, row.reason)[:80]
                refund = Refund(
                    refund_request_id=new_refund_request_id(),
                    payment_pk=payment.id or 0,
                    currency=payment.currency,
                    amount_minor=row.amount_minor,
                    status=RefundStatus.PENDING,
                    reason=row.reason,
                    reason_text=label,
                    note=row.note,
                    agent_id=current.created_by,
                    decided_by=current.decided_by,
                    decided_at=current.decided_at,
                    form_token=f"bulk:{row_pk}",
                    next_check_at=now + PENDING_RECHECK,
                    lease_owner=self.owner,
                    lease_until=now + timedelta(seconds=self.config.lease_s),
                )
                try:
                    opened = await ledger.open_refund(
                        session,
                        payment,
                        amount_minor=row.amount_minor,
                        expected=ledger.Expected(facts.refundable_minor, facts.refund_count),
                        max_refunds=rules.profile_for(payment.method).max_refunds,
                        refund=refund,
                        cause=_cause_of(current, EventSource.AGENT),
                        summary=f"Bulk batch {batch.id}, line {row.line}: a refund of "
                        f"{amount} ({label}), approved for the batch",
                        detail={
                            "refund_request_id": refund.refund_request_id,
                            "bulk_batch": batch.id,
                            "line": row.line,
                            "note": row.note,
                        },
                    )
                    if opened is None:
                        await session.rollback()
                        continue  # the payment moved between the read and the reservation
                    row.refund_pk = opened.id
                    await session.commit()
                except IntegrityError:
                    # This row's refund exists already (form_token): never a second one.
                    await session.rollback()
                    return None
                assert opened.id is not None
                self.refunds.held(opened.id)
                return ledger.typed(opened), payment
        async with session_scope(self.engine) as session:
            row = await session.get(BulkRow, row_pk)
            if row is not None and row.refund_pk is None:
                row.run_problem = "Refused when its turn came: the payment kept changing"
        return "the payment kept changing"

    async def _resume(
        self,
        row_pk: int,
        refund_pk: int,
        cause: ledger.Cause,
        stats: RunStats,
        stop: asyncio.Event,
    ) -> None:
        """A row written ahead by a driver that died: send it again (same id) if no
        answer was ever recorded, once its refund's lease is ours."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            refund = await session.get(Refund, refund_pk)
            payment = await session.get(Payment, refund.payment_pk) if refund else None
        if refund is None or payment is None:
            return
        if RefundStatus(refund.status) is RefundStatus.PENDING:
            if not await self._claim_refund(refund_pk, stop):
                return  # someone else has it (the poller): it is sent with the same id
            stats.resent += 1
            await self._send(ledger.typed(refund), payment, cause, stats, stop)

    async def _claim_refund(self, refund_pk: int, stop: asyncio.Event) -> bool:
        """Lease a PENDING refund, waiting out a dead driver's lease (at most lease_s)."""
        deadline = time.monotonic() + self.config.lease_s + 1.0
        while True:
            claimed = await self.refunds.claim(
                utcnow(),
                [col(Refund.id) == refund_pk, col(Refund.status) == RefundStatus.PENDING],
                [col(Refund.id)],
                1,
            )
            if claimed:
                return True
            async with AsyncSession(self.engine) as session:
                refund = await session.get(Refund, refund_pk)
            if refund is None or RefundStatus(refund.status) is not RefundStatus.PENDING:
                return False
            if stop.is_set() or time.monotonic() > deadline or refund.lease_until is None:
                return False
            wait = (refund.lease_until - utcnow()).total_seconds()
            await asyncio.sleep(min(max(wait, 0.05), 1.0))

    async def _send(
        self,
        refund: Refund,
        payment: Payment,
        cause: ledger.Cause,
        stats: RunStats,
        stop: asyncio.Event,
    ) -> None:
        """The one send path, with the shared limiter's pacing and same-id retries."""
        assert refund.id is not None
        refund_pk = refund.id
        request: RefundRequest = refund_request_for(refund, payment, self.notify_url)
        rate_limited = unknown = 0

        async def before_call() -> bool:
            await self.limiter.acquire()
            return await self.refunds.renew(refund_pk)

        while True:
            sent = await send(
                self.engine,
                self.antom,
                request,
                refund,
                cause=cause,
                retry_delays=(),
                before_call=before_call,
            )
            refund = sent.refund
            if sent.verdict is None:
                return  # skipped (lease lost) or not recorded: the poller settles it
            if not (sent.verdict.retry or sent.verdict.settles):
                await self._let_go_refund(refund_pk)  # still processing: the poller's now
            if sent.result is not None and sent.result.rate_limited:
                stats.rate_limited += 1
                self.limiter.limited(retry_after(sent.result.exchange.response_headers))
                rate_limited += 1
                if rate_limited <= RATE_LIMIT_RETRIES and not stop.is_set():
                    continue
                await self._let_go_refund(refund_pk)
                return
            if sent.result is not None and sent.result.result_status is not None:
                self.limiter.succeeded()
            if sent.verdict.retry and unknown < len(UNKNOWN_RETRY_DELAYS_S):
                await asyncio.sleep(UNKNOWN_RETRY_DELAYS_S[unknown])
                unknown += 1
                continue
            if sent.verdict.retry:
                await self._let_go_refund(refund_pk)
            return

    async def _let_go_refund(self, refund_pk: int) -> None:
        """Hand an unsettled refund to the poller (a settled one's lease is already gone)."""
        async with session_scope(self.engine) as session:
            await self.refunds.release(session, refund_pk, None)

    # ------------------------------------------------------------ helpers

    async def _labels(self) -> dict[str, str]:
        async with read_scope(self.engine) as session:
            return {r.code: r.label for r in await catalogue(session)}

    def _cause(self, batch: BulkBatch) -> ledger.Cause:
        return _cause_of(batch, EventSource.ANTOM_RESPONSE)


def _request_id(batch_pk: int) -> str:
    return f"bulk-{batch_pk}"


def _cause_of(batch: BulkBatch, source: EventSource) -> ledger.Cause:
    """Refunds of a batch act for its requester (the approver is on the refund row)."""
    assert batch.id is not None
    return ledger.Cause(source, _request_id(batch.id), batch.created_by)


async def _batch_locked(session: AsyncSession, batch_pk: int, *, read: bool) -> BulkBatch | None:
    batch = (
        await session.exec(
            select(BulkBatch)
            .where(col(BulkBatch.id) == batch_pk)
            .with_for_update(read=read)
            .execution_options(populate_existing=True)
        )
    ).first()
    return typed(batch) if batch is not None else None


async def run_forever(runner: BulkRunner, stop: asyncio.Event, idle_s: float) -> None:
    """Drive approved and interrupted batches until ``stop`` (errors never end it)."""
    while not stop.is_set():
        try:
            await runner.drive_due()
        except Exception:
            log.exception("bulk driver %s: a pass failed", runner.owner)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=idle_s)
