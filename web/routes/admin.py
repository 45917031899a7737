"""Admin pages: API keys for the merchant's systems (create, shown once; list; revoke)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.rules.access import Permission
from web.services import api_keys
from web.services.audit import Actor

REFUSED = 422


@dataclass
class NewKeyForm:
    name: str = ""


async def _page(
    session: AsyncSession,
    *,
    new_key: api_keys.NewKey | None = None,
    name: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    return Template(
        template_name="admin/api_keys.html",
        context={
            "keys": await api_keys.list_keys(session),
            "new_key": new_key,
            "name": name,
            "error": error,
        },
        status_code=status_code,
    )


class ApiKeyController(Controller):
    path = "/admin/api-keys"
    guards = (requires(Permission.MANAGE_API_KEYS),)
    include_in_schema = False

    @get("/", name="admin:api_keys")
    async def index(self, db_session: NamedDependency[AsyncSession]) -> Template:
        return await _page(db_session)

    @post("/", name="admin:api_keys_create", status_code=200)
    async def create(
        self,
        data: URLEncodedBody[NewKeyForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Template:
        """The answer to this POST is the only place the key is ever shown (the page is
        ``no-store``, like every page); reloading does not show it again."""
        try:
            new_key = await api_keys.create_key(db_session, name=data.name, actor=actor)
        except api_keys.ApiKeyError as exc:
            return await _page(db_session, name=data.name, error=str(exc), status_code=REFUSED)
        return await _page(db_session, new_key=new_key)

    @post("/{key_pk:int}/revoke", name="admin:api_keys_revoke")
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        key_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Redirect:
        try:
            key = await api_keys.revoke_key(db_session, key_pk, actor=actor)
        except api_keys.ApiKeyError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(
                request,
                f"Revoked “{key.name}” ({key.prefix}…); it is refused from now on",
                "success",
            )
        return Redirect(request.app.route_reverse("admin:api_keys"), status_code=303)


ROUTES = [ApiKeyController]
