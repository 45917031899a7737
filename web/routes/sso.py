"""Single sign-on: leave for the OpenID Connect provider, come back signed in.

Both legs are GETs (top-level navigations, so the SameSite=Lax session cookie comes
along); what binds them is the ``state`` kept in the encrypted session cookie.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import httpx
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Template
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import actor_of, sign_in
from web.htmx import safe_next
from web.routes.session import login_page_template
from web.services import session_audit, sso
from web.settings import Settings

log = logging.getLogger(__name__)

SSO_PATH = "/login/sso"
CALLBACK_PATH = "/login/sso/callback"
_PENDING_KEY = "sso"


def _redirect_uri(settings: Settings) -> str:
    return settings.public_base_url + CALLBACK_PATH


def _refused(settings: Settings, message: str, status_code: int) -> Template:
    return login_page_template(settings, error=message, status_code=status_code)


@get(SSO_PATH, name="sso:start", exclude_from_auth=True)
async def sso_start(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    next_path: Annotated[str, QueryParameter(name="next")] = "",
) -> Redirect | Template:
    if not settings.oidc.enabled:
        return _refused(settings, "Single sign-on is not set up on this desk.", 404)
    try:
        async with httpx.AsyncClient() as http:
            url, pending = await sso.begin(
                http, settings.oidc, _redirect_uri(settings), safe_next(next_path)
            )
    except sso.SSOError as exc:
        return _refused(settings, str(exc), 502)
    request.set_session({**_session_dict(request), _PENDING_KEY: pending.as_dict()})
    return Redirect(url, status_code=303)


@get(CALLBACK_PATH, name="sso:callback", exclude_from_auth=True)
async def sso_callback(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    db_session: NamedDependency[AsyncSession],
    code: Annotated[str, QueryParameter()] = "",
    # "state" is a reserved parameter name in Litestar (the app state).
    oauth_state: Annotated[str, QueryParameter(name="state")] = "",
    error: Annotated[str, QueryParameter()] = "",
) -> Redirect | Template:
    if not settings.oidc.enabled:
        return _refused(settings, "Single sign-on is not set up on this desk.", 404)
    session = _session_dict(request)
    # One use only: a replayed answer finds nothing pending.
    pending = sso.Pending.from_dict(session.pop(_PENDING_KEY, None))
    request.set_session(session)
    if error:
        message = "The sign-on provider did not sign you in."
        await session_audit.sign_in_failed(
            db_session, actor_of(request), method="sso", reason=message
        )
        return _refused(settings, message, 400)
    person: sso.Identity | None = None
    try:
        async with httpx.AsyncClient() as http:
            claims = await sso.finish(
                http, settings.oidc, _redirect_uri(settings), pending, code=code, state=oauth_state
            )
        person = sso.identity(settings.oidc, claims)
        role = sso.role_for(settings.oidc, person)
        user = await sso.user_for(db_session, person, role)
    except sso.SSOError as exc:
        log.warning("single sign-on refused: %s", exc)
        await session_audit.sign_in_failed(
            db_session,
            actor_of(request),
            method="sso",
            email=person.email if person else "",
            reason=str(exc),
        )
        return _refused(settings, str(exc), 403)
    await sign_in(request, db_session, user, method="sso")
    log.info("single sign-on: user %s signed in as %s", user.id, user.role)
    target = pending.next_path if pending else ""
    return Redirect(target or "/", status_code=303)


def _session_dict(request: Request[Any, Any, Any]) -> dict[str, Any]:
    # Litestar leaves a sentinel, not a dict, once a session is cleared.
    current = request.session
    return dict(current) if isinstance(current, dict) else {}


ROUTES = [sso_start, sso_callback]
