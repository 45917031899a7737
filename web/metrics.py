"""Prometheus metrics for refund status work: webhooks, the poller, refunds by status.

Counters count events in this process; the gauges are refreshed from the database by
each poller pass (every instance runs one), so any instance's ``/metrics`` is current.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

WEBHOOKS_ACCEPTED = Counter(
    "refund_desk_webhooks_accepted",
    "Antom notifications verified and stored, by what applying them did",
    ["outcome"],
)
WEBHOOKS_REFUSED = Counter(
    "refund_desk_webhooks_refused",
    "Antom notifications refused, by reason",
    ["reason"],
)
POLLER_CHECKS = Counter(
    "refund_desk_poller_checks",
    "Refunds the poller asked Antom about, by what it learnt",
    ["result"],
)
POLLER_RATE_LIMIT_HITS = Counter(
    "refund_desk_poller_rate_limit_hits",
    "Antom answers that said to slow down (HTTP 429 or REQUEST_TRAFFIC_EXCEED_LIMIT)",
)
POLLER_LAST_LOOP = Gauge(
    "refund_desk_poller_last_loop_timestamp_seconds",
    "When this process's poller last finished a pass",
)
POLLER_LAG = Gauge(
    "refund_desk_poller_lag_seconds",
    "How overdue the most overdue refund check is",
)
POLLER_RATE = Gauge(
    "refund_desk_poller_rate_per_second",
    "The request rate this poller currently allows itself",
)
REFUNDS_BY_STATUS = Gauge(
    "refund_desk_refunds",
    "Refunds in the database, by status",
    ["status"],
)
OLDEST_PROCESSING_AGE = Gauge(
    "refund_desk_oldest_unsettled_refund_age_seconds",
    "Age of the oldest refund still pending or processing (0 when none)",
)
OPEN_ALERTS = Gauge(
    "refund_desk_open_alerts",
    "Alerts waiting for a lead, by kind",
    ["kind"],
)


def webhook_accepted(outcome: str) -> None:
    WEBHOOKS_ACCEPTED.labels(outcome=outcome).inc()


def webhook_refused(reason: str) -> None:
    WEBHOOKS_REFUSED.labels(reason=reason).inc()
