"""The inquiry poller: settles refunds whose outcome Antom has not confirmed yet.

Every web instance runs one (``web/integration.py``), and ``refund-desk poller`` runs
one as a worker process; any number may share a database, because work is handed out by
leases on the refund rows (``web/services/leases.py``) and calls are paced under Antom's
rate limit (``web/services/pacing.py``).

For each refund it leases: ask ``inquiryRefund`` (by Antom's ``refundId`` when the desk
has it, else by ``refundRequestId``), outside any transaction, and record the answer
through the ledger — what it means is the outcome policy's call
(``web/rules/outcomes.py``): a found SUCCESS or FAIL settles the refund, PROCESSING is
asked again later with backoff, anything unclear is never a failure (and, after
``unknown_alert_after`` such answers in a row, is raised to a lead), and
``REFUND_NOT_EXIST`` for a refund the desk wrote means the call never reached Antom: it
is re-sent with the same ``refundRequestId`` through the one send path
(``web/services/sending.py``). Refunds unsettled for too long are raised to leads;
nothing is ever failed automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web import metrics
from web.antom.client import AntomClient
from web.antom.messages import InquiryRefundResult
from web.antom.money import Money
from web.db import read_scope, session_scope
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
from web.rules.lifecycle import SENT_OR_SENDING
from web.rules.outcomes import Observation, Verdict
from web.services import approvals, ledger, webhooks
from web.services.alerts import raise_alert
from web.services.leases import Leases, new_owner
from web.services.pacing import RateLimiter, retry_after
from web.services.sending import exchange_detail, refund_request_for, send
from web.settings import PollerConfig

log = logging.getLogger(__name__)


def backoff_delay(age_s: float, config: PollerConfig, rng: random.Random | None = None) -> float:
    """Seconds until the next check: about half the refund's age, capped, equal jitter.

    Checks get geometrically rarer as a refund ages (exponential backoff without a
    counter to store), and the jitter keeps many refunds from being checked in lockstep.
    """
    ceiling = min(config.max_delay_s, max(config.base_delay_s, age_s / 2))
    r = rng or random
    return ceiling / 2 + r.uniform(0, ceiling / 2)


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


def new_pass_id() -> str:
    """The request id of one poller pass: it plays the part of an HTTP request's id."""
    return f"poll-{uuid.uuid4().hex}"


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
        self.leases = Leases(engine, self.owner, self.config.lease_s)
        self.limiter = RateLimiter(self.config.max_rate, self.config.min_rate)
        self.last_loop_at: datetime | None = None
        self.started_at: datetime | None = None
        self.running = False
        self.rate_limit_hits = 0
        self.checks = 0
        self._gauges_at = 0.0
        self._slots = asyncio.Semaphore(self.config.concurrency)

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
        conditions: list[sa.ColumnElement[bool]] = [col(Refund.status).in_(SENT_OR_SENDING)]
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
        return await self.leases.claim(now, conditions, order, limit)

    async def release_all(self) -> None:
        await self.leases.release_all()

    # ------------------------------------------------------------ passes

    async def run_once(self, *, source: EventSource = EventSource.POLLER) -> PassStats:
        """One pass: claim what is due, check it, write back. Returns what happened."""
        claimed = await self.claim(utcnow(), limit=self.config.batch)
        cause = ledger.Cause(source, new_pass_id())
        stats = PassStats(cause.request_id or "", claimed=len(claimed))
        stats.results = await self._check_all(claimed, cause)
        await self._after_pass()
        return stats

    async def reconcile(self) -> PassStats:
        """Start-up recovery: finish stored-but-unapplied notifications, then check every
        unsettled refund once, whatever its schedule (source RECONCILIATION)."""
        await webhooks.process_pending(self.engine)
        cause = ledger.Cause(EventSource.RECONCILIATION, new_pass_id())
        stats = PassStats(cause.request_id or "")
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
            async with read_scope(self.engine) as session:
                refund = await session.get(Refund, refund_pk)
            if refund is None:
                return CheckResult(refund_pk, "not_found", message="No such refund")
            if RefundStatus(refund.status).final:
                return CheckResult(refund_pk, "final", message="This refund is already settled")
            return CheckResult(refund_pk, "busy", message="Another check is running right now")
        # Not queued behind the background checks: an agent is waiting for this one.
        cause = ledger.Cause(EventSource.POLLER, request_id or new_pass_id())
        return await self._guarded(claimed[0], cause, queue=False)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Reconcile once, then poll until ``stop`` is set; errors never end the loop.

        Pipelined: new work is claimed as soon as there is room for it, so the rate Antom
        allows is kept busy instead of idling while the slowest check of a batch ends.
        """
        self.running = True
        self.started_at = utcnow()
        try:
            await self.reconcile()
        except Exception:
            log.exception("poller %s: start-up reconciliation failed", self.owner)
        in_flight: set[asyncio.Task[CheckResult]] = set()
        passed_at = time.monotonic()
        while not stop.is_set():
            room = self.config.batch - len(in_flight)
            claimed: list[int] = []
            # Claim in chunks (not one by one) and before the pool runs dry.
            if room >= min(self.config.concurrency, self.config.batch) or not in_flight:
                try:
                    claimed = await self.claim(utcnow(), limit=room)
                except Exception:
                    log.exception("poller %s: claiming failed", self.owner)
                cause = ledger.Cause(EventSource.POLLER, new_pass_id())
                in_flight |= {asyncio.create_task(self._guarded(pk, cause)) for pk in claimed}
            if not in_flight or time.monotonic() - passed_at >= self.config.idle_s:
                passed_at = time.monotonic()
                try:
                    await self._after_pass()
                except Exception:
                    log.exception("poller %s: heartbeat failed", self.owner)
            if in_flight:
                _, in_flight = await asyncio.wait(
                    in_flight, timeout=self.config.idle_s, return_when=asyncio.FIRST_COMPLETED
                )
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.config.idle_s)
        if in_flight:
            await asyncio.wait(in_flight)
        self.running = False
        await self.release_all()

    async def _check_all(self, refund_pks: list[int], cause: ledger.Cause) -> list[CheckResult]:
        return list(await asyncio.gather(*(self._guarded(pk, cause) for pk in refund_pks)))

    async def _guarded(
        self, refund_pk: int, cause: ledger.Cause, *, queue: bool = True
    ) -> CheckResult:
        """One check, under this poller's concurrency limit when ``queue``; errors stay
        with the refund."""
        async with self._slots if queue else contextlib.nullcontext():
            try:
                return await self._check(refund_pk, cause)
            except Exception as exc:
                # One bad refund must not block the others; its lease simply expires.
                log.exception("poller %s: checking refund %s failed", self.owner, refund_pk)
                return CheckResult(refund_pk, "error", message=type(exc).__name__)

    async def _after_pass(self) -> None:
        now = utcnow()
        self.last_loop_at = now
        metrics.POLLER_LAST_LOOP.set(now.timestamp())
        await self._heartbeat(now)
        if time.monotonic() - self._gauges_at >= self.config.gauges_every_s:
            self._gauges_at = time.monotonic()
            await self.flag_stuck(now)
            await approvals.expire_due(self.engine, now)
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
        """Raise (once each) every refund unsettled for longer than its payment method's
        SLA (``PollerConfig.sla_for``; ``stuck_after_s`` for methods without one).

        The clock starts when the refund was cleared to go to Antom: its approval, when it
        needed one (time spent awaiting approval is that queue's, not Antom's), else its
        creation.
        """
        started = sa.func.coalesce(col(Refund.decided_at), col(Refund.created_at))
        by_method = dict(self.config.sla_s)
        over_sla = [
            sa.and_(col(Payment.method) == method, started <= now - timedelta(seconds=sla))
            for method, sla in by_method.items()
        ]
        default_cutoff = now - timedelta(seconds=self.config.stuck_after_s)
        over_sla.append(
            sa.and_(col(Payment.method).not_in(list(by_method)), started <= default_cutoff)
            if by_method
            else started <= default_cutoff
        )
        raised = 0
        async with session_scope(self.engine) as session:
            stuck = (
                await session.exec(
                    select(Refund, Payment.method)
                    .join(Payment, col(Payment.id) == col(Refund.payment_pk))
                    .where(col(Refund.status).in_(SENT_OR_SENDING), sa.or_(*over_sla))
                    .where(
                        ~sa.exists().where(
                            col(Alert.refund_pk) == col(Refund.id),
                            col(Alert.kind) == AlertKind.STUCK,
                        )
                    )
                    .order_by(col(Refund.id))
                    .limit(200)
                )
            ).all()
            for refund, method in stuck:
                since = refund.decided_at or refund.created_at
                hours = (now - since).total_seconds() / 3600
                sla_hours = self.config.sla_for(method) / 3600
                raised += await raise_alert(
                    session,
                    AlertKind.STUCK,
                    f"refund:{refund.id}",
                    f"Refund {refund.refund_request_id} of "
                    f"{Money(refund.amount_minor, refund.currency)} ({method}) is still "
                    f"{RefundStatus(refund.status).value} after {hours:.1f} h "
                    f"(SLA {sla_hours:g} h); check it with Antom",
                    refund_pk=refund.id,
                    payment_pk=refund.payment_pk,
                    detail={"method": method, "sla_hours": sla_hours},
                )
        return raised

    # ------------------------------------------------------------ one refund

    async def _check(self, refund_pk: int, cause: ledger.Cause) -> CheckResult:
        async with read_scope(self.engine) as session:
            refund = await session.get(Refund, refund_pk)
            payment = await session.get(Payment, refund.payment_pk) if refund else None
        if refund is None or payment is None:
            return CheckResult(refund_pk, "not_found")
        if RefundStatus(refund.status).final:
            await self._write_back(refund, None, cause=cause)
            return CheckResult(refund_pk, "final")
        await self.limiter.acquire()
        if not await self.leases.renew(refund_pk):
            return CheckResult(refund_pk, "lost_lease")
        self.checks += 1
        started = time.time()
        inquiry = await self._inquire(refund)
        # t0/t1 bound the call: tests/status/test_pollers_postgres.py reads them to prove
        # that no two pollers ever ask about one refund at the same moment. DEBUG: at the
        # allowed rate this is thousands of lines a minute (REFUND_DESK_LOG_LEVEL=debug).
        log.debug(
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
            return await self._rate_limited(
                refund, cause, retry_after(inquiry.exchange.response_headers)
            )
        self.limiter.succeeded()
        verdict = await self._write_back(
            refund,
            Observation.of_inquiry(inquiry),
            cause=cause,
            detail={"refund_request_id": refund.refund_request_id}
            | exchange_detail(inquiry.exchange),
        )
        if verdict is None:
            return CheckResult(refund_pk, "lost_lease")
        if verdict.resend:
            return await self._resend(refund, payment, cause)
        metrics.POLLER_CHECKS.labels(result=_result_of(verdict)).inc()
        return CheckResult(refund_pk, _result_of(verdict), verdict.to is not None, verdict.summary)

    async def _inquire(self, refund: Refund) -> InquiryRefundResult:
        # Antom's own id first when the desk has it: it names exactly one refund.
        if refund.refund_id:
            return await self.antom.inquiry_refund(refund_id=refund.refund_id)
        return await self.antom.inquiry_refund(refund_request_id=refund.refund_request_id)

    async def _resend(self, refund: Refund, payment: Payment, cause: ledger.Cause) -> CheckResult:
        """Antom confirmed it has no such refund: send it again, same refundRequestId,
        through the one send path (one attempt: pacing and leases are the poller's)."""
        assert refund.id is not None
        refund_pk = refund.id
        log.warning(
            "poller %s: refund %s unknown at Antom; re-sending with the same id",
            self.owner,
            refund.refund_request_id,
        )

        async def paced() -> bool:
            await self.limiter.acquire()
            return await self.leases.renew(refund_pk)

        sent = await send(
            self.engine,
            self.antom,
            refund_request_for(refund, payment, self.notify_url),
            refund,
            cause=cause,
            retry_delays=(),
            before_call=paced,
            unknown_limit=self.config.unknown_alert_after,
        )
        if sent.result is not None and sent.result.rate_limited:
            return await self._rate_limited(
                refund, cause, retry_after(sent.result.exchange.response_headers)
            )
        if sent.result is None and sent.verdict is None:
            return CheckResult(refund_pk, "lost_lease")
        self.limiter.succeeded()
        await self._write_back(refund, None, cause=cause)
        metrics.POLLER_CHECKS.labels(result="resent").inc()
        code = sent.result.result_code if sent.result is not None else None
        changed = sent.verdict is not None and sent.verdict.to is not None
        return CheckResult(refund_pk, "resent", changed, code or "")

    async def _rate_limited(
        self, refund: Refund, cause: ledger.Cause, retry_after_s: float | None
    ) -> CheckResult:
        assert refund.id is not None
        self.limiter.limited(retry_after_s)
        self.rate_limit_hits += 1
        metrics.POLLER_RATE_LIMIT_HITS.inc()
        metrics.POLLER_CHECKS.labels(result="rate_limited").inc()
        delay = self.limiter.pause_after_limit(retry_after_s)
        await self._write_back(refund, None, cause=cause, delay_s=delay)
        return CheckResult(refund.id, "rate_limited")

    async def _write_back(
        self,
        refund: Refund,
        seen: Observation | None,
        *,
        cause: ledger.Cause,
        detail: dict[str, Any] | None = None,
        delay_s: float | None = None,
    ) -> Verdict | None:
        """Record ``seen`` through the ledger and give the lease back with the next check
        scheduled, in one transaction fenced by the lease; the lease is kept when the
        verdict asks for a re-send (``_resend`` gives it back). None when the lease was
        lost: then nothing is written."""
        assert refund.id is not None
        now = utcnow()
        if delay_s is None:
            delay_s = backoff_delay((now - refund.created_at).total_seconds(), self.config)
        next_check = now + timedelta(seconds=delay_s)
        async with session_scope(self.engine) as session:
            if not await self._still_ours(session, refund.id):
                log.warning("poller %s: lost the lease on refund %s", self.owner, refund.id)
                return None
            verdict: Verdict | None = None
            if seen is not None:
                verdict, _ = await ledger.observe(
                    session,
                    refund.id,
                    seen,
                    cause=cause,
                    detail=detail,
                    next_check_at=next_check,
                    unknown_limit=self.config.unknown_alert_after,
                )
                if verdict.check_soon:
                    next_check = now
                if verdict.resend:
                    return verdict
            settled = verdict is not None and verdict.settles
            await self.leases.release(session, refund.id, None if settled else next_check)
            return verdict or Verdict("released", "")

    async def _still_ours(self, session: AsyncSession, refund_pk: int) -> bool:
        owner = (
            await session.exec(
                select(Refund.lease_owner).where(col(Refund.id) == refund_pk).with_for_update()
            )
        ).first()
        return owner == self.owner


def _result_of(verdict: Verdict) -> str:
    """The poller's word for a verdict (metrics, "check now")."""
    if verdict.to is not None and verdict.to.final:
        return verdict.to.value
    return {"confirming": "processing", "not_processed": "unknown"}.get(
        verdict.label, verdict.label
    )


async def refresh_gauges(engine: AsyncEngine, now: datetime) -> None:
    """Refunds by status, oldest unsettled age, poller lag and open alerts."""
    async with read_scope(engine) as session:
        counts = (
            await session.exec(select(Refund.status, sa.func.count()).group_by(col(Refund.status)))
        ).all()
        oldest = (
            await session.exec(
                select(sa.func.min(Refund.created_at)).where(
                    col(Refund.status).in_(SENT_OR_SENDING)
                )
            )
        ).one()
        overdue = (
            await session.exec(
                select(sa.func.min(Refund.next_check_at)).where(
                    col(Refund.status).in_(SENT_OR_SENDING), col(Refund.next_check_at) <= now
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
