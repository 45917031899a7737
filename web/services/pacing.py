"""Pacing calls to Antom under its rate limit: one limiter for every paced caller.

The poller's inquiries and re-sends use it, and so will bulk refund runs. Calls are
spaced at the current rate; a rate-limit answer (HTTP 429 or
``REQUEST_TRAFFIC_EXCEED_LIMIT``) halves the rate and honours ``Retry-After``, and
successes raise it again (AIMD), never past the configured maximum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from web import metrics


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
