"""Payments list, payment page, the refund form and "find a payment in Antom".

Handlers parse, call one service, pick a template. The list and the refund form serve
htmx swaps and plain browsers from the same URLs; ``web.htmx.page_or_fragment``
decides which, so the back button and a JavaScript-free browser get whole pages.

Live: ``POST /payments/{id}/live`` re-renders every part of the payment page that shows
the payment or its refunds (header, amounts, facts, refunds, result banner) from the
database, out of band, with the refund form re-judged against it; the page asks for it
whenever its stream hints that the payment changed (``web/live.py``).
``GET /payments/fresh`` does the same for the rows a list shows, and counts the payments
that arrived since it was rendered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Stream, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.client import AntomClient
from web.auth import requires
from web.db import session_scope
from web.htmx import REFUSED, page_or_fragment, page_or_oob, request_time, wants_fragment
from web.live import payment_version, refund_version
from web.models import Payment, Refund, RefundStatus, User
from web.request_ids import request_id_of
from web.rules.access import Permission
from web.rules.glance import refund_blockers
from web.rules.refunds import PaymentFacts, profile_for
from web.services import exports, freshness, listing, orders
from web.services.audit import Actor
from web.services.imports import find_in_antom
from web.services.refund_form import OpenForm, again_form, fresh_form, recheck
from web.services.refunds import (
    RefundDraft,
    SubmitOutcome,
    submit_refund,
)
from web.settings import Settings
from web.timezones import zone


@dataclass
class RefundForm:
    """The refund form as posted; every field a string, missing ones empty."""

    amount: str = ""
    currency: str = ""
    reason: str = ""
    note: str = ""
    ticket: str = ""
    form_token: str = ""
    refundable_token: str = ""
    # The amount the form offered by itself: an amount equal to it is not the agent's.
    amount_default: str = ""

    def draft(self) -> RefundDraft:
        return RefundDraft(
            amount_text=self.amount,
            currency=self.currency,
            reason=self.reason,
            note=self.note,
            form_token=self.form_token,
            refundable_token=self.refundable_token,
            ticket=self.ticket,
        )


@dataclass
class LiveForm(RefundForm):
    """The payment page's refresh: the refund form as it stands, and the refund whose
    result the page shows (if any)."""

    result: int | None = None


@dataclass
class FindForm:
    ref: str = ""


@dataclass(frozen=True, slots=True)
class RefundWindow:
    deadline: datetime
    days_left: int


@dataclass(frozen=True, slots=True)
class ListLive:
    """What a list page tells its stream and its refreshes: the newest row it knew of,
    the rows it shows (with their versions), and whether it is the first page."""

    since: int
    shown: list[tuple[int, str]]
    first_page: bool

    @property
    def shown_ids(self) -> str:
        return ",".join(str(pk) for pk, _ in self.shown)


def parse_ids(text: str) -> list[int]:
    """``"12,7,9"`` → ``[12, 7, 9]``; anything malformed is dropped."""
    return [
        int(part)
        for part in text.split(",")[: freshness.MAX_SHOWN]
        if part.isascii() and part.isdigit() and len(part) <= 18
    ]


async def _payment_or_404(session: AsyncSession, payment_pk: int) -> Payment:
    payment = await session.get(Payment, payment_pk)
    if payment is None:
        raise NotFoundException(f"No payment {payment_pk}")
    return payment


def _window(facts: PaymentFacts, now: datetime, zone_name: str | None) -> RefundWindow:
    """The refund window's end, and the days left counted in the reader's calendar (the
    page shows the deadline's day in the reader's time zone)."""
    deadline = facts.window_deadline
    here = zone(zone_name)
    return RefundWindow(
        deadline, (deadline.astimezone(here).date() - now.astimezone(here).date()).days
    )


async def _payment_context(
    session: AsyncSession,
    payment: Payment,
    user: User,
    *,
    form: OpenForm | None = None,
) -> dict[str, Any]:
    """Everything the payment page and its fragments render from (``form``: the refund
    form as it should show; a fresh one otherwise)."""
    now = request_time()
    form = form or await fresh_form(session, payment, user, now)
    facts = form.facts
    refunds = await listing.refunds_of_payment(session, payment)
    return {
        "payment": payment,
        "facts": facts,
        "blockers": refund_blockers(facts, now),
        "profile": profile_for(payment.method),
        "window": _window(facts, now, user.time_zone) if payment.paid_at else None,
        "refunds": refunds,
        "order": await orders.order_for_payment(session, payment),
        "form": form,
        "draft": form.draft,
        "check": form.check,
        # What the page's stream watches, at the versions rendered here (web/live.py).
        "watch": [("payment", f"{payment.id}.{payment_version(payment)}")]
        + [("refund", f"{row.refund.id}.{refund_version(row.refund)}") for row in refunds],
        "oob": False,
    }


async def _result_refund(
    session: AsyncSession, payment: Payment, refund_pk: int | None
) -> Refund | None:
    if refund_pk is None:
        return None
    refund = await session.get(Refund, refund_pk)
    return refund if refund is not None and refund.payment_pk == payment.id else None


class PaymentController(Controller):
    path = "/payments"
    guards = (requires(Permission.VIEW_PAYMENTS),)

    @get("/", name="payments:list")
    async def list_payments(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
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
            zone=current_user.time_zone,
        )
        return await _list_page(request, db_session, filters)

    @get("/fresh", name="payments:fresh", include_in_schema=False)
    async def fresh(
        self,
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
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
        since: FromQuery[int] = 0,
        shown: FromQuery[str] = "",
        first_page: FromQuery[str] = "",
    ) -> Template:
        """The list's shown rows re-rendered, and the "N new" bar (htmx, out of band)."""
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
            zone=current_user.time_zone,
        )
        fresh = await freshness.fresh_payments(db_session, filters, parse_ids(shown), since)
        live = ListLive(
            since, [(p.id or 0, payment_version(p)) for p in fresh.rows], first_page == "1"
        )
        return Template(
            template_name="payments/_fresh.html",
            context={
                "page": listing.Page(fresh.rows, None, None, len(fresh.rows), False),
                "fresh": fresh,
                "filters": filters,
                "live": live,
                "oob": True,
            },
        )

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

    @get(
        "/export.csv",
        name="payments:export",
        guards=[requires(Permission.EXPORT)],
        include_in_schema=False,
    )
    async def export(
        self,
        db_session: NamedDependency[AsyncSession],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        q: FromQuery[str] = "",
        status: FromQuery[str] = "",
        method: FromQuery[str] = "",
        currency: FromQuery[str] = "",
        date_field: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        has_refunds: FromQuery[str] = "",
    ) -> Stream:
        """Every payment the list's filters match, as CSV, streamed (README, "Exports")."""
        filters = listing.payment_filters(
            q=q,
            status=status,
            method=method,
            currency=currency,
            date_field=date_field,
            date_from=date_from,
            date_to=date_to,
            has_refunds=has_refunds,
            zone=current_user.time_zone,
        )
        await exports.record_export(
            db_session, actor, "payments", filters.query_params(), filters.zone
        )
        name = exports.export_name("payments", request_time())
        return Stream(
            exports.payment_rows(engine, filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get("/{payment_pk:int}", name="payments:detail")
    async def detail(
        self,
        payment_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        again: FromQuery[int | None] = None,
    ) -> Template:
        """The payment page; ``?again=<refund id>`` prefills the form from a failed refund."""
        payment = await _payment_or_404(db_session, payment_pk)
        form = None
        if again is not None:
            form = await again_form(db_session, payment, current_user, again, request_time())
        context = await _payment_context(db_session, payment, current_user, form=form)
        return Template(template_name="payments/detail.html", context=context)

    @post("/{payment_pk:int}/live", name="payments:live", include_in_schema=False, status_code=200)
    async def live(
        self,
        payment_pk: FromPath[int],
        data: URLEncodedBody[LiveForm],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        """Everything on the payment page about the payment and its refunds, out of band,
        and the refund form re-judged against it, in one answer (so the page never shows
        new amounts beside an old "Up to"). POST: the form's fields are no query string.
        """
        payment = await _payment_or_404(db_session, payment_pk)
        form = await recheck(
            db_session, payment, current_user, data.draft(), data.amount_default, request_time()
        )
        context = await _payment_context(db_session, payment, current_user, form=form)
        result = await _result_refund(db_session, payment, data.result)
        return Template(
            template_name="payments/_live.html", context=context | {"result": result, "oob": True}
        )

    @post(
        "/{payment_pk:int}/refunds/validate",
        name="payments:refund_validate",
        guards=[requires(Permission.REFUND)],
    )
    async def validate_refund(
        self,
        payment_pk: FromPath[int],
        data: URLEncodedBody[RefundForm],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        payment = await _payment_or_404(db_session, payment_pk)
        form = await recheck(
            db_session, payment, current_user, data.draft(), data.amount_default, request_time()
        )
        context = await _payment_context(db_session, payment, current_user, form=form)
        return Template(template_name="payments/_refund_checks.html", context=context)

    @post(
        "/{payment_pk:int}/refunds",
        name="payments:refund_submit",
        guards=[requires(Permission.REFUND)],
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        payment_pk: FromPath[int],
        data: URLEncodedBody[RefundForm],
        engine: NamedDependency[AsyncEngine],
        antom: NamedDependency[AntomClient],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
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
            now=request_time(),
            request_id=request_id_of(request),
            who=actor,
            approval_ttl=settings.approval_ttl,
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
        context |= {"result": outcome.refund, "message": outcome.message, "oob": True}
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
    """A refused submit answers with the form's messages; htmx swaps only those (the
    button that was pressed, and whatever has focus, stay where they are)."""
    # Keep what the agent typed, judged against the payment as it is now: a refusal for
    # a stale form must not refuse every later attempt too.
    form = await recheck(session, payment, user, data.draft(), data.amount_default, request_time())
    rearmed = form.rearmed or "form" in outcome.check.errors
    form = dataclasses.replace(form, check=outcome.check, rearmed=rearmed)
    context = await _payment_context(session, payment, user, form=form)
    return page_or_oob(
        request,
        page="payments/detail.html",
        fragment="payments/_refund_checks.html",
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
    live = ListLive(
        await freshness.newest_payment_id(session),
        [(p.id or 0, payment_version(p)) for p in page.rows],
        first_page=not filters.cursor,
    )
    context: dict[str, Any] = {
        "page": page,
        "filters": filters,
        "choices": listing.payment_choices(filters),
        "find_ref": find_ref,
        "find_error": find_error,
        "live": live,
        "oob": False,
    }
    if find_error is not None:
        return Template(template_name="payments/index.html", context=context, status_code=REFUSED)
    return page_or_fragment(
        request, page="payments/index.html", fragment="payments/_table.html", context=context
    )


ROUTES = [PaymentController]
