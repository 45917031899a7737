"""The signed-in person's own settings: their time zone (the account page shows it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import is_htmx
from web.models import User
from web.rules.access import Permission
from web.services.preferences import set_time_zone


@dataclass
class ZoneForm:
    time_zone: str = ""
    # "browser": the page's own guess on a first visit (never overrides a choice).
    source: str = ""


@post(
    "/account/time-zone",
    name="account:time_zone",
    status_code=200,
    guards=[requires(Permission.USE_DESK)],
)
async def time_zone(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[ZoneForm],
    db_session: NamedDependency[AsyncSession],
    current_user: NamedDependency[User],
) -> Response[Any] | Redirect:
    guess = data.source == "browser"
    change = await set_time_zone(db_session, current_user, data.time_zone, only_if_unset=guess)
    if guess and is_htmx(request):
        # The first page was shown in UTC; show it again in the zone just learnt.
        return Response(content="", headers={"HX-Refresh": "true"} if change.changed else {})
    if change.error:
        flash(request, change.error, category="error")
    elif change.changed:
        flash(request, f"Times are now shown in {change.zone}.", category="success")
    return Redirect(request.app.route_reverse("session:account"), status_code=303)


ROUTES = [time_zone]
