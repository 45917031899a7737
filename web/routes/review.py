"""The team-lead review page: any date range in the lead's zone, the refunds list's
filters, and every number linking to the refunds behind it (README, "Review page")."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template
from sqlmodel.ext.asyncio.session import AsyncSession

from web import timezones
from web.auth import requires
from web.models import User
from web.rules import review as rules
from web.rules.access import Permission
from web.services import listing, review


class ReviewController(Controller):
    path = "/review"
    guards = (requires(Permission.VIEW_REVIEW),)
    include_in_schema = False

    @get("/", name="review:index")
    async def index(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        status: FromQuery[str] = "",
        agent: FromQuery[str] = "",
        currency: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        external: FromQuery[str] = "",
        reason: FromQuery[str] = "",
        method: FromQuery[str] = "",
        approval: FromQuery[str] = "",
        kind: FromQuery[str] = "",
    ) -> Template:
        filters = listing.refund_filters(
            status=status,
            agent=agent,
            currency=currency,
            date_from=date_from,
            date_to=date_to,
            external=external,
            reason=reason,
            method=method,
            approval=approval,
            kind=kind,
            zone=current_user.time_zone,
        )
        today = timezones.now().astimezone(timezones.zone(filters.zone)).date()
        filters = review.with_default_range(filters, today)
        result = await review.build(db_session, filters)
        list_url = request.app.route_reverse("refunds:list")
        return Template(
            template_name="review/index.html",
            context={
                "review": result,
                "charts": review.draw(result, list_url),
                "filters": filters,
                "choices": await listing.refund_choices(db_session, filters),
                "list_url": list_url,
                "link": review.link,
                "duration": rules.duration_label,
                "rules": rules,
            },
        )


ROUTES = [ReviewController]
