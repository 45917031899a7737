"""``POST /webhooks/antom``: every Antom notification type arrives here.

No session and no CSRF: the only credential is Antom's RSA signature over the raw
bytes (checked in ``web.antom.notifications``). The answer is Antom's fixed
acknowledgement once the notification is stored, non-2xx otherwise, so Antom retries;
a verified notification the desk cannot apply is stored and acknowledged too.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from web import metrics
from web.antom.notifications import MAX_BODY_BYTES, NOTIFICATION_ACK
from web.integration import webhook_config
from web.request_ids import request_id_of
from web.services.webhooks import ingest, record_rejection
from web.settings import Settings

log = logging.getLogger(__name__)

JSON = "application/json"


@post(
    "/webhooks/antom",
    name="webhooks:antom",
    exclude_from_csrf=True,
    exclude_from_auth=True,
    request_max_body_size=MAX_BODY_BYTES,
    status_code=200,
    cache_control=None,
    include_in_schema=False,
)
async def antom_webhook(
    request: Request[Any, Any, Any],
    engine: NamedDependency[AsyncEngine],
    settings: NamedDependency[Settings],
) -> Response[bytes]:
    request_id = request_id_of(request)
    remote = request.client.host if request.client else None
    try:
        body = await request.body()
    except RequestEntityTooLarge:
        log.warning("webhook refused reason=too_large remote=%s request_id=%s", remote, request_id)
        metrics.webhook_refused("too_large")
        await record_rejection(
            engine,
            reason="too_large",
            detail=f"over {MAX_BODY_BYTES} bytes",
            path=request.url.path,
            headers=request.headers,
            body=None,
            remote_addr=remote,
            request_id=request_id,
        )
        raise
    if not settings.antom_client_id or not settings.antom_public_keys:
        log.error("webhook refused reason=not_configured request_id=%s", request_id)
        metrics.webhook_refused("not_configured")
        return Response(b"", status_code=503)
    try:
        result = await ingest(
            engine,
            webhook_config(settings),
            headers=request.headers,
            body=body,
            path=request.url.path,
            remote_addr=remote,
            request_id=request_id,
        )
    except SQLAlchemyError:
        # Nothing was acknowledged, so Antom delivers again once the database is back.
        log.exception("webhook not stored: database error request_id=%s", request_id)
        metrics.webhook_refused("database")
        return Response(b"", status_code=503)
    # The request id goes back in x-request-id (web/request_ids.py), as on every answer.
    if not result.accepted:
        metrics.webhook_refused(result.reason or "unknown")
        return Response(b"", status_code=result.status_code)
    metrics.webhook_accepted(result.outcome or "unknown")
    # Open pages hear about what this changed from the commit hook (web/live.py).
    return Response(NOTIFICATION_ACK, status_code=200, media_type=JSON)
