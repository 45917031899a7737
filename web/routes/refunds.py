"""Refunds list (for agents and leads) and one refund's page with its timeline.

Both stay true while open: ``GET /refunds/fresh`` re-renders the rows a list shows and
counts the refunds that arrived since, and the refund page re-reads itself from
``GET /refunds/{id}`` (as a fragment) whenever its stream hints that the refund changed.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import page_or_fragment
from web.live import refund_version
from web.models import EventSource, User, utcnow
from web.routes.payments import ListLive, parse_ids
from web.rules.access import Permission
from web.services import approvals, exports, freshness, listing
from web.services.audit import Actor
from web.services.reasons import catalogue

SOURCE_LABELS: dict[str, str] = {
    EventSource.AGENT: "Agent",
    EventSource.ANTOM_RESPONSE: "Antom response",
    EventSource.WEBHOOK: "Webhook",
    EventSource.POLLER: "Poller",
    EventSource.RECONCILIATION: "Reconciliation",
    EventSource.SYSTEM: "System",
}


class RefundController(Controller):
    path = "/refunds"
    guards = (requires(Permission.VIEW_PAYMENTS),)

    @get("/", name="refunds:list")
    async def list_refunds(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        status: FromQuery[str] = "",
        agent: FromQuery[str] = "",
        currency: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        payment: FromQuery[str] = "",
        external: FromQuery[str] = "",
        reason: FromQuery[str] = "",
        method: FromQuery[str] = "",
        approval: FromQuery[str] = "",
        kind: FromQuery[str] = "",
        sort: FromQuery[str] = "",
        direction: FromQuery[str] = "",
        cursor: FromQuery[str] = "",
        part: FromQuery[str] = "",
    ) -> Template:
        """The list; ``part=totals`` is the per-currency totals alone, which the page
        fetches after it is shown (an exact sum over every match is the slow part)."""
        filters = listing.refund_filters(
            status=status,
            agent=agent,
            currency=currency,
            date_from=date_from,
            date_to=date_to,
            payment=payment,
            external=external,
            reason=reason,
            method=method,
            approval=approval,
            kind=kind,
            sort=sort,
            direction=direction,
            cursor=cursor,
            zone=current_user.time_zone,
        )
        if part == "totals":
            return Template(
                template_name="refunds/_totals.html",
                context={
                    "totals": await listing.refund_totals(db_session, filters),
                    "filters": filters,
                },
            )
        page = await listing.list_refunds(db_session, filters)
        live = ListLive(
            await freshness.newest_refund_id(db_session),
            [(row.refund.id or 0, refund_version(row.refund)) for row in page.rows],
            first_page=not filters.cursor,
        )
        context = {
            "page": page,
            "totals_later": True,
            "filters": filters,
            "choices": await listing.refund_choices(db_session, filters),
            "live": live,
            "oob": False,
        }
        return page_or_fragment(
            request, page="refunds/index.html", fragment="refunds/_table.html", context=context
        )

    @get("/fresh", name="refunds:fresh", include_in_schema=False)
    async def fresh(
        self,
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        status: FromQuery[str] = "",
        agent: FromQuery[str] = "",
        currency: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        payment: FromQuery[str] = "",
        external: FromQuery[str] = "",
        reason: FromQuery[str] = "",
        method: FromQuery[str] = "",
        approval: FromQuery[str] = "",
        kind: FromQuery[str] = "",
        sort: FromQuery[str] = "",
        direction: FromQuery[str] = "",
        since: FromQuery[int] = 0,
        shown: FromQuery[str] = "",
        first_page: FromQuery[str] = "",
    ) -> Template:
        """The list's shown rows re-rendered, and the "N new" bar (htmx, out of band)."""
        filters = listing.refund_filters(
            status=status,
            agent=agent,
            currency=currency,
            date_from=date_from,
            date_to=date_to,
            payment=payment,
            external=external,
            reason=reason,
            method=method,
            approval=approval,
            kind=kind,
            sort=sort,
            direction=direction,
            zone=current_user.time_zone,
        )
        fresh = await freshness.fresh_refunds(db_session, filters, parse_ids(shown), since)
        live = ListLive(
            since,
            [(row.refund.id or 0, refund_version(row.refund)) for row in fresh.rows],
            first_page == "1",
        )
        return Template(
            template_name="refunds/_fresh.html",
            context={
                "page": listing.Page(fresh.rows, None, None, len(fresh.rows), False),
                "fresh": fresh,
                "filters": filters,
                "live": live,
                "oob": True,
            },
        )

    @get(
        "/export.csv",
        name="refunds:export",
        guards=[requires(Permission.EXPORT)],
        include_in_schema=False,
    )
    async def export(
        self,
        db_session: NamedDependency[AsyncSession],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        status: FromQuery[str] = "",
        agent: FromQuery[str] = "",
        currency: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        payment: FromQuery[str] = "",
        external: FromQuery[str] = "",
        reason: FromQuery[str] = "",
        method: FromQuery[str] = "",
        approval: FromQuery[str] = "",
        kind: FromQuery[str] = "",
    ) -> Stream:
        """Every refund the list's filters match, as CSV, streamed (README, "Exports")."""
        filters = listing.refund_filters(
            status=status,
            agent=agent,
            currency=currency,
            date_from=date_from,
            date_to=date_to,
            payment=payment,
            external=external,
            reason=reason,
            method=method,
            approval=approval,
            kind=kind,
            zone=current_user.time_zone,
        )
        await exports.record_export(
            db_session, actor, "refunds", filters.query_params(), filters.zone
        )
        name = exports.export_name("refunds", utcnow())
        return Stream(
            exports.refund_rows(engine, filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get("/{refund_pk:int}", name="refunds:detail")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        refund_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        context = await detail_context(db_session, refund_pk, current_user)
        if context is None:
            raise NotFoundException(f"No refund {refund_pk}")
        return page_or_fragment(
            request, page="refunds/detail.html", fragment="refunds/_detail.html", context=context
        )


async def detail_context(
    session: AsyncSession, refund_pk: int, viewer: User
) -> dict[str, Any] | None:
    """Everything the refund page renders from; None when there is no such refund."""
    detail = await listing.refund_detail(session, refund_pk)
    if detail is None:
        return None
    request_view = await approvals.view(session, detail.row.refund, viewer)
    return {
        "detail": detail,
        "source_labels": SOURCE_LABELS,
        "request_view": request_view,
        "reasons": [r for r in await catalogue(session) if r.active]
        if request_view is not None and request_view.draft is not None
        else [],
        "edit_draft": request_view.draft if request_view is not None else None,
        "edit_check": None,
        # The fragment answers the page's own refresh: swapped by id.
        "oob": True,
    }


ROUTES = [RefundController]
