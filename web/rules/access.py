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
    VIEW_REVIEW = "view_review"  # the team-lead review: totals, timings, agents, outliers
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

    @property
    def description(self) -> str:
        """One line for people (the /admin/permissions table)."""
        return DESCRIPTIONS[self]

    @property
    def opens_admin(self) -> bool:
        """Whether it opens a page of the admin area (the "Admin" entry in the nav)."""
        return self in ADMIN_AREA


DESCRIPTIONS: dict[Permission, str] = {
    Permission.USE_DESK: "Sign in, see one's own account, limits and preferences",
    Permission.VIEW_PAYMENTS: "See payments, refunds, their timelines and live updates",
    Permission.REFUND: "Issue refunds within one's own limits",
    Permission.REFUND_WITHOUT_LIMIT: (
        "Refund without approval in a currency that has no limit set for one "
        "(others need approval for every refund there)"
    ),
    Permission.REQUEST_APPROVAL: "Ask for a refund over one's limits, for someone to approve",
    Permission.APPROVE: "Approve or reject someone else's refund request (never one's own)",
    Permission.VIEW_ALERTS: "Work the worklists: assign, comment on, close and reopen items",
    Permission.VIEW_REVIEW: "See the review page: refund totals, timings, agents and outliers",
    Permission.MANAGE_REASONS: "Add and edit refund reasons and what each one requires",
    Permission.MANAGE_LIMITS: "Set spending limits per role and per person",
    Permission.MANAGE_USERS: "Invite people, change roles, disable, enable, reset passwords",
    Permission.MANAGE_API_KEYS: "Make and revoke API keys for the merchant's order feed",
    Permission.VIEW_AUDIT: "Read the audit trail",
    Permission.EXPORT: "Export payments and refunds",
    Permission.IMPORT_ORDERS: "Import order references and buyers from a file",
    Permission.IMPORT_SETTLEMENT: "Import Antom settlement files",
    Permission.RUN_BULK: "Run bulk refunds",
    Permission.VIEW_PERMISSIONS: "See this table of roles and permissions",
}
# The permissions behind the admin pages (web/routes/admin.py lists one page for each).
ADMIN_AREA = frozenset(
    {
        Permission.MANAGE_USERS,
        Permission.MANAGE_LIMITS,
        Permission.MANAGE_REASONS,
        Permission.MANAGE_API_KEYS,
        Permission.VIEW_AUDIT,
        Permission.VIEW_PERMISSIONS,
    }
)

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
    Permission.VIEW_REVIEW,
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
