"""Page or fragment: the only module that reads htmx request headers.

A URL that serves both a full page and a fragment decides here, once:
``wants_fragment`` is true for htmx requests that swap part of a page, and false for
boosted navigation and history restores (the back button must get a whole page).
Responses that vary this way carry ``Vary: HX-Request`` so no cache mixes them up.

The error handlers live here too because they make the same decision: a browser
gets a full error page; an htmx request gets a small error fragment aimed at the
page's toast area (``#toasts``), never into the table cell that asked.

What every route shares at this edge lives here as well: ``REFUSED``, the status of a
form the desk would not accept, and ``request_time``, the clock handlers judge by.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

log = logging.getLogger("web.errors")

TOAST_TARGET = "#toasts"
# Response header for an htmx action that changed what the page shows (a "check now", a
# resolved alert): static/app.js then re-fetches every live part of the page, as if its
# stream had hinted at them, so the page is right even without a stream.
STALE = {"HX-Trigger": "desk:stale"}
LOGIN_PATH = "/login"
# A form or upload the desk refused, answered with its messages. 422 tells scripts and
# tests it was refused; htmx is configured (base.html) to swap 422 bodies, so the
# messages reach the page, and static/app.js does not report it as a failed request.
REFUSED = 422


def request_time() -> datetime:
    """Now, in UTC: what a handler passes its services as ``now`` (the services take the
    time as an argument, so their tests can pin it)."""
    return datetime.now(UTC)


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return isinstance(request, HTMXRequest) and bool(request.htmx)


def wants_fragment(request: Request[Any, Any, Any]) -> bool:
    """True when htmx asks for part of a page (not boosted, not a history restore)."""
    if not isinstance(request, HTMXRequest) or not request.htmx:
        return False
    return not (request.htmx.boosted or request.htmx.history_restore_request)


def page_or_fragment(
    request: Request[Any, Any, Any],
    *,
    page: str,
    fragment: str,
    context: Mapping[str, Any],
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Template:
    """Render ``fragment`` alone for htmx swaps, else the full ``page`` (which includes it)."""
    return Template(
        template_name=fragment if wants_fragment(request) else page,
        context=dict(context),
        status_code=status_code,
        headers={"Vary": "HX-Request", **(headers or {})},
    )


def page_or_oob(
    request: Request[Any, Any, Any],
    *,
    page: str,
    fragment: str,
    context: Mapping[str, Any],
    status_code: int = 200,
) -> Template:
    """Like ``page_or_fragment``, for a fragment made only of out-of-band parts: htmx
    swaps those by id and leaves the element that asked (a button, a form) in place."""
    headers = {"HX-Reswap": "none"} if wants_fragment(request) else None
    return page_or_fragment(
        request,
        page=page,
        fragment=fragment,
        context=context,
        status_code=status_code,
        headers=headers,
    )


def _local_path(url: str | None) -> str:
    """The path+query of ``url`` if it is on this site, else "/" (no open redirects)."""
    if not url:
        return "/"
    parts = urlsplit(url)
    path = parts.path or "/"
    if not path.startswith("/") or path.startswith("//"):
        return "/"
    return path + (f"?{parts.query}" if parts.query else "")


def safe_next(url: str | None) -> str:
    """Where to go after sign-in: a local path only, never the sign-in page itself."""
    if not url or "\\" in url or urlsplit(url).scheme or urlsplit(url).netloc:
        return "/"
    target = _local_path(url)
    return "/" if target.startswith(LOGIN_PATH) else target


def login_url(next_path: str) -> str:
    return LOGIN_PATH if next_path in ("", "/") else f"{LOGIN_PATH}?next={quote(next_path)}"


def _error_response(
    request: Request[Any, Any, Any], status_code: int, title: str, message: str
) -> Response[Any]:
    context = {"status_code": status_code, "title": title, "message": message}
    if is_htmx(request) and wants_fragment(request):
        return Template(
            template_name="errors/_error.html",
            context=context,
            status_code=status_code,
            headers={"HX-Retarget": TOAST_TARGET, "HX-Reswap": "beforeend"},
        )
    page = f"errors/{status_code}.html" if status_code in (403, 404, 500) else "errors/error.html"
    return Template(template_name=page, context=context, status_code=status_code)


def handle_not_authorized(
    request: Request[Any, Any, Any], _: NotAuthorizedException
) -> Response[Any]:
    """No valid session: send browsers to sign-in, and make htmx do a full redirect."""
    if is_htmx(request):
        current = request.headers.get("HX-Current-URL")
        target = login_url(safe_next(_local_path(current)))
        return Response(content="", status_code=401, headers={"HX-Redirect": target})
    next_path = _local_path(str(request.url)) if request.method == "GET" else "/"
    return Redirect(login_url(safe_next(next_path)), status_code=303)


def handle_permission_denied(
    request: Request[Any, Any, Any], exc: PermissionDeniedException
) -> Response[Any]:
    if "CSRF" in str(exc.detail):
        message = "This form has expired. Reload the page and try again."
    else:
        message = str(exc.detail) or "You do not have access to this."
    return _error_response(request, 403, "Not allowed", message)


def handle_not_found(request: Request[Any, Any, Any], _: NotFoundException) -> Response[Any]:
    return _error_response(request, 404, "Not found", "There is nothing at this address.")


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 503:
        # Raised on purpose (e.g. Antom not configured); the detail is written for people.
        return _error_response(request, 503, "Not available", str(exc.detail))
    if exc.status_code >= 500:
        return handle_server_error(request, exc)
    # Client errors carry messages written for people (never internals); show them.
    return _error_response(request, exc.status_code, "Request not accepted", str(exc.detail))


def handle_server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error(
        "unhandled error on %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc_info=exc,
    )
    return _error_response(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The desk hit an unexpected error. Reload the page to see the current state "
        "before trying again, and tell the desk's maintainers if it keeps happening.",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    NotAuthorizedException: handle_not_authorized,
    PermissionDeniedException: handle_permission_denied,
    NotFoundException: handle_not_found,
    HTTPException: handle_http_exception,
    Exception: handle_server_error,
}
