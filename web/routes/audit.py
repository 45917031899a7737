"""The audit trail for admins: browse and filter who did what, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from litestar.response import Template
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import page_or_fragment
from web.models import User
from web.rules.access import Permission
from web.services import audit_log


class AuditController(Controller):
    path = "/admin/audit"
    guards = (requires(Permission.VIEW_AUDIT),)
    include_in_schema = False

    @get("/", name="admin:audit")
    async def index(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        # "actor" is also the app's dependency (who is acting); the query keeps the name.
        actor_text: Annotated[str, QueryParameter(name="actor")] = "",
        action: FromQuery[str] = "",
        object_type: FromQuery[str] = "",
        object_id: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
        cursor: FromQuery[str] = "",
    ) -> Template:
        filters = audit_log.audit_filters(
            actor=actor_text,
            action=action,
            object_type=object_type,
            object_id=object_id,
            date_from=date_from,
            date_to=date_to,
            cursor=cursor,
            zone=current_user.time_zone,
        )
        context = {
            "page": await audit_log.list_events(db_session, filters),
            "filters": filters,
            "actions": audit_log.action_choices(),
            "object_types": audit_log.object_type_choices(filters),
            "changes": audit_log.changes,
            "details": audit_log.details,
        }
        return page_or_fragment(
            request, page="admin/audit.html", fragment="admin/_audit_table.html", context=context
        )


ROUTES = [AuditController]
