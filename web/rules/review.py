"""The team-lead review's definitions: pure functions over plain values.

What counts as a refund's final moment, success, a percentile and an outlier is decided
here once, for the review page (web/services/review.py) and the CSV export alike.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import datetime

# Statuses a refund ends in. "reversed" (Antom paid it, then took it back) is a status the
# settlement work gives refunds; it is named here as a string and needs nothing else.
REVERSED = "reversed"
FINAL_STATUSES = frozenset({"succeeded", "failed", "rejected", REVERSED})
# Sent to Antom and answered for good: what success rate and time to final count.
ANSWERED = frozenset({"succeeded", "failed", REVERSED})
IN_FLIGHT = frozenset({"awaiting", "pending", "processing"})

# An agent is an outlier when a value of theirs is more than OUTLIER_FACTOR times the
# median of the same value over the *other* agents, with at least MIN_PEERS other agents
# to compare with and at least MIN_REFUNDS refunds of their own behind the value.
OUTLIER_FACTOR = 2.0
MIN_PEERS = 2
MIN_REFUNDS = 5


def final_at(
    status: str,
    *,
    refunded_at: datetime | None,
    decided_at: datetime | None,
    updated_at: datetime | None,
) -> datetime | None:
    """When the refund reached its final status; None while it has not.

    Succeeded (and later reversed): when Antom paid it (``refunded_at``); rejected: the
    approver's decision; failed: its last change, which is the failure (the ledger
    stamps ``updated_at`` with every move of status, web/services/ledger.py)."""
    if status not in FINAL_STATUSES:
        return None
    if status in ("succeeded", REVERSED) and refunded_at is not None:
        return refunded_at
    if status == "rejected" and decided_at is not None:
        return decided_at
    return updated_at


def success_rate(succeeded: int, failed: int, reversed_: int) -> float | None:
    """Succeeded over everything Antom answered for good (succeeded, failed, reversed);
    None when nothing was. Rejected and in-flight refunds are not in it."""
    answered = succeeded + failed + reversed_
    return None if answered == 0 else succeeded / answered


def median(values: Sequence[float]) -> float | None:
    """The middle value (the mean of the two middle ones for an even count)."""
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least ``q`` of all values at or below it
    (p90 of 1..10 is 9, of 1..20 is 18)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def far_above(value: float, others: Sequence[float]) -> bool:
    """Whether ``value`` is more than OUTLIER_FACTOR × the median of ``others`` (the rest
    of the team), with at least MIN_PEERS of them."""
    if len(others) < MIN_PEERS:
        return False
    middle = statistics.median(others)
    return middle > 0 and value > OUTLIER_FACTOR * middle


def duration_label(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.1 d``; an en dash for none."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"
