"""Admin page: spending limits per role and per person (/admin/limits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from litestar.types import ControllerRouterHandler
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import format_plain
from web.auth import requires
from web.htmx import REFUSED
from web.models import Role
from web.rules.access import ROLE_PERMISSIONS, Permission
from web.rules.caps import Caps
from web.services import limits, users
from web.services.audit import Actor


@dataclass
class LimitForm:
    subject: str = ""
    currency: str = ""
    max_single: str = ""
    max_day: str = ""


def _form_of(view: limits.LimitView) -> LimitForm:
    row = view.row

    def plain(minor: int | None) -> str:
        return "" if minor is None else format_plain(minor, row.currency)

    return LimitForm(
        view.subject, row.currency, plain(row.max_single_minor), plain(row.max_day_minor)
    )


async def _page(
    session: AsyncSession,
    *,
    form: LimitForm | None = None,
    errors: dict[str, str] | None = None,
    editing: bool = False,
    status_code: int = 200,
) -> Template:
    people = await users.list_users(session)
    subjects = [(f"role:{r}", f"Everyone with the {r} role") for r in Role]
    subjects += [(f"user:{u.id}", f"{u.name} <{u.email}> ({u.role})") for u in people]
    return Template(
        template_name="admin/limits.html",
        context={
            "limits": await limits.all_limits(session),
            "effective": await limits.effective_limits(session),
            "subjects": subjects,
            "form": form or LimitForm(subject=f"role:{Role.AGENT}"),
            "errors": errors or {},
            "editing": editing,
            "describe_caps": limits.describe_caps,
            "caps_of": lambda row: Caps(row.max_single_minor, row.max_day_minor),
            "unlimited_roles": [
                r for r in Role if Permission.REFUND_WITHOUT_LIMIT in ROLE_PERMISSIONS[r]
            ],
        },
        status_code=status_code,
    )


class LimitsController(Controller):
    path = "/admin/limits"
    guards = (requires(Permission.MANAGE_LIMITS),)
    include_in_schema = False

    @get("/", name="admin:limits")
    async def index(
        self,
        db_session: NamedDependency[AsyncSession],
        edit: Annotated[int | None, QueryParameter(name="edit")] = None,
    ) -> Template:
        if edit is not None:
            try:
                view = await limits.get_limit(db_session, edit)
            except limits.LimitError:
                pass
            else:
                return await _page(db_session, form=_form_of(view), editing=True)
        return await _page(db_session)

    @post("/", name="admin:limits_set")
    async def set_limit(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[LimitForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        try:
            user, role = await limits.parse_subject(db_session, data.subject)
            currency, caps = limits.parse_caps(data.currency, data.max_single, data.max_day)
            row = await limits.change_limit(
                db_session,
                user=user,
                role=role,
                currency=currency,
                max_single_minor=caps.max_single_minor,
                max_day_minor=caps.max_day_minor,
                actor=actor,
            )
        except limits.LimitFormError as exc:
            return await _page(db_session, form=data, errors=exc.errors, status_code=REFUSED)
        who = f"the {role} role" if role is not None else (user.email if user else "")
        shown = limits.describe(row) if row is not None else currency
        flash(request, f"Saved the limit of {who}: {shown}", category="success")
        return Redirect(request.app.route_reverse("admin:limits"), status_code=303)

    @post("/{limit_pk:int}/remove", name="admin:limits_remove")
    async def remove(
        self,
        request: Request[Any, Any, Any],
        limit_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Redirect:
        try:
            view = await limits.remove_limit(db_session, limit_pk, actor=actor)
        except limits.LimitError as exc:
            flash(request, str(exc), category="error")
        else:
            who = f"the {view.role} role" if view.role else (view.user.email if view.user else "")
            flash(request, f"Removed the {view.row.currency} limit of {who}", category="success")
        return Redirect(request.app.route_reverse("admin:limits"), status_code=303)


ROUTES: list[ControllerRouterHandler] = [LimitsController]
