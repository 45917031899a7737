"""Admin pages: the /admin index, the permissions table, and API keys for the merchant's
systems (create, shown once; list; revoke). People, limits and reasons have modules of
their own (admin_users.py, admin_limits.py, admin_reasons.py)."""

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
from web.htmx import REFUSED
from web.models import Role, User
from web.rules.access import ROLE_PERMISSIONS, Permission, can
from web.services import api_keys
from web.services.audit import Actor


@dataclass(frozen=True, slots=True)
class AdminPage:
    route: str
    title: str
    blurb: str
    permission: Permission


# One entry per permission in web.rules.access.ADMIN_AREA (tests/admin check it).
ADMIN_PAGES = (
    AdminPage(
        "admin:users",
        "Users",
        "Invite people, change roles, disable and enable them, reset passwords.",
        Permission.MANAGE_USERS,
    ),
    AdminPage(
        "admin:limits",
        "Spending limits",
        "What each role and person may refund per currency without approval.",
        Permission.MANAGE_LIMITS,
    ),
    AdminPage(
        "admin:reasons",
        "Refund reasons",
        "The reasons agents pick from and what each one requires.",
        Permission.MANAGE_REASONS,
    ),
    AdminPage(
        "admin:api_keys",
        "API keys",
        "Keys for the merchant's systems to send orders.",
        Permission.MANAGE_API_KEYS,
    ),
    AdminPage(
        "admin:audit",
        "Audit trail",
        "Who did what and when: sign-ins, refunds and decisions, changes, keys, imports.",
        Permission.VIEW_AUDIT,
    ),
    AdminPage(
        "admin:permissions",
        "Permissions",
        "Which role may do what (read only).",
        Permission.VIEW_PERMISSIONS,
    ),
)


@get("/admin", name="admin:index", guards=[requires(Permission.USE_DESK)])
async def admin_index(current_user: NamedDependency[User]) -> Template:
    """The admin pages this person may open (none: a sentence saying so)."""
    pages = [p for p in ADMIN_PAGES if can(current_user, p.permission)]
    return Template(template_name="admin/index.html", context={"pages": pages})


@get(
    "/admin/permissions",
    name="admin:permissions",
    guards=[requires(Permission.VIEW_PERMISSIONS)],
)
async def permissions_table() -> Template:
    """Roles × permissions, read straight from web.rules.access.ROLE_PERMISSIONS."""
    return Template(
        template_name="admin/permissions.html",
        context={
            "roles": list(Role),
            "permissions": list(Permission),
            "table": ROLE_PERMISSIONS,
        },
    )


@dataclass
class NewKeyForm:
    name: str = ""


async def _page(
    session: AsyncSession,
    *,
    new_key: api_keys.NewKey | None = None,
    name: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    return Template(
        template_name="admin/api_keys.html",
        context={
            "keys": await api_keys.list_keys(session),
            "new_key": new_key,
            "name": name,
            "error": error,
        },
        status_code=status_code,
    )


class ApiKeyController(Controller):
    path = "/admin/api-keys"
    guards = (requires(Permission.MANAGE_API_KEYS),)
    include_in_schema = False

    @get("/", name="admin:api_keys")
    async def index(self, db_session: NamedDependency[AsyncSession]) -> Template:
        return await _page(db_session)

    @post("/", name="admin:api_keys_create", status_code=200)
    async def create(
        self,
        data: URLEncodedBody[NewKeyForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template:
        """The answer to this POST is the only place the key is ever shown (the page is
        ``no-store``, like every page); reloading does not show it again."""
        try:
            new_key = await api_keys.create_key(db_session, name=data.name, actor=actor)
        except api_keys.ApiKeyError as exc:
            return await _page(db_session, name=data.name, error=str(exc), status_code=REFUSED)
        return await _page(db_session, new_key=new_key)

    @post("/{key_pk:int}/revoke", name="admin:api_keys_revoke")
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        key_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Redirect:
        try:
            key = await api_keys.revoke_key(db_session, key_pk, actor=actor)
        except api_keys.ApiKeyError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(
                request,
                f"Revoked “{key.name}” ({key.prefix}…); it is refused from now on",
                "success",
            )
        return Redirect(request.app.route_reverse("admin:api_keys"), status_code=303)


ROUTES: list[ControllerRouterHandler] = [admin_index, permissions_table, ApiKeyController]
