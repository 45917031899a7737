"""Who may do what: the one permission table.

Every route declares the permission it needs (``web.auth.requires``), templates ask the
same ``can()``, and no role name appears anywhere else in the code that decides access.
``tests/app/test_access.py`` walks the app's routes and fails on any handler without a
permission that is not explicitly public, and checks every route against this table for
each role. Object-level rules (whose request a person may approve) are functions here too.
"""

from __future__ import annotations

from enum import StrEnum

from web.models import Role, User


class Permission(StrEnum):
    USE_DESK = "use_desk"  # one's own account and preferences
    VIEW_PAYMENTS = "view_payments"  # payments, refunds, their timelines, live updates
    REFUND = "refund"  # issue a refund within one's limits
    # No limit row for a currency means no limit (instead of no refunds in it).
    REFUND_WITHOUT_LIMIT = "refund_without_limit"
    REQUEST_APPROVAL = "request_approval"  # ask for a refund over one's limits
    APPROVE = "approve"  # approve or reject someone else's request
    VIEW_ALERTS = "view_alerts"  # the leads' worklists
    MANAGE_REASONS = "manage_reasons"
    MANAGE_LIMITS = "manage_limits"
    MANAGE_USERS = "manage_users"
    MANAGE_API_KEYS = "manage_api_keys"
    VIEW_AUDIT = "view_audit"
    EXPORT = "export"
    IMPORT_ORDERS = "import_orders"
    IMPORT_SETTLEMENT = "import_settlement"
    RUN_BULK = "run_bulk"
    VIEW_PERMISSIONS = "view_permissions"


_AGENT = frozenset(
    {
        Permission.USE_DESK,
        Permission.VIEW_PAYMENTS,
        Permission.REFUND,
        Permission.REQUEST_APPROVAL,
    }
)
_LEAD = _AGENT | {
    Permission.REFUND_WITHOUT_LIMIT,
    Permission.APPROVE,
    Permission.VIEW_ALERTS,
    Permission.EXPORT,
    Permission.IMPORT_ORDERS,
    Permission.IMPORT_SETTLEMENT,
    Permission.RUN_BULK,
}
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.AGENT: _AGENT,
    Role.LEAD: frozenset(_LEAD),
    Role.ADMIN: frozenset(Permission),
}


def can(user: User | None, permission: Permission) -> bool:
    """Whether ``user`` (None: nobody signed in) holds ``permission``."""
    if user is None or not user.active:
        return False
    return permission in ROLE_PERMISSIONS.get(Role(user.role), frozenset())


def may_approve(approver: User, requester_id: int | None) -> bool:
    """Four eyes: an approver holds the permission and is not the one who asked."""
    return can(approver, Permission.APPROVE) and approver.id != requester_id


def may_see_request(user: User, requester_id: int | None) -> bool:
    """A pending request is its requester's and the approvers' business only."""
    return user.id == requester_id or can(user, Permission.APPROVE)
