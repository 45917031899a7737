"""Pacing calls to Antom under its rate limit: one limiter for every paced caller.

The poller's inquiries and re-sends use it, and so will bulk refund runs. Calls are
spaced at the current rate; a rate-limit answer (HTTP 429 or
``REQUEST_TRAFFIC_EXCEED_LIMIT``) lowers it to what Antom was measured to let through
and honours ``Retry-After``; successes raise it again, never past the configured maximum.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping

from web import metrics


class RateLimiter:
    """Spaces calls at the current rate and learns the rate Antom allows.

    A rate-limit answer sets the rate just under what Antom actually let through in the
    last few seconds (its limit, measured) and remembers that as the *ceiling*; successes
    climb back quickly to the ceiling, then only probe beyond it, slowly and by time
    (Antom's limit may have been raised). A steady limit is met with few refusals and
    almost no idle capacity, instead of the sawtooth plain AIMD makes.
    """

    WINDOW_S = 2.0  # successes counted to measure what Antom lets through
    MARGIN = 0.97  # of the measured limit
    FALLBACK = 0.75  # of the current rate, before there is anything to measure
    PROBE_PER_S = 0.01  # above the ceiling: +1 % of it per second since the last refusal

    def __init__(self, max_rate: float, min_rate: float) -> None:
        self.max_rate = max_rate
        self.min_rate = min_rate
        self.rate = max_rate
        self.ceiling = max_rate
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._lowered_at = -1e9
        self._started = time.monotonic()
        self._successes: deque[float] = deque()
        self._lock = asyncio.Lock()
        metrics.POLLER_RATE.set(self.rate)

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
        # Calls refused together are one signal, not several: lower the rate once.
        if now - self._lowered_at >= 1.0:
            self._lowered_at = now
            # What got through is Antom's limit when we were pressing against it; when we
            # could not keep up ourselves it is lower, so never drop below the fallback.
            target = self.rate * self.FALLBACK
            if measured := self._measured(now):
                target = max(target, measured * self.MARGIN)
            self.rate = self.ceiling = max(self.min_rate, min(self.rate, target))
        pause = retry_after_s if retry_after_s is not None else 1.0 / self.rate
        self._paused_until = max(self._paused_until, time.monotonic() + pause)
        metrics.POLLER_RATE.set(self.rate)

    def succeeded(self) -> None:
        now = time.monotonic()
        self._successes.append(now)
        while self._successes and self._successes[0] < now - self.WINDOW_S:
            self._successes.popleft()
        if self.rate >= self.max_rate:
            return
        if self.rate < self.ceiling:
            self.rate = min(self.ceiling, self.rate + self.max_rate / 50)
        else:
            probing_for = now - self._lowered_at
            self.rate = min(self.max_rate, self.ceiling * (1 + self.PROBE_PER_S * probing_for))
        metrics.POLLER_RATE.set(self.rate)

    def _measured(self, now: float) -> float | None:
        """Successes per second over the last window; None until a window has passed."""
        if now - self._started < self.WINDOW_S or not self._successes:
            return None
        recent = sum(1 for t in self._successes if t >= now - self.WINDOW_S)
        return recent / self.WINDOW_S or None

    def pause_after_limit(self, retry_after_s: float | None) -> float:
        """Seconds to wait before asking about the same refund again."""
        return max(retry_after_s or 0.0, min(1.0 / self.rate, 5.0))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (bounded), from an answer's headers."""
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, min(float(raw), 300.0))
    except ValueError:
        return None
