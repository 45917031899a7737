"""Sign-in sessions, CSRF, permission guards and browser security headers.

A session is a ``UserSession`` row in the database; the AES-GCM encrypted cookie
carries only its random token (and flash messages). Every request reads the session
and its user in one query (web/services/users.py), so any instance can serve any
request, and signing out, signing out everywhere or deactivating a user ends the
session on all of them at once: a copy of the cookie is refused afterwards. Sessions
end after ``IDLE_TIMEOUT_S`` without a request and ``ABSOLUTE_TIMEOUT_S`` after
sign-in, whichever comes first, on the server's clock (the policy lives with the
sessions, in web/services/users.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.security.session_auth import SessionAuth
from litestar.types import Message, Scope
from sqlmodel.ext.asyncio.session import AsyncSession

from web.db import session_scope
from web.models import ApiKey, User
from web.request_ids import request_id_of
from web.rules.access import Permission, can
from web.services import session_audit
from web.services.audit import Actor
from web.services.users import (
    ABSOLUTE_TIMEOUT_S,
    end_session,
    get_signed_in_user,
    start_session,
)
from web.settings import Settings

# The session cookie's key for the token; the rest of the cookie is flash messages.
SESSION_ID_KEY = "sid"
_MAX_TOKEN_CHARS = 128  # token_urlsafe(32) is 43; anything longer is not ours

# Paths served without a signed-in user. Webhooks authenticate by signature instead, the
# merchant API by its key (web/routes/api.py); neither carries cookies, so neither
# needs CSRF protection.
PUBLIC_PATHS = ["^/login$", "^/static/", "^/healthz$", "^/webhooks/", "^/api/"]
CSRF_EXEMPT_PATHS = ["^/webhooks/", "^/api/"]


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, so one SECRET_KEY serves cookies and CSRF alike."""
    return hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()


def cookie_name(settings: Settings, name: str) -> str:
    # __Host- pins the cookie to this exact origin, https only, path / (ASVS 3.3.3).
    return f"__Host-{name}" if settings.https else name


def _session_token(session: dict[str, Any]) -> str | None:
    # Litestar leaves a sentinel, not a dict, in the scope once a session is cleared.
    token = session.get(SESSION_ID_KEY) if isinstance(session, dict) else None
    if isinstance(token, str) and 0 < len(token) <= _MAX_TOKEN_CHARS:
        return token
    return None


async def retrieve_user(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> User | None:
    """The signed-in user for a session cookie, or None (the middleware then clears it).

    A cookie from before server-side sessions (``uid``/``sv``) has no token and is
    refused: its owner signs in once more.
    """
    token = _session_token(session)
    if token is None:
        return None
    async with session_scope(connection.app.state.engine) as db:
        return await get_signed_in_user(db, token)


async def sign_in(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    user: User,
    *,
    method: session_audit.Method,
) -> None:
    """Start a new server-side session and hand its token to the browser; the audit
    trail records the sign-in (``method``: password or single sign-on) with it.

    Always a new token, so a session id planted before sign-in is worth nothing; a
    session the browser still carried (another user, or an earlier sign-in) is ended.
    """
    previous = _session_token(request.session)
    if previous is not None:
        await end_session(db, previous)
    token = await start_session(
        db,
        user,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    await session_audit.signed_in(db, actor_of(request, user), user, method=method)
    request.set_session({SESSION_ID_KEY: token})


async def sign_out(request: Request[Any, Any, Any], db: AsyncSession) -> None:
    """Revoke this browser's session in the database, then drop the cookie."""
    token = _session_token(request.session)
    if token is not None:
        await end_session(db, token)
    request.clear_session()


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> User | None:
    """The signed-in user, or None on public paths (no error when auth did not run)."""
    user = connection.scope.get("user")
    return user if isinstance(user, User) else None


def provide_current_user(request: Request[Any, Any, Any]) -> User:
    user = current_user(request)
    if user is None:
        raise PermissionDeniedException("Sign in first")
    return user


def actor_of(request: Request[Any, Any, Any], user: User | None = None) -> Actor:
    """Who is acting in this request, as the audit trail records them."""
    who = user if user is not None else current_user(request)
    return Actor(
        user_id=who.id if who is not None else None,
        label=who.email if who is not None else None,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=request_id_of(request),
    )


def key_actor(request: Request[Any, Any, Any], key: ApiKey) -> Actor:
    """A merchant system calling with an API key: named by the key's name and prefix
    (never the key), with the request's address, user agent and id."""
    return replace(actor_of(request), label=f"API key “{key.name}” ({key.prefix}…)")


def provide_actor(request: Request[Any, Any, Any]) -> Actor:
    """The ``actor`` dependency: the signed-in user (or nobody) behind this request."""
    return actor_of(request)


class PermissionGuard:
    """A route's declared permission: admits only a signed-in user who holds it.

    ``permission`` stays readable on the guard, so the route table can be checked
    against ``web.rules.access`` (``tests/app/test_access.py``).
    """

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        self.__name__ = f"requires_{permission.value}"

    # Async, so Litestar calls it in the request's task instead of a worker thread.
    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        user = current_user(connection)
        if user is None:
            raise NotAuthorizedException("Sign in first")
        if not can(user, self.permission):
            raise PermissionDeniedException(
                f"You do not have the permission this needs ({self.permission.value})"
            )


def requires(permission: Permission) -> PermissionGuard:
    """The guard every route that is not public declares (at Controller level or on the
    handler): ``guards=[requires(Permission.REFUND)]``."""
    return PermissionGuard(permission)


def build_session_auth(settings: Settings) -> SessionAuth[User, ClientSideSessionBackend]:
    cookies = CookieBackendConfig(
        secret=derive_key(settings.secret_key, "session-cookie"),
        key=cookie_name(settings, "rd_session"),
        max_age=ABSOLUTE_TIMEOUT_S,
        path="/",
        secure=settings.https,
        httponly=True,
        samesite="lax",
    )
    return SessionAuth[User, ClientSideSessionBackend](
        retrieve_user_handler=retrieve_user,
        session_backend_config=cookies,
        exclude=PUBLIC_PATHS,
    )


def build_csrf_config(settings: Settings) -> CSRFConfig:
    # The token is rendered into pages (hx-headers, csrf_input), so the cookie can stay
    # HttpOnly; Litestar's token is stable for the cookie's lifetime.
    return CSRFConfig(
        secret=derive_key(settings.secret_key, "csrf").hex(),
        cookie_name=cookie_name(settings, "rd_csrf"),
        cookie_secure=settings.https,
        cookie_httponly=True,
        cookie_samesite="lax",
        exclude=CSRF_EXEMPT_PATHS,
    )


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


def security_headers_hook(settings: Settings) -> Callable[[Message, Scope], Awaitable[None]]:
    """A ``before_send`` hook adding CSP, nosniff, referrer and framing headers.

    ``before_send`` sees every response, including 404s raised before routing and
    error pages. Pages are ``no-store``: they show customer data and must not come
    back from a shared or back-button cache; static files keep their own caching.
    """
    fixed: list[tuple[bytes, bytes]] = [
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]
    if settings.https:
        fixed.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = list(message.get("headers", []))
        present = {bytes(k).lower() for k, _ in headers}
        headers.extend(h for h in fixed if h[0] not in present)
        if not scope["path"].startswith("/static/") and b"cache-control" not in present:
            headers.append((b"cache-control", b"no-store"))
        message["headers"] = headers

    return add_headers
