"""Waiting for a condition: the one way tests synchronise with servers, threads and processes.

A wait ends as soon as its condition holds. Its deadline is generous (``DEADLINE_S``) and
only a real hang reaches it, so a busy machine makes a test slower, never red. Tests assert
on what happened (recorded events and their order), never on how long it took:

    sim.wait_for(lambda: len(sink) >= 2)                           # sync, on a SimHandle
    note = wait_for(lambda: sink.snapshot(), what="a notification")
    row = await wait_until(lambda: reload(engine, Refund, pk), what="the refund row")
    await wait_until(settled, what="the refund to settle")         # probe may be async

The probe's first truthy value is returned.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Long enough that no amount of load reaches it; short enough that a hang ends the test.
DEADLINE_S = 60.0
INTERVAL_S = 0.02


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline: something hangs."""


def wait_for(
    probe: Callable[[], T | None],
    *,
    what: str = "the condition",
    timeout: float = DEADLINE_S,
    interval: float = INTERVAL_S,
) -> T:
    """Call ``probe`` until it returns something truthy, and return that (blocking)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{what}: not met within {timeout:g} s (last value {value!r})")
        time.sleep(interval)


async def wait_until(
    probe: Callable[[], T | Awaitable[T | None] | None],
    *,
    what: str = "the condition",
    timeout: float = DEADLINE_S,  # noqa: ASYNC109 - the deadline of a poll, as in wait_for
    interval: float = INTERVAL_S,
) -> T:
    """Await ``probe`` (sync or async) until it returns something truthy, and return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise WaitTimeout(f"{what}: not met within {timeout:g} s (last value {value!r})")
        await asyncio.sleep(interval)
