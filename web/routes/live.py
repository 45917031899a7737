"""Live status: the SSE stream, "check now", and the leads' list of alerts.

``GET /events?refund=1&refund=2&payment=5`` streams named events for those objects, a
payment's refunds included (all refunds and payments when none are named). Each
connection, reconnections included, starts with their current state, so a page that lost
its stream catches up without reloading; so does every open stream after the listener
reconnected (a ``resync`` event, then the current state again). Pages mark what to replace with
``sse-swap="refund-<id>"``, ``sse-swap="payment-<id>-refundable"`` etc. (see
``templates/live/macros.html``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

from litestar import Request, get, post
from litestar.channels import ChannelsPlugin, Subscriber
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires_role
from web.live import (
    CHANNEL,
    HEARTBEAT_S,
    PaymentState,
    RefundState,
    decode,
    is_resync,
    snapshot,
)
from web.models import Role, User
from web.request_ids import request_id_of
from web.services import listing
from web.services.alerts import resolve
from web.services.poller import Poller
from web.templating import money

MAX_IDS = 200
RETRY_MS = 2000


def _events(
    request: Request[Any, Any, Any],
    refunds: Iterable[RefundState],
    payments: Iterable[PaymentState],
) -> list[ServerSentEventMessage]:
    templates = request.app.template_engine
    assert templates is not None
    badge = templates.get_template("live/_badge.html")
    messages = [
        ServerSentEventMessage(event=f"refund-{r.id}", data=badge.render(status=r.status))
        for r in refunds
    ]
    for p in payments:
        for name, minor in (
            ("refundable", p.refundable_minor),
            ("refunded", p.refunded_minor),
            ("in-flight", p.reserved_minor),
        ):
            messages.append(
                ServerSentEventMessage(
                    event=f"payment-{p.id}-{name}", data=money(minor, p.currency)
                )
            )
    return messages


async def _stream(
    request: Request[Any, Any, Any],
    channels: ChannelsPlugin,
    engine: AsyncEngine,
    refund_ids: set[int],
    payment_ids: set[int],
) -> AsyncIterator[ServerSentEventMessage]:
    everything = not (refund_ids or payment_ids)
    # Subscribe before reading the current state, so nothing falls between the two.
    async with channels.start_subscription(CHANNEL) as subscriber:
        # First bytes at once: routers drop a stream that stays silent (pitfall d8).
        yield ServerSentEventMessage(comment="connected", retry=RETRY_MS)
        if not everything:
            for message in await _current(request, engine, refund_ids, payment_ids):
                yield message
        async for data in _with_heartbeat(subscriber):
            if data is None:
                yield ServerSentEventMessage(comment="ping")
                continue
            if is_resync(data):
                # The listener was reconnected: changes made during the gap were never
                # announced, so send the current state again (as on a reconnection).
                yield ServerSentEventMessage(event="resync", data="")
                if not everything:
                    for message in await _current(request, engine, refund_ids, payment_ids):
                        yield message
                continue
            refunds, payments = decode(data)
            if not everything:
                # A payment's stream also carries its refunds, new ones included.
                refunds = [r for r in refunds if r.id in refund_ids or r.payment in payment_ids]
                payments = [p for p in payments if p.id in payment_ids]
            for message in _events(request, refunds, payments):
                yield message


async def _current(
    request: Request[Any, Any, Any],
    engine: AsyncEngine,
    refund_ids: set[int],
    payment_ids: set[int],
) -> list[ServerSentEventMessage]:
    async with AsyncSession(engine) as session:
        refunds, payments = await snapshot(
            session, refund_ids, payment_ids, refunds_of_payments=True
        )
    return _events(request, refunds, payments)


async def _with_heartbeat(subscriber: Subscriber) -> AsyncGenerator[bytes | None, None]:
    """The subscriber's events, with None every ``HEARTBEAT_S`` of silence."""
    events = subscriber.iter_events()
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_S)
            if not done:
                yield None
                continue
            try:
                data = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield data
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


@get("/events", name="live:events", cache_control=None, include_in_schema=False)
async def events(
    request: Request[Any, Any, Any],
    channels: NamedDependency[ChannelsPlugin],
    engine: NamedDependency[AsyncEngine],
    refund: FromQuery[list[int] | None] = None,
    payment: FromQuery[list[int] | None] = None,
) -> ServerSentEvent:
    refund_ids = set((refund or [])[:MAX_IDS])
    payment_ids = set((payment or [])[:MAX_IDS])
    return ServerSentEvent(
        _stream(request, channels, engine, refund_ids, payment_ids),
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@post("/refunds/{refund_pk:int}/check", name="refunds:check", status_code=200)
async def check_refund(
    request: Request[Any, Any, Any],
    refund_pk: FromPath[int],
    state: State,
    db_session: NamedDependency[AsyncSession],
) -> Template:
    """Ask Antom about one refund now (htmx); answers with its badge and what was learnt."""
    poller = getattr(state, "poller", None)
    if isinstance(poller, Poller):
        result = await poller.check_now(refund_pk, request_id=request_id_of(request))
        message = _CHECK_MESSAGES.get(result.result, result.message or result.result)
    else:
        message = "Antom is not configured on this desk, so refunds cannot be checked"
    refund = await listing.refund_by_pk(db_session, refund_pk)
    if refund is None:
        raise NotFoundException("No such refund")
    return Template(
        template_name="live/_check.html", context={"refund": refund, "message": message}
    )


_CHECK_MESSAGES = {
    "succeeded": "Antom confirms the refund succeeded",
    "failed": "Antom says the refund failed",
    "processing": "Antom is still processing the refund",
    "resent": "Antom had no record of the refund; it was sent again with the same id",
    "unknown": "Antom did not answer clearly; the desk will ask again",
    "rate_limited": "Antom asked the desk to slow down; the desk will ask again shortly",
    "mismatch": "Antom reports a different amount; a lead has been alerted",
    "contradiction": "Antom's answer contradicts the desk's record; a lead has been alerted",
    "final": "This refund is already settled",
    "busy": "Another check of this refund is running right now",
    "lost_lease": "Another check of this refund is running right now",
}


@get(
    "/alerts",
    name="live:alerts",
    guards=[requires_role(Role.LEAD, Role.ADMIN)],
    include_in_schema=False,
)
async def alerts(db_session: NamedDependency[AsyncSession]) -> Template:
    """What leads must look at: external refunds, stuck refunds, mismatches, orphans."""
    rows = await listing.open_alerts(db_session)
    return Template(template_name="live/alerts.html", context={"alerts": rows})


@post(
    "/alerts/{alert_pk:int}/resolve",
    name="live:resolve",
    guards=[requires_role(Role.LEAD, Role.ADMIN)],
    status_code=200,
    include_in_schema=False,
)
async def resolve_alert(
    alert_pk: FromPath[int],
    db_session: NamedDependency[AsyncSession],
    current_user: NamedDependency[User],
) -> Template:
    alert = await resolve(db_session, alert_pk, current_user)
    if alert is None:
        raise NotFoundException("No such alert")
    return Template(template_name="live/_alert_row.html", context={"alert": alert})


ROUTES = [events, check_refund, alerts, resolve_alert]
