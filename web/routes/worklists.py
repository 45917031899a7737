"""The leads' worklists: queues of items to assign, comment on, close and reopen.

Thin: which queue a kind belongs to is web/rules/worklists.py's, reading is
web/services/worklist_queries.py's, every change web/services/worklists.py's (each one
a thread entry and an audit row). An htmx action answers with the item re-rendered from
the database and ``desk:stale`` (the navigation's count and every other live part
re-read); a plain form post redirects back to the item with a flash message.
``/alerts`` (the old page) redirects here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from litestar.types import ControllerRouterHandler
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import REFUSED, STALE, page_or_fragment, wants_fragment
from web.live import open_alert_count, worklist_version
from web.models import User
from web.rules.access import Permission
from web.rules.worklists import QUEUES
from web.services import approvals, worklists
from web.services.audit import Actor
from web.services.worklist_queries import (
    WorklistFilters,
    assigned_to_count,
    assignees,
    item_detail,
    list_items,
    queue_counts,
    worklist_filters,
)


@dataclass
class NoteForm:
    note: str = ""


@dataclass
class AssignForm:
    assignee: str = ""


def _list_url(request: Request[Any, Any, Any], f: WorklistFilters, **changes: Any) -> str:
    query = urlencode(f.query_params(**changes))
    return request.app.route_reverse("worklists:index") + (f"?{query}" if query else "")


async def _item_context(db_session: AsyncSession, alert_pk: int) -> dict[str, Any]:
    detail = await item_detail(db_session, alert_pk)
    if detail is None:
        raise NotFoundException("No such worklist item")
    return {
        "item": detail,
        "assignees": await assignees(db_session),
        "version": await worklist_version(db_session),
    }


class WorklistController(Controller):
    path = "/worklists"
    guards = (requires(Permission.VIEW_ALERTS),)
    include_in_schema = False

    @get("/", name="worklists:index")
    async def index(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        queue: FromQuery[str] = "",
        who: FromQuery[str] = "",
        show: FromQuery[str] = "",
        cursor: FromQuery[str] = "",
    ) -> Template:
        """One queue (open items oldest first), the others' counts beside it; without a
        queue asked for, the first one with something open."""
        counts = await queue_counts(db_session)
        first = next((q.value for q in QUEUES if counts[q]), "")
        f = worklist_filters(queue=queue or first, who=who, state=show, cursor=cursor)
        derived = f.queue.derived
        return page_or_fragment(
            request,
            page="worklists/index.html",
            fragment="worklists/_list.html",
            context={
                "f": f,
                "queues": QUEUES,
                "counts": counts,
                "page": None if derived else await list_items(db_session, f, current_user),
                "rows": await approvals.queue(db_session, current_user) if derived else [],
                "url": lambda **changes: _list_url(request, f, **changes),
                "version": await worklist_version(db_session),
                "oob": True,
            },
        )

    @get("/count", name="worklists:count")
    async def count(
        self, db_session: NamedDependency[AsyncSession], current_user: NamedDependency[User]
    ) -> Template:
        """The navigation's count of open items (fetched on load and on every hint)."""
        return Template(
            template_name="worklists/_count.html",
            context={
                "open_count": await open_alert_count(db_session),
                "mine": await assigned_to_count(db_session, current_user.id),
                "version": await worklist_version(db_session),
            },
        )

    @get("/{alert_pk:int}", name="worklists:item")
    async def item(
        self,
        request: Request[Any, Any, Any],
        alert_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        context = await _item_context(db_session, alert_pk)
        return page_or_fragment(
            request,
            page="worklists/item.html",
            fragment="worklists/_item.html",
            context=context | {"oob": True},
        )

    @post("/{alert_pk:int}/assign", name="worklists:assign", status_code=200)
    async def assign(
        self,
        request: Request[Any, Any, Any],
        alert_pk: FromPath[int],
        data: URLEncodedBody[AssignForm],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        text = data.assignee.strip()
        assignee = int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None
        return await _acted(
            request,
            db_session,
            alert_pk,
            "assign",
            "",
            lambda: worklists.assign(db_session, alert_pk, assignee, by=current_user, who=actor),
        )

    @post("/{alert_pk:int}/comment", name="worklists:comment", status_code=200)
    async def comment(
        self,
        request: Request[Any, Any, Any],
        alert_pk: FromPath[int],
        data: URLEncodedBody[NoteForm],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        return await _acted(
            request,
            db_session,
            alert_pk,
            "comment",
            data.note,
            lambda: worklists.comment(db_session, alert_pk, data.note, by=current_user, who=actor),
        )

    @post("/{alert_pk:int}/close", name="worklists:close", status_code=200)
    async def close(
        self,
        request: Request[Any, Any, Any],
        alert_pk: FromPath[int],
        data: URLEncodedBody[NoteForm],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        return await _acted(
            request,
            db_session,
            alert_pk,
            "close",
            data.note,
            lambda: worklists.close(db_session, alert_pk, data.note, by=current_user, who=actor),
        )

    @post("/{alert_pk:int}/reopen", name="worklists:reopen", status_code=200)
    async def reopen(
        self,
        request: Request[Any, Any, Any],
        alert_pk: FromPath[int],
        data: URLEncodedBody[NoteForm],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        return await _acted(
            request,
            db_session,
            alert_pk,
            "reopen",
            data.note,
            lambda: worklists.reopen(db_session, alert_pk, data.note, by=current_user, who=actor),
        )


_DONE = {
    "assign": "Assignment saved",
    "comment": "Comment added",
    "close": "Closed",
    "reopen": "Reopened",
}


async def _acted(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    alert_pk: int,
    action: str,
    typed: str,
    change: Any,
) -> Template | Redirect:
    """Run one change; answer with the item (htmx) or a redirect to it (a plain form)."""
    error = ""
    try:
        await change()
    except worklists.NoSuchItem as exc:
        raise NotFoundException(str(exc)) from exc
    except worklists.WorklistError as exc:
        error = str(exc)
    if not wants_fragment(request):
        flash(request, error or _DONE[action], category="error" if error else "success")
        return Redirect(
            request.app.route_reverse("worklists:item", alert_pk=alert_pk), status_code=303
        )
    context = await _item_context(db_session, alert_pk)
    if error:
        # Nothing changed: the item as it is, the message beside the form, the text kept.
        return Template(
            template_name="worklists/_item.html",
            context=context | {"error": {action: error}, "typed": {action: typed}},
            status_code=REFUSED,
        )
    return Template(
        template_name="worklists/_item.html",
        context=context | {"done": _DONE[action]},
        headers=STALE,
    )


@get("/alerts", name="worklists:alerts", guards=[requires(Permission.VIEW_ALERTS)])
async def old_alerts(request: Request[Any, Any, Any]) -> Redirect:
    """The worklists were the alerts page: old links and bookmarks land there."""
    return Redirect(request.app.route_reverse("worklists:index"), status_code=301)


ROUTES: list[ControllerRouterHandler] = [WorklistController, old_alerts]
