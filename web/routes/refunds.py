"""Refunds list (for agents and leads) and one refund's page with its timeline."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Template
from sqlmodel.ext.asyncio.session import AsyncSession

from web.htmx import page_or_fragment
from web.models import EventSource
from web.rules.refunds import reason_label
from web.services import listing

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

    @get("/", name="refunds:list")
    async def list_refunds(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        status: FromQuery[str] = "",
        agent: FromQuery[str] = "",
        currency: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        payment: FromQuery[str] = "",
        external: FromQuery[str] = "",
        sort: FromQuery[str] = "",
        direction: FromQuery[str] = "",
        cursor: FromQuery[str] = "",
    ) -> Template:
        filters = listing.refund_filters(
            status=status,
            agent=agent,
            currency=currency,
            date_from=date_from,
            date_to=date_to,
            payment=payment,
            external=external,
            sort=sort,
            direction=direction,
            cursor=cursor,
        )
        context = {
            "page": await listing.list_refunds(db_session, filters),
            "filters": filters,
            "choices": await listing.refund_choices(db_session, filters),
            "reason_label": reason_label,
        }
        return page_or_fragment(
            request, page="refunds/index.html", fragment="refunds/_table.html", context=context
        )

    @get("/{refund_pk:int}", name="refunds:detail")
    async def detail(
        self, refund_pk: FromPath[int], db_session: NamedDependency[AsyncSession]
    ) -> Template:
        detail = await listing.refund_detail(db_session, refund_pk)
        if detail is None:
            raise NotFoundException(f"No refund {refund_pk}")
        return Template(
            template_name="refunds/detail.html",
            context={
                "detail": detail,
                "reason_label": reason_label,
                "source_labels": SOURCE_LABELS,
            },
        )


ROUTES = [RefundController]
