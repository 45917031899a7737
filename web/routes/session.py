"""Sign in, sign out, sign out everywhere, and the account page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.plugins.htmx import ClientRedirect
from litestar.response import Redirect, Template
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import actor_of, requires, sign_in, sign_out
from web.htmx import LOGIN_PATH, is_htmx, safe_next
from web.models import User
from web.rules.access import Permission
from web.services import session_audit, throttle
from web.services.audit import Actor
from web.services.limits import limits_for
from web.services.users import authenticate, revoke_sessions
from web.settings import Settings

log = logging.getLogger(__name__)

WRONG_CREDENTIALS = "The email or password is wrong."
HOME_PATH = "/payments"


@dataclass
class LoginForm:
    email: str = ""
    password: str = ""
    next: str = ""


def login_page_template(
    settings: Settings,
    *,
    email: str = "",
    next_path: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    return Template(
        template_name="session/login.html",
        context={
            "email": email,
            "next": next_path,
            "error": error,
            "sso_label": settings.oidc.label if settings.oidc.enabled else None,
        },
        status_code=status_code,
    )


def _echo(email: str) -> str:
    """What to put back in the email field after a failed sign-in.

    People sometimes type their password into the email field; something that is not
    shaped like an email is not sent back into the page.
    """
    return email if "@" in email and not any(c.isspace() for c in email) else ""


@get(LOGIN_PATH, name="session:login", exclude_from_auth=True)
async def login_page(
    settings: NamedDependency[Settings],
    next_path: Annotated[str, QueryParameter(name="next")] = "",
) -> Template:
    return login_page_template(settings, next_path=safe_next(next_path) if next_path else "")


@post(LOGIN_PATH, name="session:login-submit", exclude_from_auth=True)
async def login_submit(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[LoginForm],
    db_session: NamedDependency[AsyncSession],
    settings: NamedDependency[Settings],
) -> Template | Redirect:
    email = data.email.strip()
    if not email or not data.password:
        return login_page_template(
            settings,
            email=email,
            next_path=data.next,
            error="Enter your email and password.",
            status_code=400,
        )
    # The address uvicorn reports: the peer, or X-Forwarded-For when the peer is a
    # trusted proxy (--proxy-headers, FORWARDED_ALLOW_IPS), so clients cannot pick it.
    ip = request.client.host if request.client else None
    refused = await throttle.refusal(db_session, email, ip)
    if refused is not None:
        # Checked before the password, so a locked account gives away nothing more.
        log.warning("sign-in refused: too many failures (%s, address %s)", refused.scope, ip)
        await session_audit.sign_in_throttled(
            db_session, actor_of(request), email=email, refusal=refused
        )
        return login_page_template(
            settings,
            email=_echo(email),
            next_path=data.next,
            error=refused.message,
            status_code=429,
        )
    user = await authenticate(db_session, email, data.password)
    if user is None:
        await throttle.record_failure(db_session, email, ip)
        log.info("sign-in failed (address %s)", ip)
        await session_audit.sign_in_failed(
            db_session, actor_of(request), method="password", email=email
        )
        return login_page_template(
            settings,
            email=_echo(email),
            next_path=data.next,
            error=WRONG_CREDENTIALS,
            status_code=400,
        )
    await throttle.record_success(db_session, email)
    await sign_in(request, db_session, user, method="password")
    return Redirect(safe_next(data.next) if data.next else "/", status_code=303)


async def _to_login(
    request: Request[Any, Any, Any], db_session: AsyncSession, message: str
) -> Redirect | ClientRedirect:
    await sign_out(request, db_session)
    # An empty session that only carries the message; the cookie holds no user any more.
    request.set_session({})
    flash(request, message, category="info")
    if is_htmx(request):
        return ClientRedirect(redirect_to=LOGIN_PATH)
    return Redirect(LOGIN_PATH, status_code=303)


@post("/logout", name="session:logout", guards=[requires(Permission.USE_DESK)])
async def logout(
    request: Request[Any, Any, Any],
    db_session: NamedDependency[AsyncSession],
    actor: NamedDependency[Actor],
) -> Redirect | ClientRedirect:
    # Revoked in the database, not just forgotten by this browser: a copy of the cookie
    # taken before this request is refused afterwards, on every instance.
    await session_audit.signed_out(db_session, actor)
    return await _to_login(request, db_session, "You are signed out.")


@post(
    "/account/sign-out-everywhere",
    name="session:sign-out-everywhere",
    guards=[requires(Permission.USE_DESK)],
)
async def sign_out_everywhere(
    request: Request[Any, Any, Any],
    current_user: NamedDependency[User],
    db_session: NamedDependency[AsyncSession],
    actor: NamedDependency[Actor],
) -> Redirect | ClientRedirect:
    assert current_user.id is not None
    await revoke_sessions(db_session, current_user.id)
    await session_audit.signed_out(db_session, actor, everywhere=True)
    return await _to_login(request, db_session, "You are signed out on every device and browser.")


@get("/account", name="session:account", guards=[requires(Permission.USE_DESK)])
async def account(
    current_user: NamedDependency[User], db_session: NamedDependency[AsyncSession]
) -> Template:
    assert current_user.id is not None
    limits = await limits_for(db_session, current_user)
    return Template(
        template_name="session/account.html",
        context={"user": current_user, "limits": limits},
    )


@get("/", name="home", guards=[requires(Permission.USE_DESK)])
async def home() -> Redirect:
    return Redirect(HOME_PATH, status_code=303)


ROUTES = [login_page, login_submit, logout, sign_out_everywhere, account, home]
