"""Sending a refund to Antom: the one send path.

``send`` makes one refund call from the committed row, retries an unknown answer with
the SAME ``refundRequestId`` while the caller's budget allows, and records every answer
through the ledger (``web.ledger.observe``: the outcome policy decides what it means).
No transaction is open while Antom is called. An agent's submit, the poller's re-send
after Antom confirmed it has no such refund, and (later) approvals and bulk runs all
come through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from web.antom.client import AntomClient
from web.antom.messages import Exchange, RefundCallResult, RefundRequest
from web.antom.money import Money
from web.db import session_scope
from web.faults import fault_point
from web.models import Payment, Refund, utcnow
from web.rules.outcomes import DEFAULT_UNKNOWN_LIMIT, Observation, Verdict
from web.services import ledger

log = logging.getLogger(__name__)

# In-request retries of an unknown answer. Longer waits belong to the poller.
RETRY_DELAYS_S: tuple[float, ...] = (0.3, 1.0)
# Retries stop once this much time has gone by (a timeout alone can take 15 s).
IN_REQUEST_BUDGET_S = 20.0
# When the poller should first ask about a refund whose answer is unknown.
PROCESSING_RECHECK = timedelta(seconds=30)

# Runs right before each call; False skips it (the poller's pacing and lease renewal).
BeforeCall = Callable[[], Awaitable[bool]]


@dataclass(slots=True)
class Sent:
    """How a send ended. ``verdict`` is the last recorded answer's (None: no answer was
    recorded: skipped, or the database failed after Antom answered)."""

    refund: Refund
    verdict: Verdict | None
    result: RefundCallResult | None = None
    recorded: bool = True


def refund_request_for(refund: Refund, payment: Payment, notify_url: str | None) -> RefundRequest:
    """The Antom request, built only from the stored row: every retry sends the same."""
    if refund.payment_pk != payment.id:
        raise ValueError("refund and payment do not belong together")
    return RefundRequest(
        refund_request_id=refund.refund_request_id,
        payment_id=payment.payment_id,
        amount=Money(refund.amount_minor, refund.currency),
        reason=refund.reason_text,
        notify_url=notify_url,
    )


async def send(
    engine: AsyncEngine,
    antom: AntomClient,
    request: RefundRequest,
    refund: Refund,
    *,
    cause: ledger.Cause,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
    budget_s: float = IN_REQUEST_BUDGET_S,
    before_call: BeforeCall | None = None,
    unknown_limit: int = DEFAULT_UNKNOWN_LIMIT,
) -> Sent:
    """Call Antom for ``refund`` (plus same-id retries) and record each answer."""
    assert refund.id is not None
    started = time.monotonic()
    attempt = 0
    sent = Sent(refund, None)
    while True:
        attempt += 1
        if before_call is not None and not await before_call():
            return sent
        result: RefundCallResult | None = None
        error: str | None = None
        try:
            result = await antom.refund(request)
            fault_point("after_antom_call")
        except Exception as exc:  # the request may have reached Antom: unknown, not failed
            log.exception("refund %s: the Antom call raised", refund.refund_request_id)
            error = f"{type(exc).__name__}: {exc}"
        seen = Observation.of_call(result, error)
        detail: dict[str, Any] = {
            "attempt": attempt,
            "refund_request_id": request.refund_request_id,
        }
        if result is not None:
            detail |= exchange_detail(result.exchange)
        delay = retry_delays[attempt - 1] if attempt <= len(retry_delays) else None
        may_retry = delay is not None and time.monotonic() - started + delay <= budget_s
        try:
            async with session_scope(engine) as session:
                verdict, refund = await ledger.observe(
                    session,
                    refund.id,
                    seen,
                    cause=cause,
                    detail=detail,
                    next_check_at=utcnow() + PROCESSING_RECHECK,
                    count_attempt=True,
                    retry_note="retrying with the same refund request id" if may_retry else None,
                    unknown_limit=unknown_limit,
                )
        except SQLAlchemyError:
            # Antom may have refunded; the row keeps the money reserved and the poller
            # (next_check_at) settles it. Nobody may refund it again meanwhile.
            log.exception("refund %s: could not record Antom's answer", refund.refund_request_id)
            return Sent(refund, None, result, recorded=False)
        sent = Sent(refund, verdict, result)
        if not (verdict.retry and may_retry) or delay is None:
            return sent
        # Some jitter so that a burst of refunds does not retry in lockstep.
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))


def exchange_detail(exchange: Exchange) -> dict[str, Any]:
    """An Antom exchange as JSON for the timeline (the client already redacted it)."""
    data = dataclasses.asdict(exchange)
    for name in ("request_body", "response_body"):
        text = data.get(name)
        if isinstance(text, str):
            # Not JSON (an HTML error page from a proxy): the text is kept as it is.
            with contextlib.suppress(ValueError):
                data[name] = json.loads(text)
    return {"exchange": data}
