"""Four eyes at the edge: the approvals queue, approve / reject, the requester's edit.

Thin: every decision (who may decide, the revision seen, the payment judged again, the
send) is ``web.services.approvals``'s. A decision answers with a redirect to the refund's
page and a flash message; the page and every other open one re-read the refund live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.client import AntomClient
from web.auth import requires
from web.db import session_scope
from web.htmx import REFUSED, page_or_fragment, request_time
from web.live import awaiting_count
from web.models import Refund, RefundStatus, User
from web.routes.refunds import detail_context
from web.rules.access import Permission
from web.services import approvals
from web.services.audit import Actor
from web.services.refunds import RefundDraft
from web.settings import Settings


@dataclass
class DecisionForm:
    revision: int = -1
    comment: str = ""


@dataclass
class EditForm:
    revision: int = -1
    amount: str = ""
    reason: str = ""
    note: str = ""
    ticket: str = ""


def _back(request: Request[Any, Any, Any], refund_pk: int) -> Redirect:
    return Redirect(
        request.app.route_reverse("refunds:detail", refund_pk=refund_pk), status_code=303
    )


class ApprovalController(Controller):
    path = "/approvals"
    guards = (requires(Permission.REQUEST_APPROVAL),)
    include_in_schema = False

    @get("/", name="approvals:queue")
    async def queue(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        """Approvers see every request; a requester sees their own."""
        return page_or_fragment(
            request,
            page="approvals/queue.html",
            fragment="approvals/_table.html",
            context={"rows": await approvals.queue(db_session, current_user), "oob": True},
        )

    @get("/count", name="approvals:count", guards=[requires(Permission.APPROVE)])
    async def count(self, db_session: NamedDependency[AsyncSession]) -> Template:
        """The navigation's count (fetched on load and on every approvals hint)."""
        return Template(
            template_name="approvals/_count.html",
            context={"awaiting": await awaiting_count(db_session)},
        )

    @post(
        "/{refund_pk:int}/approve", name="approvals:approve", guards=[requires(Permission.APPROVE)]
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        refund_pk: FromPath[int],
        data: URLEncodedBody[DecisionForm],
        engine: NamedDependency[AsyncEngine],
        antom: NamedDependency[AntomClient],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        try:
            decided = await approvals.approve(
                engine,
                antom,
                refund_pk=refund_pk,
                approver=current_user,
                revision=data.revision,
                comment=data.comment,
                notify_url=settings.refund_notify_url,
                now=request_time(),
                who=actor,
                request_id=actor.request_id,
            )
        except approvals.ApprovalError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(request, decided.message, category=_category(decided.refund))
        return _back(request, refund_pk)

    @post("/{refund_pk:int}/reject", name="approvals:reject", guards=[requires(Permission.APPROVE)])
    async def reject(
        self,
        request: Request[Any, Any, Any],
        refund_pk: FromPath[int],
        data: URLEncodedBody[DecisionForm],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Redirect:
        try:
            decided = await approvals.reject(
                engine,
                refund_pk=refund_pk,
                approver=current_user,
                revision=data.revision,
                comment=data.comment,
                who=actor,
                request_id=actor.request_id,
            )
        except approvals.ApprovalError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(request, decided.message, category="info")
        return _back(request, refund_pk)

    @post("/{refund_pk:int}/edit", name="approvals:edit")
    async def edit(
        self,
        request: Request[Any, Any, Any],
        refund_pk: FromPath[int],
        data: URLEncodedBody[EditForm],
        engine: NamedDependency[AsyncEngine],
        antom: NamedDependency[AntomClient],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Redirect | Template:
        draft = RefundDraft(
            amount_text=data.amount,
            currency="",
            reason=data.reason,
            note=data.note,
            form_token="",
            refundable_token="",
            ticket=data.ticket,
        )
        try:
            edited = await approvals.edit(
                engine,
                refund_pk=refund_pk,
                user=current_user,
                revision=data.revision,
                draft=draft,
                now=request_time(),
                who=actor,
                request_id=actor.request_id,
            )
        except approvals.ApprovalError as exc:
            flash(request, str(exc), category="error")
            return _back(request, refund_pk)
        if not isinstance(edited, Refund):
            # Refused: the page again, the agent's input kept, each message by its field.
            async with session_scope(engine) as session:
                context = await detail_context(session, refund_pk, current_user)
                if context is None:
                    raise NotFoundException(f"No refund {refund_pk}")
            context["edit_draft"] = draft
            context["edit_check"] = edited
            return Template(
                template_name="refunds/detail.html", context=context, status_code=REFUSED
            )
        if edited.status is RefundStatus.PENDING:
            # Under every cap now: it goes the agent's way, through the one send path.
            sent = await approvals.send_edited(
                engine, antom, edited, notify_url=settings.refund_notify_url, who=actor
            )
            flash(request, f"Edited; no approval is needed any more. {sent}", category="info")
        else:
            flash(
                request,
                "Edited. The request waits for approval again; an approval given for the "
                "earlier version no longer counts.",
                category="info",
            )
        return _back(request, refund_pk)


def _category(refund: Refund) -> str:
    if refund.status is RefundStatus.SUCCEEDED:
        return "success"
    return "error" if refund.status is RefundStatus.FAILED else "info"


ROUTES = [ApprovalController]
