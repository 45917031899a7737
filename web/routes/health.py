"""``GET /healthz``: the process is up and the database answers (503 when it does not).

Also reported, never a reason for 503: the inquiry poller (``poller``) and the live
listener (``live``: ``ok`` / ``reconnecting`` / ``memory``, since when, reconnects).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Response, get
from litestar.channels import ChannelsPlugin
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from web.jobs import last_heartbeat, poller_health
from web.live import LiveChannels

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 3.0


@get("/healthz", name="health", exclude_from_auth=True)
async def healthz(
    engine: NamedDependency[AsyncEngine],
    state: State,
    channels: NamedDependency[ChannelsPlugin],
) -> Response[dict[str, Any]]:
    try:
        # Reading the pollers' heartbeat is the database check: one statement, not two.
        async with asyncio.timeout(PING_TIMEOUT_S):
            latest = await last_heartbeat(engine)
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log only
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return Response({"status": "error", "database": "unreachable"}, status_code=503)
    # The poller's and the listener's liveness are reported, not reasons to take the web
    # instance out: it still serves pages and takes webhooks, and both recover by
    # themselves (a listener outage only delays badges; pages re-read state after it).
    live = channels.health() if isinstance(channels, LiveChannels) else {}
    return Response({"status": "ok", "database": "ok", **poller_health(state, latest), **live})
