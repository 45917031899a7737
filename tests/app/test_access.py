"""Permissions in one place (web/rules/access.py): every route declares one, and each
role gets exactly what the table gives it — checked by walking the app's routes and
over HTTP for every route × role (anonymous, agent, lead, admin)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from tests.support.fixtures_app import csrf_token_of
from web.auth import PermissionGuard
from web.models import Role, User
from web.rules.access import ROLE_PERMISSIONS, Permission, can, may_approve, may_see_request

P = Permission
# Served without a signed-in person, each for a reason.
PUBLIC = {
    "session:login": "the sign-in form",
    "session:login-submit": "signing in",
    "sso:start": "single sign-on starts before anyone is signed in",
    "sso:callback": "and ends there",
    "health": "the platform's health check",
    "webhooks:antom": "authenticated by Antom's signature",
    "api:orders": "authenticated by an API key, scoped to this endpoint",
    "password:link": "a one-time link: whoever holds it chooses that person's password",
    "password:set": "the page the link opens (the token rides in the session cookie)",
    "password:set_submit": "and its form",
}
# The permission each route needs: the spec this test holds the routes to.
EXPECTED: dict[str, Permission] = {
    "home": P.USE_DESK,
    "session:logout": P.USE_DESK,
    "session:account": P.USE_DESK,
    "session:sign-out-everywhere": P.USE_DESK,
    "account:time_zone": P.USE_DESK,
    "payments:list": P.VIEW_PAYMENTS,
    "payments:fresh": P.VIEW_PAYMENTS,
    "payments:find": P.VIEW_PAYMENTS,
    "payments:detail": P.VIEW_PAYMENTS,
    "payments:live": P.VIEW_PAYMENTS,
    "payments:refund_validate": P.REFUND,
    "payments:refund_submit": P.REFUND,
    "payments:export": P.EXPORT,
    "refunds:list": P.VIEW_PAYMENTS,
    "refunds:fresh": P.VIEW_PAYMENTS,
    "refunds:detail": P.VIEW_PAYMENTS,
    "refunds:check": P.VIEW_PAYMENTS,
    "approvals:queue": P.REQUEST_APPROVAL,  # approvers see all; requesters their own
    "approvals:count": P.APPROVE,
    "approvals:approve": P.APPROVE,
    "approvals:reject": P.APPROVE,
    "approvals:edit": P.REQUEST_APPROVAL,  # only the requester (checked on the object)
    "refunds:export": P.EXPORT,
    "bulk:index": P.RUN_BULK,
    "bulk:upload": P.RUN_BULK,
    "bulk:from_selection": P.RUN_BULK,
    "bulk:detail": P.RUN_BULK,
    "bulk:state": P.RUN_BULK,
    "bulk:results": P.RUN_BULK,
    "bulk:row_exclude": P.RUN_BULK,  # only the batch's requester (checked on the object)
    "bulk:row_edit": P.RUN_BULK,
    "bulk:approve": P.APPROVE,  # never the requester (checked on the object)
    "bulk:reject": P.APPROVE,
    "bulk:cancel": P.RUN_BULK,
    "live:events": P.VIEW_PAYMENTS,
    "worklists:index": P.VIEW_ALERTS,
    "worklists:count": P.VIEW_ALERTS,
    "worklists:item": P.VIEW_ALERTS,
    "worklists:assign": P.VIEW_ALERTS,
    "worklists:comment": P.VIEW_ALERTS,
    "worklists:close": P.VIEW_ALERTS,
    "worklists:reopen": P.VIEW_ALERTS,
    "worklists:alerts": P.VIEW_ALERTS,
    "orders:import": P.IMPORT_ORDERS,
    "orders:import_upload": P.IMPORT_ORDERS,
    "orders:import_detail": P.IMPORT_ORDERS,
    "settlement:import": P.IMPORT_SETTLEMENT,
    "settlement:import_upload": P.IMPORT_SETTLEMENT,
    "settlement:import_detail": P.IMPORT_SETTLEMENT,
    "refunds:refundable_again": P.APPROVE,
    "admin:index": P.USE_DESK,  # lists only the admin pages the person may open
    "admin:permissions": P.VIEW_PERMISSIONS,
    "admin:users": P.MANAGE_USERS,
    "admin:users_invite": P.MANAGE_USERS,
    "admin:users_role": P.MANAGE_USERS,
    "admin:users_disable": P.MANAGE_USERS,
    "admin:users_enable": P.MANAGE_USERS,
    "admin:users_reset": P.MANAGE_USERS,
    "admin:limits": P.MANAGE_LIMITS,
    "admin:limits_set": P.MANAGE_LIMITS,
    "admin:limits_remove": P.MANAGE_LIMITS,
    "admin:reasons": P.MANAGE_REASONS,
    "admin:reasons_add": P.MANAGE_REASONS,
    "admin:reasons_edit": P.MANAGE_REASONS,
    "admin:api_keys": P.MANAGE_API_KEYS,
    "admin:api_keys_create": P.MANAGE_API_KEYS,
    "admin:api_keys_revoke": P.MANAGE_API_KEYS,
    "admin:audit": P.VIEW_AUDIT,
    "review:index": P.VIEW_REVIEW,
}


def handlers(app: Litestar) -> dict[str, tuple[str, str, HTTPRouteHandler]]:
    """Route name -> (method, path, handler), for every handler but CORS preflights."""
    found: dict[str, tuple[str, str, HTTPRouteHandler]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            methods = sorted(set(handler.http_methods) - {"OPTIONS", "HEAD"})
            if not isinstance(handler, HTTPRouteHandler) or not methods:
                continue
            if handler.name in (None, "static", "metrics") or route.path.startswith("/static"):
                continue
            found[handler.name] = (methods[0], route.path, handler)
    return found


def permissions_of(handler: HTTPRouteHandler) -> set[Permission]:
    """Every permission declared on the handler, its controller and its router."""
    guards = [getattr(g, "func", g) for g in handler.resolve_guards()]
    return {g.permission for g in guards if isinstance(g, PermissionGuard)}


def implied_by(permission: Permission) -> set[Permission]:
    """Permissions every holder of ``permission`` also holds."""
    holders = [held for held in ROLE_PERMISSIONS.values() if permission in held]
    return set.intersection(*(set(h) for h in holders)) if holders else set()


def test_every_route_declares_its_permission_or_is_explicitly_public(app: Litestar) -> None:
    seen = handlers(app)
    assert set(seen) == set(EXPECTED) | set(PUBLIC), (
        "a route was added or removed: update the table"
    )
    for name, (_method, path, handler) in seen.items():
        declared = permissions_of(handler)
        if name in PUBLIC:
            assert not declared and handler.opt.get("exclude_from_auth"), name
            continue
        assert not handler.opt.get("exclude_from_auth"), f"{name} ({path}) skips sign-in"
        # The route's own permission, plus (from its controller) only what it implies.
        assert EXPECTED[name] in declared, f"{name} ({path}) needs {EXPECTED[name]}"
        assert declared <= implied_by(EXPECTED[name]), f"{name}: {declared}"


async def test_every_mutating_route_refuses_a_request_without_the_csrf_token(
    app: Litestar, clients: Callable[[str], Awaitable[httpx.AsyncClient]]
) -> None:
    """Signed in as an admin (who may do everything), with no token in the form or in
    the header, every state-changing route is refused before it acts."""
    client = await clients("admin")
    client.headers.pop("x-csrftoken", None)
    exempt = {"webhooks:antom", "api:orders"}  # no cookies: signature / API key instead
    checked = 0
    for name, (method, path, _handler) in handlers(app).items():
        if method in ("GET", "HEAD") or name in exempt:
            continue
        response = await client.request(method, concrete(path), data={"x": "1"})
        assert response.status_code == 403, (name, response.status_code)
        assert "csrf" in response.text.lower(), name
        checked += 1
    assert checked >= 20  # the walk found the forms


def test_the_table_gives_each_role_what_it_should() -> None:
    agent, lead, admin = (ROLE_PERMISSIONS[r] for r in (Role.AGENT, Role.LEAD, Role.ADMIN))
    assert agent < lead < admin
    assert agent == {P.USE_DESK, P.VIEW_PAYMENTS, P.REFUND, P.REQUEST_APPROVAL}
    assert {P.APPROVE, P.VIEW_ALERTS, P.VIEW_REVIEW, P.EXPORT, P.RUN_BULK} <= lead
    assert not ({P.MANAGE_USERS, P.MANAGE_API_KEYS, P.VIEW_AUDIT} & lead)
    assert admin == set(Permission)


def user(role: Role, pk: int = 1, *, active: bool = True) -> User:
    return User(id=pk, email=f"{pk}@x.test", name="X", role=role, password_hash="x", active=active)


def test_object_level_rules() -> None:
    lead, other_lead, agent = user(Role.LEAD, 1), user(Role.LEAD, 2), user(Role.AGENT, 3)
    assert may_approve(other_lead, requester_id=1)
    assert not may_approve(lead, requester_id=1)  # never one's own request
    assert not may_approve(agent, requester_id=1)  # not without the permission
    assert may_see_request(agent, requester_id=3)
    assert not may_see_request(agent, requester_id=9)  # another agent's pending request
    assert may_see_request(lead, requester_id=9)
    assert not can(user(Role.ADMIN, active=False), P.USE_DESK)
    assert not can(None, P.USE_DESK)


# ---------------------------------------------------------------- over HTTP


def concrete(path: str) -> str:
    """A path with its parameters filled in: the guard answers before any lookup."""
    return re.sub(r"\{[^}]+:str\}", "nothing", re.sub(r"\{[^}]+:int\}", "999999", path))


@pytest.fixture
def clients(
    signed_in: Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]],
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
) -> Callable[[str], Awaitable[httpx.AsyncClient]]:
    async def make(role: str) -> httpx.AsyncClient:
        if role == "anonymous":
            return await new_client()
        client, _user = await signed_in(role=role)
        return client

    return make


@pytest.mark.parametrize("role", ["anonymous", "agent", "lead", "admin"])
async def test_every_route_answers_each_role_as_the_table_says(
    app: Litestar, clients: Callable[[str], Awaitable[httpx.AsyncClient]], role: str
) -> None:
    client = await clients(role)
    held = set() if role == "anonymous" else ROLE_PERMISSIONS[Role(role)]
    for name, permission in EXPECTED.items():
        method, path, _handler = handlers(app)[name]
        if name in ("session:logout", "session:sign-out-everywhere", "live:events"):
            continue  # would end the session under test / never ends: covered elsewhere
        headers: dict[str, Any] = {"HX-Request": "true"}
        if role != "anonymous":
            headers["x-csrftoken"] = csrf_token_of(client)
        response = await client.request(method, concrete(path), headers=headers)
        if role == "anonymous":
            assert response.status_code in (401, 403), (name, response.status_code)
        elif permission in held:
            assert response.status_code not in (401, 403), (name, response.status_code)
        else:
            assert response.status_code == 403, (name, response.status_code)
