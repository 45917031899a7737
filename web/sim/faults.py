"""Fault injection: the magic-amount table, global fault rates and the rate limiter.

Magic amounts work like card test numbers. A refund amount whose value, counted in the
currency's smallest step (1 minor unit; 100 for IDR), ends in the five digits ``666NN``
triggers fault ``NN``: USD 666.05, JPY 66,605, IDR 6,660,500 or USD 1,666.05 all mean
fault 05. Faults 01–03 and 04–06 fire on the FIRST request with a given refundRequestId
only; a retry with the same id then goes through normally, like a transient outage.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from web.rules.refunds import minimum_refund_minor


class Fault(StrEnum):
    UNKNOWN_EXCEPTION = "UNKNOWN_EXCEPTION"  # U, nothing executed
    RATE_LIMITED = "RATE_LIMITED"  # REQUEST_TRAFFIC_EXCEED_LIMIT U, nothing executed
    HTTP_500 = "HTTP_500"  # HTTP 500, nothing executed
    HTTP_500_AFTER_COMMIT = "HTTP_500_AFTER_COMMIT"  # refund committed, HTTP 500 answered
    HANG_AFTER_COMMIT = "HANG_AFTER_COMMIT"  # refund committed, response never arrives
    UNKNOWN_AFTER_COMMIT = "UNKNOWN_AFTER_COMMIT"  # refund committed, UNKNOWN_EXCEPTION U
    ASYNC_FAIL = "ASYNC_FAIL"  # accepted as REFUND_IN_PROCESS, later FAIL
    REVERSAL = "REVERSAL"  # succeeds, later reversed (settlement file row)
    BALANCE_NOT_ENOUGH = "BALANCE_NOT_ENOUGH"  # MERCHANT_BALANCE_NOT_ENOUGH F
    ASYNC_SUCCESS = "ASYNC_SUCCESS"  # accepted as REFUND_IN_PROCESS even on a sync method

    @property
    def before_commit(self) -> bool:
        return self in (Fault.UNKNOWN_EXCEPTION, Fault.RATE_LIMITED, Fault.HTTP_500)

    @property
    def after_commit(self) -> bool:
        return self in (
            Fault.HTTP_500_AFTER_COMMIT,
            Fault.HANG_AFTER_COMMIT,
            Fault.UNKNOWN_AFTER_COMMIT,
        )


MAGIC_PREFIX = 666
MAGIC_TABLE: dict[int, Fault] = {
    1: Fault.UNKNOWN_EXCEPTION,
    2: Fault.RATE_LIMITED,
    3: Fault.HTTP_500,
    4: Fault.HTTP_500_AFTER_COMMIT,
    5: Fault.HANG_AFTER_COMMIT,
    6: Fault.UNKNOWN_AFTER_COMMIT,
    7: Fault.ASYNC_FAIL,
    8: Fault.REVERSAL,
    9: Fault.BALANCE_NOT_ENOUGH,
    10: Fault.ASYNC_SUCCESS,
}


def magic_fault(amount_minor: int, currency: str) -> Fault | None:
    step = minimum_refund_minor(currency)
    if amount_minor <= 0 or amount_minor % step:
        return None
    tail = (amount_minor // step) % 100_000
    if tail // 100 != MAGIC_PREFIX:
        return None
    return MAGIC_TABLE.get(tail % 100)


def magic_amount(fault: Fault, currency: str, base_minor: int = 0) -> int:
    """The smallest amount ≥ ``base_minor`` that triggers ``fault`` (handy in tests)."""
    nn = next(k for k, v in MAGIC_TABLE.items() if v is fault)
    step = minimum_refund_minor(currency)
    tail = MAGIC_PREFIX * 100 + nn
    units = base_minor // step
    units = units - units % 100_000 + tail
    if units * step < base_minor:
        units += 100_000
    return units * step


@dataclass(slots=True)
class FaultRates:
    """Global probabilities (0..1), set on the admin API; persisted in sim_settings."""

    unknown_exception: float = 0.0  # any gateway call: UNKNOWN_EXCEPTION U, nothing executed
    http_5xx: float = 0.0  # any gateway call: HTTP 500, nothing executed
    hang_after_commit: float = 0.0  # refunds: committed, response never arrives
    async_fail: float = 0.0  # refunds: accepted, then FAIL
    reversal: float = 0.0  # refunds: succeed, then reversed
    rate_limit_per_s: float | None = None
    rate_limit_burst: int = 20

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRates:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Dice:
    """Rolls the global fault rates; seeded for reproducible runs."""

    def __init__(self, seed: int | None) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def roll(self, probability: float) -> bool:
        if probability <= 0:
            return False
        with self._lock:
            return self._random.random() < probability


class TokenBucket:
    """Classic token bucket: ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self._lock = threading.Lock()
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: int) -> None:
        with self._lock:
            self.rate = rate
            self.burst = max(1, burst)
            self._tokens = float(self.burst)
            self._stamp = time.monotonic()

    def take(self) -> bool:
        with self._lock:
            if self.rate is None:
                return True
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False
