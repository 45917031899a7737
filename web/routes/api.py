"""The merchant-facing API: ``POST /api/orders``, the order feed (README, "Order feed").

Authenticated by an API key in ``Authorization: Bearer rdk_…`` (web/services/api_keys.py),
never by a session cookie, so the path is outside session auth and CSRF (web/auth.py).
Every answer is JSON, errors included: the handlers below replace the app's HTML error
pages for this controller. No answer or log line ever contains the key.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from litestar.types import ExceptionHandlersMap
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import key_actor
from web.models import ApiKey, ApiKeyScope
from web.services import orders
from web.services.api_keys import KeyRefused, authenticate, bearer_token

log = logging.getLogger("web.api")

# 1,000 records of a few hundred bytes each; the app's default limit is smaller.
MAX_BODY_BYTES = 1024 * 1024

Json = dict[str, Any]


def _errors(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> Response[Json]:
    return Response({"errors": [{"message": message}]}, status_code=status_code, headers=headers)


def _not_authorized(_: Request[Any, Any, Any], exc: NotAuthorizedException) -> Response[Json]:
    return _errors(HTTP_401_UNAUTHORIZED, str(exc.detail), {"WWW-Authenticate": "Bearer"})


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Json]:
    return _errors(exc.status_code, str(exc.detail))


def _server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Json]:
    log.error(
        "unhandled error on %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc_info=exc,
    )
    return _errors(HTTP_500_INTERNAL_SERVER_ERROR, "The desk hit an unexpected error; try again")


API_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    NotAuthorizedException: _not_authorized,
    HTTPException: _http_error,
    Exception: _server_error,
}


async def provide_orders_key(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
) -> ApiKey:
    """The caller's key, if it is live and made for the order feed; else a 401."""
    token = bearer_token(request.headers.get("authorization"))
    try:
        return await authenticate(db_session, token, ApiKeyScope.ORDERS_WRITE)
    except KeyRefused as exc:
        raise NotAuthorizedException(str(exc)) from None


class OrderFeedController(Controller):
    path = "/api"
    exception_handlers = API_EXCEPTION_HANDLERS
    include_in_schema = False

    @post(
        "/orders",
        name="api:orders",
        exclude_from_auth=True,  # an API key, not a session (provide_orders_key)
        request_max_body_size=MAX_BODY_BYTES,
        status_code=HTTP_200_OK,
        dependencies={"api_key": Provide(provide_orders_key)},
    )
    async def post_orders(
        self,
        request: Request[Any, Any, Any],
        api_key: NamedDependency[ApiKey],
        db_session: NamedDependency[AsyncSession],
    ) -> Response[Json]:
        """One order (a JSON object) or many (a list); each accepted or rejected alone.

        200 when every record was stored, 422 when some were not (the others were);
        ``results`` says which, in the order sent, with field-level ``errors``.
        """
        try:
            body = json.loads(await request.body())
            results = await orders.ingest(
                db_session, body, api_key_pk=api_key.id, actor=key_actor(request, api_key)
            )
        except json.JSONDecodeError as exc:
            return _errors(HTTP_400_BAD_REQUEST, f"The body is not valid JSON ({exc})")
        except UnicodeDecodeError:
            return _errors(HTTP_400_BAD_REQUEST, "The body is not UTF-8 JSON")
        except orders.BatchError as exc:
            return _errors(HTTP_400_BAD_REQUEST, str(exc))
        rejected = sum(not r.accepted for r in results)
        return Response(
            {
                "accepted": len(results) - rejected,
                "rejected": rejected,
                "results": [r.as_json() for r in results],
            },
            status_code=HTTP_422_UNPROCESSABLE_ENTITY if rejected else HTTP_200_OK,
        )


ROUTES = [OrderFeedController]
