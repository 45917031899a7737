"""Admin page: the managed refund reasons (/admin/reasons). Codes never change and
reasons are never deleted (refunds keep their code): one no longer used is deactivated."""

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

from web.auth import requires
from web.htmx import REFUSED
from web.models import RefundReason
from web.rules.access import Permission
from web.services import reasons
from web.services.audit import Actor

CHECKED = "on"  # what a ticked checkbox sends; an unticked one sends nothing


@dataclass
class ReasonForm:
    code: str = ""
    label: str = ""
    active: str = ""
    note_required: str = ""
    ticket_required: str = ""
    approval_required: str = ""
    max_percent: str = ""
    position: str = ""

    def given(self) -> reasons.ReasonInput:
        return reasons.ReasonInput(
            label=self.label,
            active=self.active == CHECKED,
            note_required=self.note_required == CHECKED,
            ticket_required=self.ticket_required == CHECKED,
            approval_required=self.approval_required == CHECKED,
            max_percent=self.max_percent,
            position=self.position,
        )


def _form_of(row: RefundReason) -> ReasonForm:
    def tick(value: bool) -> str:
        return CHECKED if value else ""

    return ReasonForm(
        code=row.code,
        label=row.label,
        active=tick(row.active),
        note_required=tick(row.note_required),
        ticket_required=tick(row.ticket_required),
        approval_required=tick(row.approval_required),
        max_percent="" if row.max_percent is None else str(row.max_percent),
        position=str(row.position),
    )


async def _page(
    session: AsyncSession,
    *,
    form: ReasonForm | None = None,
    errors: dict[str, str] | None = None,
    editing: str | None = None,
    status_code: int = 200,
) -> Template:
    return Template(
        template_name="admin/reasons.html",
        context={
            "reasons": await reasons.reason_rows(session),
            "form": form or ReasonForm(active=CHECKED),
            "errors": errors or {},
            "editing": editing,
            "checked": CHECKED,
        },
        status_code=status_code,
    )


class ReasonsController(Controller):
    path = "/admin/reasons"
    guards = (requires(Permission.MANAGE_REASONS),)
    include_in_schema = False

    @get("/", name="admin:reasons")
    async def index(
        self,
        db_session: NamedDependency[AsyncSession],
        edit: Annotated[str | None, QueryParameter(name="edit")] = None,
    ) -> Template:
        row = await db_session.get(RefundReason, edit) if edit else None
        if row is not None:
            return await _page(db_session, form=_form_of(row), editing=row.code)
        return await _page(db_session)

    @post("/", name="admin:reasons_add")
    async def add(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[ReasonForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        try:
            row = await reasons.save_reason(
                db_session, data.code, data.given(), actor=actor, new=True
            )
        except reasons.ReasonError as exc:
            return await _page(db_session, form=data, errors=exc.errors, status_code=REFUSED)
        flash(request, f"Added the reason “{row.label}” ({row.code})", category="success")
        return Redirect(request.app.route_reverse("admin:reasons"), status_code=303)

    @post("/{code:str}", name="admin:reasons_edit")
    async def edit(
        self,
        request: Request[Any, Any, Any],
        code: FromPath[str],
        data: URLEncodedBody[ReasonForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        data.code = code  # the address names the reason; a code is never changed
        try:
            row = await reasons.save_reason(db_session, code, data.given(), actor=actor, new=False)
        except reasons.ReasonError as exc:
            return await _page(
                db_session, form=data, errors=exc.errors, editing=code, status_code=REFUSED
            )
        flash(request, f"Saved the reason “{row.label}” ({row.code})", category="success")
        return Redirect(request.app.route_reverse("admin:reasons"), status_code=303)


ROUTES: list[ControllerRouterHandler] = [ReasonsController]
