"""Live status: the SSE stream of hints and "check now" (the worklists: web/routes/worklists.py).

``GET /events?payment=5.<version>&refund=7.<version>&refunds=<id>&payments=<id>&alerts=<n>``
streams *hints* for what the page shows (``web.live.Watch``): ``event: payment-5``,
``event: refund-7`` (data: the new version), ``event: refunds`` / ``payments`` (a listed
row changed or a newer one exists), ``event: alerts`` (the worklists moved) and
``event: bulk-3`` (a bulk batch's progress moved: ``bulk=3.<version>``). A hint carries
no content: ``static/app.js`` answers it by fetching the page's fragments, rendered from the
database. Each connection first says ``ready`` (it is subscribed), then hints at
whatever moved since the versions the page was rendered at; after the listener
reconnected, a ``resync`` event and hints for everything watched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
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

from web.auth import requires
from web.db import read_scope
from web.htmx import STALE
from web.live import (
    CHANNEL,
    HEARTBEAT_S,
    Watch,
    decode,
    hints,
    is_resync,
    parse_watch,
    since_seen,
    unseen,
)
from web.request_ids import request_id_of
from web.rules.access import Permission
from web.services import listing
from web.services.poller import Poller

RETRY_MS = 2000


def _hint(name: str, data: str) -> ServerSentEventMessage:
    # Empty data would make EventSource drop the event: the name stands in for it.
    return ServerSentEventMessage(event=name, data=data or name)


async def _stream(
    channels: ChannelsPlugin, engine: AsyncEngine, watch: Watch
) -> AsyncIterator[ServerSentEventMessage]:
    # Subscribe before reading the current state, so nothing falls between the two.
    async with channels.start_subscription(CHANNEL) as subscriber:
        # First bytes at once: routers drop a stream that stays silent (pitfall d8).
        yield ServerSentEventMessage(comment="connected", retry=RETRY_MS)
        yield ServerSentEventMessage(event="ready", data="ready")
        for name, version in await _moved_since_seen(engine, watch):
            yield _hint(name, version)
        async for data in _with_heartbeat(subscriber):
            if data is None:
                yield ServerSentEventMessage(comment="ping")
                continue
            if is_resync(data):
                # The listener was reconnected: changes made during the gap were never
                # announced, so the page re-reads everything it shows.
                yield ServerSentEventMessage(event="resync", data="resync")
                for name, version in await _moved_since_seen(engine, unseen(watch)):
                    yield _hint(name, version)
                continue
            for name, version in hints(watch, decode(data)):
                yield _hint(name, version)


async def _moved_since_seen(engine: AsyncEngine, watch: Watch) -> list[tuple[str, str]]:
    if watch.empty:
        return []
    async with read_scope(engine) as session:
        return hints(watch, await since_seen(session, watch))


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


@get(
    "/events",
    name="live:events",
    cache_control=None,
    include_in_schema=False,
    guards=[requires(Permission.VIEW_PAYMENTS)],
)
async def events(
    channels: NamedDependency[ChannelsPlugin],
    engine: NamedDependency[AsyncEngine],
    payment: FromQuery[list[str] | None] = None,
    refund: FromQuery[list[str] | None] = None,
    refunds: FromQuery[str | None] = None,
    payments: FromQuery[str | None] = None,
    alerts: FromQuery[str | None] = None,
    approvals: FromQuery[str | None] = None,
    bulk: FromQuery[list[str] | None] = None,
) -> ServerSentEvent:
    watch = parse_watch(
        payment or [], refund or [], refunds, payments, alerts, approvals, bulk or []
    )
    return ServerSentEvent(
        _stream(channels, engine, watch),
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@post(
    "/refunds/{refund_pk:int}/check",
    name="refunds:check",
    status_code=200,
    guards=[requires(Permission.VIEW_PAYMENTS)],
)
async def check_refund(
    request: Request[Any, Any, Any],
    refund_pk: FromPath[int],
    state: State,
    db_session: NamedDependency[AsyncSession],
) -> Template:
    """Ask Antom about one refund now (htmx): answers with what was learnt, as a message;
    the page then re-reads the refund's parts from the database (``STALE``)."""
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
        template_name="live/_check.html",
        context={"refund": refund, "message": message},
        headers=STALE,
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


ROUTES = [events, check_refund]
