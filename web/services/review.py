"""The team-lead review (/review): totals, rates, timings and who refunds what, for any
date range and the refunds list's filters.

Read side, no Litestar. The range's refunds are read once, in keyset batches of plain
columns (``listing.batches``, the export's reader), filtered by ``listing.refund_where``
(the /refunds list's own WHERE, so every number's link opens exactly the refunds behind
it), and folded into counters here: memory grows with the number of groups (currencies,
agents, reasons, days) and the final refunds' durations, never with the rows. The
definitions (final moment, success rate, percentiles, outliers) are web/rules/review.py.
Days are the viewer's: a refund belongs to the day its creation time falls on in
``filters.zone``, as the date filters mean (``listing.date_range``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from urllib.parse import urlencode

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Payment, Refund, User
from web.rules import review as rules
from web.services import charts, listing
from web.services.listing import RefundFilters
from web.timezones import zone

DEFAULT_DAYS = 30  # the range when none is given: the last 30 days, today included
MAX_CHART_DAYS = 92  # longer ranges chart by week


@dataclass(slots=True)
class CurrencyLine:
    currency: str
    count: int = 0
    amount_minor: int = 0
    succeeded: int = 0
    succeeded_minor: int = 0
    failed: int = 0
    in_flight: int = 0
    in_flight_minor: int = 0
    reversed: int = 0
    reversed_minor: int = 0


@dataclass(slots=True)
class Timing:
    method: str
    count: int
    median_s: float | None
    p90_s: float | None


@dataclass(slots=True)
class AgentLine:
    agent_id: int | None  # None: refunds made outside the desk
    name: str
    count: int = 0
    # currency -> (count, amount in minor units): amounts are never added across currencies
    amounts: dict[str, list[int]] = field(default_factory=dict)
    outlier_count: bool = False
    # currencies where this agent's average refund is far above the others'
    outlier_currencies: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Approvals:
    needed: int = 0
    approved: int = 0
    rejected: int = 0
    waiting: int = 0
    median_s: float | None = None
    p90_s: float | None = None


@dataclass(slots=True)
class Review:
    filters: RefundFilters
    count: int
    by_status: dict[str, int]
    currencies: list[CurrencyLine]
    success_rate: float | None
    timings: list[Timing]
    full: int
    partial: int
    agents: list[AgentLine]
    reasons: list[tuple[str, str, int]]  # code, label, count
    approvals: Approvals
    days: list[date]  # the x axis: every day (or week start) of the range
    per_day: dict[date, Counter[str]]  # day -> currency -> count
    day_step: int  # 1 (days) or 7 (weeks)
    buckets: list[tuple[str, int]]  # time-to-final histogram: label, count


# Time to final: upper bounds in seconds, and labels.
BUCKETS: list[tuple[float, str]] = [
    (60, "< 1 min"),
    (300, "1–5 min"),
    (1800, "5–30 min"),
    (7200, "30 min–2 h"),
    (86_400, "2–24 h"),
    (3 * 86_400, "1–3 d"),
    (float("inf"), "> 3 d"),
]


def with_default_range(f: RefundFilters, today: date) -> RefundFilters:
    """The filters, with the last DEFAULT_DAYS days when no date bound was given."""
    if f.date_from or f.date_to:
        return f
    return replace(f, date_from=today - timedelta(days=DEFAULT_DAYS - 1), date_to=today)


_COLUMNS = (
    col(Refund.id),
    col(Refund.created_at),
    col(Refund.currency),
    col(Refund.amount_minor),
    col(Refund.status),
    col(Refund.reason),
    col(Refund.reason_text),
    col(Refund.agent_id),
    col(Refund.external),
    col(Refund.approval_reason),
    col(Refund.decided_at),
    col(Refund.refunded_at),
    col(Refund.updated_at),
    col(Payment.method),
    col(Payment.captured_minor),
)


async def build(session: AsyncSession, f: RefundFilters) -> Review:
    """Everything /review shows for ``f`` (which should carry a date range)."""
    tz = zone(f.zone)
    by_status: Counter[str] = Counter()
    currencies: dict[str, CurrencyLine] = {}
    durations: dict[str, list[float]] = defaultdict(list)
    all_durations: list[float] = []
    turnaround: list[float] = []
    agents: dict[int | None, AgentLine] = {}
    reason_counts: Counter[str] = Counter()
    reason_labels: dict[str, str] = {}
    approvals = Approvals()
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    full = partial = count = 0
    names = dict((await session.exec(select(User.id, User.name))).all())
    joins = [(Payment, col(Payment.id) == col(Refund.payment_pk))]
    where = listing.refund_where(f)
    async for batch in listing.batches(session, Refund, where, _COLUMNS, 2000, joins):
        for r in batch:
            count += 1
            status = str(r.status)
            by_status[status] += 1
            line = currencies.setdefault(r.currency, CurrencyLine(r.currency))
            line.count += 1
            line.amount_minor += r.amount_minor
            if status == "succeeded":
                line.succeeded += 1
                line.succeeded_minor += r.amount_minor
            elif status == "failed":
                line.failed += 1
            elif status == rules.REVERSED:
                line.reversed += 1
                line.reversed_minor += r.amount_minor
            elif status in rules.IN_FLIGHT:
                line.in_flight += 1
                line.in_flight_minor += r.amount_minor
            if status in rules.ANSWERED:
                done = rules.final_at(
                    status,
                    refunded_at=r.refunded_at,
                    decided_at=r.decided_at,
                    updated_at=r.updated_at,
                )
                if done is not None:
                    seconds = max(0.0, (done - r.created_at).total_seconds())
                    durations[r.method].append(seconds)
                    all_durations.append(seconds)
            if r.amount_minor == r.captured_minor:
                full += 1
            else:
                partial += 1
            key = None if r.external else r.agent_id
            who = agents.get(key)
            if who is None:
                label = "External" if r.external else names.get(r.agent_id, "Unknown")
                who = agents[key] = AgentLine(key, label)
            who.count += 1
            pair = who.amounts.setdefault(r.currency, [0, 0])
            pair[0] += 1
            pair[1] += r.amount_minor
            reason_counts[r.reason] += 1
            reason_labels.setdefault(r.reason, r.reason_text)
            if r.approval_reason is not None:
                approvals.needed += 1
                if status == "rejected":
                    approvals.rejected += 1
                elif status == "awaiting":
                    approvals.waiting += 1
                elif r.decided_at is not None:
                    approvals.approved += 1
                if r.decided_at is not None:
                    turnaround.append(max(0.0, (r.decided_at - r.created_at).total_seconds()))
            per_day[r.created_at.astimezone(tz).date()][r.currency] += 1
    approvals.median_s = rules.median(turnaround)
    approvals.p90_s = rules.percentile(turnaround, 0.9)
    timings = [
        Timing(m, len(v), rules.median(v), rules.percentile(v, 0.9))
        for m, v in sorted(durations.items())
    ]
    agent_lines = sorted(agents.values(), key=lambda a: (-a.count, a.name))
    _mark_outliers(agent_lines)
    days, step, grouped = _axis(f, per_day)
    buckets = _histogram(all_durations)
    return Review(
        filters=f,
        count=count,
        by_status=dict(by_status),
        currencies=sorted(currencies.values(), key=lambda c: c.currency),
        success_rate=rules.success_rate(
            by_status["succeeded"], by_status["failed"], by_status[rules.REVERSED]
        ),
        timings=timings,
        full=full,
        partial=partial,
        agents=agent_lines,
        reasons=sorted(
            ((code, reason_labels[code], n) for code, n in reason_counts.items()),
            key=lambda t: (-t[2], t[1]),
        ),
        approvals=approvals,
        days=days,
        per_day=grouped,
        day_step=step,
        buckets=buckets,
    )


def _mark_outliers(lines: list[AgentLine]) -> None:
    """Desk agents (not "External") far above the rest of the team (web/rules/review.py):
    by refund count, and by average amount in each currency."""
    desk = [a for a in lines if a.agent_id is not None]
    for a in desk:
        others = [o.count for o in desk if o is not a]
        a.outlier_count = a.count >= rules.MIN_REFUNDS and rules.far_above(a.count, others)
        for currency, (n, total) in a.amounts.items():
            peers = [
                o.amounts[currency][1] / o.amounts[currency][0]
                for o in desk
                if o is not a and currency in o.amounts
            ]
            if n >= rules.MIN_REFUNDS and rules.far_above(total / n, peers):
                a.outlier_currencies.append(currency)


def _axis(
    f: RefundFilters, per_day: dict[date, Counter[str]]
) -> tuple[list[date], int, dict[date, Counter[str]]]:
    """Every day of the range (empty ones too), or every week for long ranges."""
    if not per_day and not (f.date_from and f.date_to):
        return [], 1, {}
    first = f.date_from or min(per_day)
    last = f.date_to or max(per_day)
    span = (last - first).days + 1
    step = 1 if span <= MAX_CHART_DAYS else 7
    axis = [first + timedelta(days=i) for i in range(0, span, step)]
    if step == 1:
        return axis, step, {d: per_day.get(d, Counter()) for d in axis}
    grouped: dict[date, Counter[str]] = {d: Counter() for d in axis}
    for d, counts in per_day.items():
        grouped[first + timedelta(days=((d - first).days // step) * step)].update(counts)
    return axis, step, grouped


def _histogram(seconds: list[float]) -> list[tuple[str, int]]:
    counts = [0] * len(BUCKETS)
    for s in seconds:
        counts[next(i for i, (bound, _l) in enumerate(BUCKETS) if s < bound)] += 1
    return [(label, n) for (_b, label), n in zip(BUCKETS, counts, strict=True)]


@dataclass(frozen=True, slots=True)
class Charts:
    per_day: charts.Chart
    currencies: list[str]  # the per-day chart's series, in colour order
    reasons: charts.Chart
    agents: charts.Chart
    time_to_final: charts.Chart


def link(list_url: str, f: RefundFilters, **changes: object) -> str:
    """The /refunds list behind a number: the review's filters with ``changes``."""
    params = f.query_params(cursor="", sort="time", direction="desc", **changes)
    return f"{list_url}?{urlencode(params)}" if params else list_url


def draw(r: Review, list_url: str) -> Charts:
    """The four charts' geometry, every bar linking to the refunds it counts."""
    f = r.filters
    series = sorted({c for counts in r.per_day.values() for c in counts})
    cols = []
    for d in r.days:
        end = d + timedelta(days=r.day_step - 1)
        when = d.isoformat() if r.day_step == 1 else f"week of {d.isoformat()}"
        parts = [
            (
                i,
                r.per_day.get(d, Counter())[cur],
                f"{when}, {cur}: {r.per_day.get(d, Counter())[cur]}",
                link(list_url, f, date_from=d, date_to=end, currency=cur),
            )
            for i, cur in enumerate(series)
        ]
        cols.append(charts.Column(d.strftime("%m-%d"), parts))
    every = max(1, len(cols) // 10)
    reason_rows = [(label, n, link(list_url, f, reason=code)) for code, label, n in r.reasons[:12]]
    agent_rows = [
        (
            a.name,
            a.count,
            link(list_url, f, external="yes")
            if a.agent_id is None
            else link(list_url, f, agent_id=a.agent_id, external=""),
        )
        for a in r.agents[:12]
    ]
    histogram = [
        charts.Column(label, [(0, n, f"{label}: {n}", link(list_url, f))]) for label, n in r.buckets
    ]
    return Charts(
        per_day=charts.columns(cols, every=every),
        currencies=series,
        reasons=charts.bars(reason_rows),
        agents=charts.bars(agent_rows),
        time_to_final=charts.columns(histogram),
    )
