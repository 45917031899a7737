"""Payments list, payment page, the refund form and "find a payment in Antom".

Handlers parse, call one service, pick a template. The list and the refund form serve
htmx swaps and plain browsers from the same URLs; ``web.htmx.page_or_fragment``
decides which, so the back button and a JavaScript-free browser get whole pages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.client import AntomClient
from web.db import session_scope
from web.htmx import page_or_fragment, wants_fragment
from web.models import Payment, RefundStatus, User
from web.request_ids import request_id_of
from web.rules.refunds import REFUND_REASONS, PaymentFacts, profile_for, reason_label
from web.services import listing, orders
from web.services.imports import find_in_antom
from web.services.refunds import (
    FormCheck,
    RefundDraft,
    SubmitOutcome,
    check_draft,
    new_form,
    payment_facts,
    submit_refund,
)
from web.settings import Settings

# 422 tells scripts and tests the refund was refused; htmx is configured (static/app.js)
# to swap 422 bodies, so the form with its messages replaces the one that was sent.
REFUSED = 422


@dataclass
class RefundForm:
    """The refund form as posted; every field a string, missing ones empty."""

    amount: str = ""
    currency: str = ""
    reason: str = ""
    note: str = ""
    form_token: str = ""
    refundable_token: str = ""

    def draft(self) -> RefundDraft:
        return RefundDraft(
            amount_text=self.amount,
            currency=self.currency,
            reason=self.reason,
            note=self.note,
            form_token=self.form_token,
            refundable_token=self.refundable_token,
        )


@dataclass
class FindForm:
    ref: str = ""


@dataclass(frozen=True, slots=True)
class RefundWindow:
    deadline: datetime
    days_left: int


def _now() -> datetime:
    return datetime.now(UTC)


async def _payment_or_404(session: AsyncSession, payment_pk: int) -> Payment:
    payment = await session.get(Payment, payment_pk)
    if payment is None:
        raise NotFoundException(f"No payment {payment_pk}")
    return payment


def _window(facts: PaymentFacts, now: datetime) -> RefundWindow:
    deadline = facts.window_deadline
    return RefundWindow(deadline, (deadline.date() - now.date()).days)


async def _payment_context(
    session: AsyncSession,
    payment: Payment,
    user: User,
    *,
    draft: RefundDraft | None = None,
    check: FormCheck | None = None,
) -> dict[str, Any]:
    """Everything the payment page and its fragments render from.

    ``draft``/``check`` re-show a refused form; otherwise a fresh form is built.
    """
    now = _now()
    fresh_draft, fresh_check = await new_form(session, payment, user, now)
    facts = await payment_facts(session, payment)
    if draft is not None:
        # Keep what the agent typed, with the refundable state as it is now: a refusal
        # for a stale form must not refuse every later attempt too.
        draft = dataclasses.replace(draft, refundable_token=fresh_draft.refundable_token)
    return {
        "payment": payment,
        "facts": facts,
        "profile": profile_for(payment.method),
        "window": _window(facts, now) if payment.paid_at else None,
        "refunds": await listing.refunds_of_payment(session, payment),
        "order": await orders.order_for_payment(session, payment),
        "draft": draft or fresh_draft,
        "check": check or fresh_check,
        "reasons": REFUND_REASONS,
        "reason_label": reason_label,
        "oob": False,
    }


class PaymentController(Controller):
    path = "/payments"

    @get("/", name="payments:list")
    async def list_payments(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        q: FromQuery[str] = "",
        status: FromQuery[str] = "",
        method: FromQuery[str] = "",
        currency: FromQuery[str] = "",
        date_field: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        has_refunds: FromQuery[str] = "",
        sort: FromQuery[str] = "",
        direction: FromQuery[str] = "",
        cursor: FromQuery[str] = "",
    ) -> Template:
        filters = listing.payment_filters(
            q=q,
            status=status,
            method=method,
            currency=currency,
            date_field=date_field,
            date_from=date_from,
            date_to=date_to,
            has_refunds=has_refunds,
            sort=sort,
            direction=direction,
            cursor=cursor,
        )
        return await _list_page(request, db_session, filters)

    @post("/find", name="payments:find")
    async def find(
        self,
        request: Request[Any, Any, Any],
        data: URLEncodedBody[FindForm],
        db_session: NamedDependency[AsyncSession],
        state: State,
    ) -> Template | Redirect:
        found = await find_in_antom(
            db_session, state.antom, data.ref, request_id=request_id_of(request)
        )
        if found.payment is None:
            return await _list_page(
                request,
                db_session,
                listing.PaymentFilters(),
                find_ref=data.ref.strip(),
                find_error=found.message,
            )
        if found.message:
            flash(request, found.message, category="error" if found.problem else "info")
        return Redirect(
            request.app.route_reverse("payments:detail", payment_pk=found.payment.id),
            status_code=303,
        )

    @get("/{payment_pk:int}", name="payments:detail")
    async def detail(
        self,
        payment_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        payment = await _payment_or_404(db_session, payment_pk)
        context = await _payment_context(db_session, payment, current_user)
        return Template(template_name="payments/detail.html", context=context)

    @post("/{payment_pk:int}/refunds/validate", name="payments:refund_validate")
    async def validate_refund(
        self,
        payment_pk: FromPath[int],
        data: URLEncodedBody[RefundForm],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        payment = await _payment_or_404(db_session, payment_pk)
        check = await check_draft(db_session, payment, current_user, data.draft(), _now())
        context: dict[str, Any] = {"check": check, "payment": payment}
        if "form" in check.errors:
            # The payment moved under the form: show the new amounts and arm the form
            # with the current state, so the agent's next edit is judged afresh.
            context |= await _payment_context(db_session, payment, current_user)
            context |= {"check": check, "oob": True}
        return Template(template_name="payments/_refund_checks.html", context=context)

    @post("/{payment_pk:int}/refunds", name="payments:refund_submit")
    async def submit(
        self,
        request: Request[Any, Any, Any],
        payment_pk: FromPath[int],
        data: URLEncodedBody[RefundForm],
        engine: NamedDependency[AsyncEngine],
        antom: NamedDependency[AntomClient],
        current_user: NamedDependency[User],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        # No request-wide transaction here: submit_refund opens its own short ones
        # (on SQLite an open transaction would hold the write lock across the call).
        async with session_scope(engine) as session:
            await _payment_or_404(session, payment_pk)
        outcome = await submit_refund(
            engine,
            antom,
            payment_pk=payment_pk,
            user=current_user,
            draft=data.draft(),
            notify_url=settings.refund_notify_url,
            now=_now(),
            request_id=request_id_of(request),
        )
        async with session_scope(engine) as session:
            payment = await _payment_or_404(session, payment_pk)
            if outcome.refund is None:
                return await _refused(request, session, payment, current_user, data, outcome)
            context = await _payment_context(session, payment, current_user)
        if not wants_fragment(request):
            flash(request, outcome.message, category=_flash_category(outcome))
            return Redirect(
                request.app.route_reverse("payments:detail", payment_pk=payment_pk), status_code=303
            )
        context |= {"refund": outcome.refund, "message": outcome.message, "oob": True}
        return Template(template_name="payments/_submitted.html", context=context)


def _flash_category(outcome: SubmitOutcome) -> str:
    status = outcome.refund.status if outcome.refund else None
    if status is RefundStatus.SUCCEEDED:
        return "success"
    return "error" if status is RefundStatus.FAILED else "info"


async def _refused(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    payment: Payment,
    user: User,
    data: RefundForm,
    outcome: SubmitOutcome,
) -> Template:
    context = await _payment_context(
        session, payment, user, draft=data.draft(), check=outcome.check
    )
    return page_or_fragment(
        request,
        page="payments/detail.html",
        fragment="payments/_refund_form.html",
        context=context,
        status_code=REFUSED,
    )


async def _list_page(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    filters: listing.PaymentFilters,
    *,
    find_ref: str = "",
    find_error: str | None = None,
) -> Template:
    page = await listing.list_payments(session, filters)
    context: dict[str, Any] = {
        "page": page,
        "filters": filters,
        "choices": listing.payment_choices(filters),
        "find_ref": find_ref,
        "find_error": find_error,
    }
    if find_error is not None:
        return Template(template_name="payments/index.html", context=context, status_code=REFUSED)
    return page_or_fragment(
        request, page="payments/index.html", fragment="payments/_table.html", context=context
    )


ROUTES = [PaymentController]
