"""Every route handler of the web app, in one list (``create_app`` mounts them)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from web.routes import (
    account,
    admin,
    admin_limits,
    admin_reasons,
    admin_users,
    api,
    approvals,
    audit,
    bulk,
    health,
    live,
    orders,
    payments,
    refunds,
    review,
    session,
    settlement,
    sso,
    webhooks,
    worklists,
)

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    *session.ROUTES,
    *sso.ROUTES,
    health.healthz,
    *payments.ROUTES,
    *refunds.ROUTES,
    *review.ROUTES,
    *approvals.ROUTES,
    *bulk.ROUTES,
    webhooks.antom_webhook,
    *live.ROUTES,
    *worklists.ROUTES,
    *account.ROUTES,
    *api.ROUTES,
    *orders.ROUTES,
    *settlement.ROUTES,
    *admin.ROUTES,
    *audit.ROUTES,
    *admin_users.ROUTES,
    *admin_limits.ROUTES,
    *admin_reasons.ROUTES,
]
