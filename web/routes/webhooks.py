"""``POST /webhooks/antom``: every Antom notification type arrives here.

No session and no CSRF: the only credential is Antom's RSA signature over the raw
bytes (checked in ``web.services.webhooks``). The answer is Antom's fixed
acknowledgement once the notification is stored, non-2xx otherwise, so Antom retries.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from web import metrics
from web.antom.keys import load_public_key
from web.antom.notifications import NOTIFICATION_ACK
from web.request_ids import request_id_of
from web.services.webhooks import MAX_BODY_BYTES, WebhookConfig, ingest, record_rejection
from web.settings import Settings

log = logging.getLogger(__name__)

JSON = "application/json"


@lru_cache(maxsize=4)
def webhook_config(settings: Settings) -> WebhookConfig:
    """Parsed once per settings: the client id, the signed path, Antom's public keys."""
    parts = urlsplit(settings.refund_notify_url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    keys = tuple(
        load_public_key(text, name)
        for name, text in zip(
            ("ANTOM_PUBLIC_KEY", "ANTOM_PUBLIC_KEY_NEXT"), settings.antom_public_keys, strict=False
        )
    )
    return WebhookConfig(client_id=settings.antom_client_id, notify_path=path, public_keys=keys)


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
