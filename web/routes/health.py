"""``GET /healthz``: the process is up and the database answers (503 when it does not)."""

from __future__ import annotations

import asyncio
import logging

from litestar import Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine

from web.db import ping
from web.jobs import poller_health

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 3.0


@get("/healthz", name="health", exclude_from_auth=True)
async def healthz(
    engine: NamedDependency[AsyncEngine], state: State
) -> Response[dict[str, str | None]]:
    try:
        await asyncio.wait_for(ping(engine), timeout=PING_TIMEOUT_S)
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log only
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return Response({"status": "error", "database": "unreachable"}, status_code=503)
    # The poller's liveness is reported, not a reason to take the web instance out.
    return Response({"status": "ok", "database": "ok", **await poller_health(state, engine)})
