"""The inquiry poller: settles refunds whose outcome Antom has not confirmed yet.

Every web instance runs one (``web/jobs.py``), and ``refund-desk poller`` runs one as
a worker process; any number may share a database, because work is handed out by
leases on the refund rows (reliability notes §3.2):

* **Claim** in one short transaction: ``UPDATE refunds SET lease_owner=me,
  lease_until=now+lease WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``. PostgreSQL
  skips rows another poller is claiming; SQLite has one writer at a time anyway.
* **Renew** the lease (fenced on ``lease_owner``) right before each Antom call, and
  skip the refund if the lease was lost: no two pollers ask about one refund at once.
* **Call Antom outside any transaction**, then **write back** in one transaction that
  first releases the lease with ``WHERE lease_owner = me``: if another poller took the
  row meanwhile, nothing is written. Status changes go through ``apply_antom_status``.

What an inquiry says decides the next step: SUCCESS/FAIL are applied (forward only),
PROCESSING is checked again later with exponential backoff and jitter, a timeout or
``U`` is never a failure, rate limiting slows this poller down, and ``REFUND_NOT_EXIST``
for a refund the desk wrote means the call never reached Antom: it is re-sent with the
same ``refundRequestId`` — the only correct recovery. Refunds unsettled for too long
are raised to leads; nothing is ever failed automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web import metrics
from web.antom.client import AntomClient
from web.antom.messages import InquiryRefundResult, RefundCallResult, RefundOutcome
from web.antom.money import Money
from web.db import session_scope
from web.models import (
    Alert,
    AlertKind,
    EventSource,
    Payment,
    PollerHeartbeat,
    Refund,
    RefundStatus,
    utcnow,
)
from web.services import webhooks
from web.settings import PollerConfig

log = logging.getLogger(__name__)

UNSETTLED = (RefundStatus.PENDING, RefundStatus.PROCESSING)
_OUTCOME_STATUS = {
    RefundOutcome.SUCCEEDED: RefundStatus.SUCCEEDED,
    RefundOutcome.FAILED: RefundStatus.FAILED,
    RefundOutcome.PROCESSING: RefundStatus.PROCESSING,
}


def backoff_delay(age_s: float, config: PollerConfig, rng: random.Random | None = None) -> float:
    """Seconds until the next check: about half the refund's age, capped, equal jitter.

    Checks get geometrically rarer as a refund ages (exponential backoff without a
    counter to store), and the jitter keeps many refunds from being checked in lockstep.
    """
    ceiling = min(config.max_delay_s, max(config.base_delay_s, age_s / 2))
    r = rng or random
    return ceiling / 2 + r.uniform(0, ceiling / 2)


class RateLimiter:
    """Spaces calls at the current rate; halves it on a rate-limit answer (AIMD)."""

    def __init__(self, max_rate: float, min_rate: float) -> None:
        self.max_rate = max_rate
        self.min_rate = min_rate
        self.rate = max_rate
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._halved_at = -1e9
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot, self._paused_until)
            self._next_slot = slot + 1.0 / self.rate
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def limited(self, retry_after_s: float | None) -> None:
        now = time.monotonic()
        # Concurrent calls refused together are one signal, not several: halve once.
        if now - self._halved_at >= 1.0:
            self._halved_at = now
            self.rate = max(self.min_rate, self.rate / 2)
        pause = retry_after_s if retry_after_s is not None else 1.0 / self.rate
        self._paused_until = max(self._paused_until, time.monotonic() + pause)
        metrics.POLLER_RATE.set(self.rate)

    def succeeded(self) -> None:
        if self.rate < self.max_rate:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 50)
            metrics.POLLER_RATE.set(self.rate)


@dataclass(slots=True)
class CheckResult:
    refund_pk: int
    result: str  # succeeded, failed, processing, resent, rate_limited, unknown, lost_lease, ...
    changed: bool = False
    message: str = ""


@dataclass(slots=True)
class PassStats:
    request_id: str
    claimed: int = 0
    results: list[CheckResult] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Cause:
    """What a check is part of, for the timeline: its source, and the request id of the
    poller's pass (or of the agent's "check now" request)."""

    source: EventSource
    request_id: str


def new_owner() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def new_pass_id() -> str:
    """The request id of one poller pass: it plays the part of an HTTP request's id."""
    return f"poll-{uuid.uuid4().hex}"


def _retry_after(exchange_headers: Mapping[str, str]) -> float | None:
    raw = exchange_headers.get("retry-after") or exchange_headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, min(float(raw), 300.0))
    except ValueError:
        return None


class Poller:
    def __init__(
        self,
        engine: AsyncEngine,
        antom: AntomClient,
        *,
        notify_url: str | None,
        config: PollerConfig | None = None,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.antom = antom
        self.notify_url = notify_url
        self.config = config or PollerConfig()
        self.owner = owner or new_owner()
        self.limiter = RateLimiter(self.config.max_rate, self.config.min_rate)
        self.last_loop_at: datetime | None = None
        self.started_at: datetime | None = None
        self.running = False
        # When each of our leases was taken or last extended (monotonic clock).
        self._leased_at: dict[int, float] = {}
        self.rate_limit_hits = 0
        self.checks = 0
        self._gauges_at = 0.0
        metrics.POLLER_RATE.set(self.limiter.rate)

    # ------------------------------------------------------------ leases

    async def claim(
        self,
        now: datetime,
        *,
        limit: int,
        after_id: int | None = None,
        refund_pk: int | None = None,
    ) -> list[int]:
        """Lease up to ``limit`` refunds that are due (or, for reconciliation, all
        unsettled ones with ``id > after_id``; for "check now", just ``refund_pk``)."""
        lease_free = sa.or_(col(Refund.lease_until).is_(None), col(Refund.lease_until) < now)
        conditions: list[sa.ColumnElement[bool]] = [col(Refund.status).in_(UNSETTLED), lease_free]
        if refund_pk is not None:
            conditions.append(col(Refund.id) == refund_pk)
        else:
            grace = now - timedelta(seconds=self.config.pending_grace_s)
            conditions.append(
                sa.or_(
                    col(Refund.status) == RefundStatus.PROCESSING, col(Refund.created_at) <= grace
                )
            )
            if after_id is not None:
                conditions.append(col(Refund.id) > after_id)
            else:
                conditions.append(
                    sa.or_(col(Refund.next_check_at).is_(None), col(Refund.next_check_at) <= now)
                )
        order = (
            [col(Refund.id)]
            if after_id is not None
            else [col(Refund.next_check_at).asc().nulls_first(), col(Refund.id)]
        )
        candidates = (
            select(Refund.id)
            .where(*conditions)
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with session_scope(self.engine) as session:
            rows = await session.exec(
                sa.update(Refund)
                .where(col(Refund.id).in_(candidates.scalar_subquery()), lease_free)
                .values(
                    lease_owner=self.owner,
                    lease_until=now + timedelta(seconds=self.config.lease_s),
                )
                .returning(col(Refund.id))
                .execution_options(synchronize_session=False)
            )
            claimed = sorted(int(pk) for pk in rows.scalars().all())
        at = time.monotonic()
        self._leased_at.update(dict.fromkeys(claimed, at))
        return claimed

    async def _renew(self, refund_pk: int) -> bool:
        """Make sure our lease outlasts the Antom call about to start; False if it is no
        longer ours. A lease taken moments ago (first half of its life) already does, as
        long as ``lease_s / 2`` exceeds the client's timeout; older ones are extended."""
        leased_at = self._leased_at.get(refund_pk)
        if leased_at is not None and time.monotonic() - leased_at < self.config.lease_s / 2:
            return True
        now = utcnow()
        async with session_scope(self.engine) as session:
            renewed = await session.exec(
                sa.update(Refund)
                .where(
                    col(Refund.id) == refund_pk,
                    col(Refund.lease_owner) == self.owner,
                    col(Refund.lease_until) > now,
                )
                .values(lease_until=now + timedelta(seconds=self.config.lease_s))
                .execution_options(synchronize_session=False)
            )
            if renewed.rowcount != 1:
                return False
        self._leased_at[refund_pk] = time.monotonic()
        return True

    async def release_all(self) -> None:
        """Give back our leases (shutdown): another poller may pick them up at once."""
        async with session_scope(self.engine) as session:
            await session.exec(
                sa.update(Refund)
                .where(col(Refund.lease_owner) == self.owner)
                .values(lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    # ------------------------------------------------------------ passes

    async def run_once(self, *, source: EventSource = EventSource.POLLER) -> PassStats:
        """One pass: claim what is due, check it, write back. Returns what happened."""
        claimed = await self.claim(utcnow(), limit=self.config.batch)
        cause = Cause(source, new_pass_id())
        stats = PassStats(cause.request_id, claimed=len(claimed))
        stats.results = await self._check_all(claimed, cause)
        await self._after_pass()
        return stats

    async def reconcile(self) -> PassStats:
        """Start-up recovery: finish stored-but-unapplied notifications, then check every
        unsettled refund once, whatever its schedule (source RECONCILIATION)."""
        await webhooks.process_pending(self.engine)
        cause = Cause(EventSource.RECONCILIATION, new_pass_id())
        stats = PassStats(cause.request_id)
        cursor = 0
        while True:
            claimed = await self.claim(utcnow(), limit=self.config.batch, after_id=cursor)
            if not claimed:
                break
            cursor = max(claimed)
            stats.claimed += len(claimed)
            stats.results += await self._check_all(claimed, cause)
        await self._after_pass()
        return stats

    async def check_now(self, refund_pk: int, *, request_id: str | None = None) -> CheckResult:
        """The agent's "check now": this refund, immediately, if nobody else is on it.
        ``request_id`` is the agent's HTTP request, for the timeline."""
        claimed = await self.claim(utcnow(), limit=1, refund_pk=refund_pk)
        if not claimed:
            async with AsyncSession(self.engine) as session:
                refund = await session.get(Refund, refund_pk)
            if refund is None:
                return CheckResult(refund_pk, "not_found", message="No such refund")
            if RefundStatus(refund.status).final:
                return CheckResult(refund_pk, "final", message="This refund is already settled")
            return CheckResult(refund_pk, "busy", message="Another check is running right now")
        results = await self._check_all(
            claimed, Cause(EventSource.POLLER, request_id or new_pass_id())
        )
        return results[0]

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Reconcile once, then poll until ``stop`` is set; errors never end the loop."""
        self.running = True
        self.started_at = utcnow()
        try:
            await self.reconcile()
        except Exception:
            log.exception("poller %s: start-up reconciliation failed", self.owner)
        while not stop.is_set():
            worked = 0
            try:
                stats = await self.run_once()
                worked = stats.claimed
            except Exception:
                log.exception("poller %s: pass failed", self.owner)
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.config.idle_s)
        self.running = False
        await self.release_all()

    async def _check_all(self, refund_pks: list[int], cause: Cause) -> list[CheckResult]:
        semaphore = asyncio.Semaphore(self.config.concurrency)

        async def one(pk: int) -> CheckResult:
            async with semaphore:
                try:
                    return await self._check(pk, cause)
                except Exception as exc:
                    # One bad refund must not block the others; its lease simply expires.
                    log.exception("poller %s: checking refund %s failed", self.owner, pk)
                    return CheckResult(pk, "error", message=type(exc).__name__)

        return list(await asyncio.gather(*(one(pk) for pk in refund_pks)))

    async def _after_pass(self) -> None:
        now = utcnow()
        self.last_loop_at = now
        metrics.POLLER_LAST_LOOP.set(now.timestamp())
        await self._heartbeat(now)
        if time.monotonic() - self._gauges_at >= self.config.gauges_every_s:
            self._gauges_at = time.monotonic()
            await self.flag_stuck(now)
            await refresh_gauges(self.engine, now)
            await self._forget_dead_pollers(now)

    async def _heartbeat(self, now: datetime) -> None:
        async with session_scope(self.engine) as session:
            row = await session.get(PollerHeartbeat, self.owner)
            if row is None:
                session.add(
                    PollerHeartbeat(
                        owner=self.owner,
                        started_at=now,
                        last_loop_at=now,
                        checks=self.checks,
                        rate_limit_hits=self.rate_limit_hits,
                    )
                )
            else:
                row.last_loop_at = now
                row.checks = self.checks
                row.rate_limit_hits = self.rate_limit_hits

    async def _forget_dead_pollers(self, now: datetime) -> None:
        """Each process start is a new owner: drop heartbeats silent for a day."""
        async with session_scope(self.engine) as session:
            await session.exec(
                sa.delete(PollerHeartbeat).where(
                    col(PollerHeartbeat.last_loop_at) < now - timedelta(days=1)
                )
            )

    async def flag_stuck(self, now: datetime) -> int:
        """Raise (once each) every refund unsettled for longer than ``stuck_after_s``."""
        cutoff = now - timedelta(seconds=self.config.stuck_after_s)
        raised = 0
        async with session_scope(self.engine) as session:
            stuck = (
                await session.exec(
                    select(Refund)
                    .where(col(Refund.status).in_(UNSETTLED), col(Refund.created_at) <= cutoff)
                    .where(
                        ~sa.exists().where(
                            col(Alert.refund_pk) == col(Refund.id),
                            col(Alert.kind) == AlertKind.STUCK,
                        )
                    )
                    .limit(200)
                )
            ).all()
            for refund in stuck:
                hours = (now - refund.created_at).total_seconds() / 3600
                raised += await webhooks.raise_alert(
                    session,
                    AlertKind.STUCK,
                    f"refund:{refund.id}",
                    f"Refund {refund.refund_request_id} of "
                    f"{Money(refund.amount_minor, refund.currency)} is still "
                    f"{RefundStatus(refund.status).value} after {hours:.1f} h; check it with Antom",
                    refund_pk=refund.id,
                    payment_pk=refund.payment_pk,
                )
        return raised

    # ------------------------------------------------------------ one refund

    async def _check(self, refund_pk: int, cause: Cause) -> CheckResult:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            refund = await session.get(Refund, refund_pk)
            payment = await session.get(Payment, refund.payment_pk) if refund else None
        if refund is None or payment is None:
            return CheckResult(refund_pk, "not_found")
        if RefundStatus(refund.status).final:
            await self._write_back(refund, None, cause=cause, summary="", detail={})
            return CheckResult(refund_pk, "final")
        await self.limiter.acquire()
        if not await self._renew(refund_pk):
            return CheckResult(refund_pk, "lost_lease")
        self.checks += 1
        started = time.time()
        inquiry = await self.antom.inquiry_refund(refund_request_id=refund.refund_request_id)
        log.info(
            "poller %s inquired refund=%s code=%s status=%s t0=%.6f t1=%.6f request_id=%s",
            self.owner,
            refund_pk,
            inquiry.result_code,
            inquiry.refund_status,
            started,
            time.time(),
            cause.request_id,
        )
        if inquiry.rate_limited:
            return await self._rate_limited(refund, cause, inquiry.exchange.response_headers)
        self.limiter.succeeded()

        from web.services.refunds import exchange_detail

        detail: dict[str, Any] = {"refund_request_id": refund.refund_request_id}
        detail |= exchange_detail(inquiry.exchange)
        if inquiry.not_exist:
            return await self._resend(refund, payment, cause, detail)
        if not inquiry.found:
            # Timeout, 5xx, U, an untrusted answer, an F about the inquiry itself:
            # nothing is learnt, and nothing is failed. Ask again later.
            metrics.POLLER_CHECKS.labels(result="unknown").inc()
            await self._write_back(refund, None, cause=cause, summary="", detail=detail)
            return CheckResult(refund_pk, "unknown", message=inquiry.error or "no answer")
        return await self._settle(refund, inquiry, cause, detail)

    async def _settle(
        self,
        refund: Refund,
        inquiry: InquiryRefundResult,
        cause: Cause,
        detail: dict[str, Any],
    ) -> CheckResult:
        assert refund.id is not None
        outcome = inquiry.outcome()
        asked = Money(refund.amount_minor, refund.currency)
        if inquiry.refund_amount is not None and inquiry.refund_amount != asked:
            async with session_scope(self.engine) as session:
                await webhooks.raise_alert(
                    session,
                    AlertKind.MISMATCH,
                    f"refund:{refund.id}",
                    f"Antom reports {inquiry.refund_amount} for refund "
                    f"{refund.refund_request_id}, the desk recorded {asked}",
                    refund_pk=refund.id,
                    payment_pk=refund.payment_pk,
                )
            metrics.POLLER_CHECKS.labels(result="mismatch").inc()
            await self._write_back(refund, None, cause=cause, summary="", detail=detail)
            return CheckResult(refund.id, "mismatch")
        status = _OUTCOME_STATUS[outcome]
        summary = f"Antom's inquiry says {inquiry.refund_status}"
        changed = await self._write_back(
            refund,
            status,
            cause=cause,
            summary=summary,
            detail=detail,
            refund_id=inquiry.refund_id,
            refunded_at=webhooks.parse_time(inquiry.refund_time),
        )
        metrics.POLLER_CHECKS.labels(result=outcome.value).inc()
        return CheckResult(refund.id, outcome.value, changed, summary)

    async def _resend(
        self, refund: Refund, payment: Payment, cause: Cause, detail: dict[str, Any]
    ) -> CheckResult:
        """Antom never received this refund: send it again, same refundRequestId."""
        from web.services.refunds import exchange_detail, refund_request_for

        assert refund.id is not None
        await self.limiter.acquire()
        if not await self._renew(refund.id):
            return CheckResult(refund.id, "lost_lease")
        log.warning(
            "poller %s: refund %s unknown at Antom; re-sending with the same id",
            self.owner,
            refund.refund_request_id,
        )
        result: RefundCallResult = await self.antom.refund(
            refund_request_for(refund, payment, self.notify_url)
        )
        if result.rate_limited:
            return await self._rate_limited(refund, cause, result.exchange.response_headers)
        self.limiter.succeeded()
        detail = {"inquiry": detail} | exchange_detail(result.exchange)
        detail["result_code"] = result.result_code
        status = _OUTCOME_STATUS[result.state]
        asked = Money(refund.amount_minor, refund.currency)
        if status is RefundStatus.SUCCEEDED and result.refund_amount not in (None, asked):
            status = RefundStatus.PROCESSING  # never book an amount Antom states differently
        changed = await self._write_back(
            refund,
            status,
            cause=cause,
            summary=f"Antom had no record of this refund; re-sent with the same id: "
            f"{result.result_code or result.error or 'no answer'}",
            detail=detail,
            refund_id=result.refund_id,
            result_code=result.result_code,
            result_message=result.result_message,
            refunded_at=webhooks.parse_time(result.refund_time),
            resent=True,
        )
        metrics.POLLER_CHECKS.labels(result="resent").inc()
        return CheckResult(refund.id, "resent", changed, result.result_code or "")

    async def _rate_limited(
        self, refund: Refund, cause: Cause, headers: Mapping[str, str]
    ) -> CheckResult:
        assert refund.id is not None
        retry_after = _retry_after(headers)
        self.limiter.limited(retry_after)
        self.rate_limit_hits += 1
        metrics.POLLER_RATE_LIMIT_HITS.inc()
        metrics.POLLER_CHECKS.labels(result="rate_limited").inc()
        delay = max(retry_after or 0.0, min(1.0 / self.limiter.rate, 5.0))
        await self._write_back(refund, None, cause=cause, summary="", detail={}, delay_s=delay)
        return CheckResult(refund.id, "rate_limited")

    async def _write_back(
        self,
        refund: Refund,
        status: RefundStatus | None,
        *,
        cause: Cause,
        summary: str,
        detail: dict[str, Any],
        delay_s: float | None = None,
        resent: bool = False,
        **facts: Any,
    ) -> bool:
        """Release our lease, schedule the next check and apply ``status``, all in one
        transaction fenced by the lease; True when the refund's status changed."""
        from web.services.refunds import apply_antom_status, record_event

        assert refund.id is not None
        now = utcnow()
        if delay_s is None:
            delay_s = backoff_delay((now - refund.created_at).total_seconds(), self.config)
        next_check = now + timedelta(seconds=delay_s)
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        values["next_check_at"] = next_check
        if resent:
            values["attempts"] = col(Refund.attempts) + 1
        self._leased_at.pop(refund.id, None)
        async with session_scope(self.engine) as session:
            fenced = await session.exec(
                sa.update(Refund)
                .where(col(Refund.id) == refund.id, col(Refund.lease_owner) == self.owner)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if fenced.rowcount != 1:
                log.warning("poller %s: lost the lease on refund %s", self.owner, refund.id)
                return False
            if status is None:
                return False
            facts = {k: v for k, v in facts.items() if v is not None}
            changed = await apply_antom_status(
                session,
                refund,
                status,
                source=cause.source,
                summary=summary,
                detail=detail,
                request_id=cause.request_id,
                next_check_at=next_check,
                **facts,
            )
            if not changed and resent:
                # A re-send is worth a line on the timeline even when nothing moved.
                await record_event(
                    session,
                    refund,
                    source=cause.source,
                    summary=summary,
                    detail=detail,
                    request_id=cause.request_id,
                )
            return changed


async def refresh_gauges(engine: AsyncEngine, now: datetime) -> None:
    """Refunds by status, oldest unsettled age, poller lag and open alerts."""
    async with AsyncSession(engine) as session:
        counts = (
            await session.exec(select(Refund.status, sa.func.count()).group_by(col(Refund.status)))
        ).all()
        oldest = (
            await session.exec(
                select(sa.func.min(Refund.created_at)).where(col(Refund.status).in_(UNSETTLED))
            )
        ).one()
        overdue = (
            await session.exec(
                select(sa.func.min(Refund.next_check_at)).where(
                    col(Refund.status).in_(UNSETTLED), col(Refund.next_check_at) <= now
                )
            )
        ).one()
        alerts = (
            await session.exec(
                select(Alert.kind, sa.func.count())
                .where(col(Alert.resolved_at).is_(None))
                .group_by(col(Alert.kind))
            )
        ).all()
    seen = {str(status): int(n) for status, n in counts}
    for status in RefundStatus:
        metrics.REFUNDS_BY_STATUS.labels(status=status.value).set(seen.get(status.value, 0))
    metrics.OLDEST_PROCESSING_AGE.set(_age(oldest, now))
    metrics.POLLER_LAG.set(_age(overdue, now))
    open_alerts = {str(kind): int(n) for kind, n in alerts}
    for kind in AlertKind:
        metrics.OPEN_ALERTS.labels(kind=kind.value).set(open_alerts.get(kind.value, 0))


def _age(value: Any, now: datetime) -> float:
    if not isinstance(value, datetime):
        return 0.0
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return max(0.0, (now - aware).total_seconds())
