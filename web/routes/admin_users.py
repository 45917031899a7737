"""Admin pages: people (/admin/users) and the public page a one-time link opens.

Invite and reset answer with the page that shows the new link, once (pages are
``no-store``); the link is never stored, only its hash. Using the link does not sign
anyone in: the new password is then used on the sign-in page, which proves it works.
The link's address moves its token into the session cookie and redirects, so the page
itself (and anything that records addresses) never shows the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from litestar.types import ControllerRouterHandler
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import LOGIN_PATH, REFUSED
from web.models import Role
from web.rules.access import Permission
from web.services import users
from web.services.audit import Actor
from web.settings import Settings


@dataclass
class InviteForm:
    email: str = ""
    name: str = ""
    role: str = Role.AGENT.value


@dataclass
class RoleForm:
    role: str = ""


@dataclass
class PasswordForm:
    password: str = ""
    confirm: str = ""


def link_url(settings: Settings, request: Request[Any, Any, Any], token: str) -> str:
    path = request.app.route_reverse("password:link", token=token)
    return settings.public_base_url.rstrip("/") + path


async def _page(
    session: AsyncSession,
    *,
    link: users.PasswordLink | None = None,
    link_url: str | None = None,
    form: InviteForm | None = None,
    errors: dict[str, str] | None = None,
    row_error: tuple[int, str] | None = None,
    status_code: int = 200,
) -> Template:
    return Template(
        template_name="admin/users.html",
        context={
            "rows": await users.user_rows(session),
            "roles": list(Role),
            "role_options": [(r.value, r.value.capitalize()) for r in Role],
            "link": link,
            "link_url": link_url,
            "form": form or InviteForm(),
            "errors": errors or {},
            "row_error": row_error,
            "lifetime_h": int(users.LINK_LIFETIME.total_seconds() // 3600),
        },
        status_code=status_code,
    )


def _back(request: Request[Any, Any, Any], message: str) -> Redirect:
    flash(request, message, category="success")
    return Redirect(request.app.route_reverse("admin:users"), status_code=303)


class UsersController(Controller):
    path = "/admin/users"
    guards = (requires(Permission.MANAGE_USERS),)
    include_in_schema = False

    @get("/", name="admin:users")
    async def index(self, db_session: NamedDependency[AsyncSession]) -> Template:
        return await _page(db_session)

    @post("/", name="admin:users_invite", status_code=200)
    async def invite(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[InviteForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Template:
        try:
            link = await users.invite_user(
                db_session, email=data.email, name=data.name, role=data.role, actor=actor
            )
        except users.UserFormError as exc:
            return await _page(db_session, form=data, errors=exc.errors, status_code=REFUSED)
        return await _page(db_session, link=link, link_url=link_url(settings, request, link.token))

    @post("/{user_pk:int}/role", name="admin:users_role")
    async def role(
        self,
        request: Request[Any, Any, Any],
        user_pk: FromPath[int],
        data: URLEncodedBody[RoleForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        try:
            user = await users.get_user(db_session, user_pk)
            before = user.role
            await users.change_role(db_session, user_pk, data.role, actor=actor)
        except users.UserError as exc:
            return await _page(db_session, row_error=(user_pk, str(exc)), status_code=REFUSED)
        if before == user.role:
            return _back(request, f"{user.email} is already {user.role}")
        return _back(request, f"{user.email} is now {user.role}; their sessions have ended")

    @post("/{user_pk:int}/disable", name="admin:users_disable")
    async def disable(
        self,
        request: Request[Any, Any, Any],
        user_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        try:
            user = await users.disable_user(db_session, user_pk, actor=actor)
        except users.UserError as exc:
            return await _page(db_session, row_error=(user_pk, str(exc)), status_code=REFUSED)
        return _back(request, f"Disabled {user.email}; their sessions have ended")

    @post("/{user_pk:int}/enable", name="admin:users_enable")
    async def enable(
        self,
        request: Request[Any, Any, Any],
        user_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        try:
            user = await users.enable_user(db_session, user_pk, actor=actor)
        except users.UserError as exc:
            return await _page(db_session, row_error=(user_pk, str(exc)), status_code=REFUSED)
        return _back(request, f"Enabled {user.email}")

    @post("/{user_pk:int}/reset-password", name="admin:users_reset", status_code=200)
    async def reset(
        self,
        request: Request[Any, Any, Any],
        user_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Template:
        try:
            link = await users.reset_password(db_session, user_pk, actor=actor)
        except users.UserError as exc:
            return await _page(db_session, row_error=(user_pk, str(exc)), status_code=REFUSED)
        return await _page(db_session, link=link, link_url=link_url(settings, request, link.token))


# The one-time link's token moves from the address into the (encrypted) session cookie
# at once: the page then lives at an address without it, so it is not in the browser's
# history, a Referer, an error log line or a screenshot of the address bar.
LINK_SESSION_KEY = "password_link"


def _session_token(request: Request[Any, Any, Any]) -> str:
    session = request.session if isinstance(request.session, dict) else {}
    token = session.get(LINK_SESSION_KEY)
    return token if isinstance(token, str) else ""


def _keep_session(request: Request[Any, Any, Any], **changes: str | None) -> None:
    session = dict(request.session) if isinstance(request.session, dict) else {}
    for key, value in changes.items():
        if value is None:
            session.pop(key, None)
        else:
            session[key] = value
    request.set_session(session)


def _password_page(
    *,
    user_email: str | None,
    error: str | None = None,
    confirm_error: str | None = None,
    status_code: int = 200,
) -> Template:
    return Template(
        template_name="session/set_password.html",
        context={
            "user_email": user_email,
            "error": error,
            "confirm_error": confirm_error,
            "min_length": users.MIN_PASSWORD_LENGTH,
            "unusable": users.LINK_UNUSABLE,
        },
        status_code=status_code,
    )


@get("/set-password/{token:str}", name="password:link", exclude_from_auth=True)
async def open_link(request: Request[Any, Any, Any], token: FromPath[str]) -> Redirect:
    _keep_session(request, **{LINK_SESSION_KEY: token[:128]})
    return Redirect(request.app.route_reverse("password:set"), status_code=303)


@get("/set-password", name="password:set", exclude_from_auth=True)
async def set_password_page(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
) -> Template:
    user = await users.link_user(db_session, _session_token(request))
    return _password_page(user_email=user.email if user else None, status_code=200 if user else 410)


@post("/set-password", name="password:set_submit", exclude_from_auth=True)
async def set_password_submit(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[PasswordForm],
    db_session: NamedDependency[AsyncSession],
    actor: NamedDependency[Actor],
) -> Template | Redirect:
    token = _session_token(request)
    user = await users.link_user(db_session, token)
    if user is None:
        return _password_page(user_email=None, status_code=410)
    if data.password != data.confirm:
        return _password_page(
            user_email=user.email,
            confirm_error="The two passwords are not the same.",
            status_code=REFUSED,
        )
    try:
        await users.set_password_with_link(db_session, token, data.password, actor=actor)
    except users.LinkError:
        return _password_page(user_email=None, status_code=410)
    except users.UserError as exc:
        return _password_page(user_email=user.email, error=str(exc), status_code=REFUSED)
    _keep_session(request, **{LINK_SESSION_KEY: None})
    flash(request, "Your password is set. Sign in with it.", category="success")
    return Redirect(LOGIN_PATH, status_code=303)


ROUTES: list[ControllerRouterHandler] = [
    UsersController,
    open_link,
    set_password_page,
    set_password_submit,
]
