"""The audit trail: one append-only row per security- or money-relevant action.

No web framework here: the HTTP edge builds an ``Actor`` from the request (who, IP, user
agent, request id) and passes it down. ``record`` adds the row to the caller's
transaction, so the action and its audit row commit or roll back together. On
PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE of ``audit_events`` (migration
0002). Reading the trail is web/services/audit_log.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import AuditEvent, utcnow


class Action(StrEnum):
    SIGN_IN = "auth.sign_in"
    SIGN_IN_FAILED = "auth.sign_in_failed"
    SIGN_IN_THROTTLED = "auth.sign_in_throttled"
    SIGN_OUT = "auth.sign_out"
    SIGN_OUT_EVERYWHERE = "auth.sign_out_everywhere"
    REFUND_REQUESTED = "refund.requested"
    REFUND_APPROVAL_REQUESTED = "refund.approval_requested"
    REFUND_EDITED = "refund.edited"
    REFUND_APPROVED = "refund.approved"
    REFUND_REJECTED = "refund.rejected"
    REFUND_EXPIRED = "refund.expired"
    REFUND_SENT = "refund.sent"
    REFUND_RESULT = "refund.result"
    REFUND_REVERSED = "refund.reversed"
    REFUND_REVERSAL_RELEASED = "refund.reversal_released"
    BULK_REQUESTED = "bulk.requested"
    BULK_EDITED = "bulk.edited"
    BULK_APPROVED = "bulk.approved"
    BULK_REJECTED = "bulk.rejected"
    BULK_STARTED = "bulk.started"
    BULK_CANCELLED = "bulk.cancelled"
    BULK_FINISHED = "bulk.finished"
    USER_CREATED = "user.created"
    USER_ROLE_CHANGED = "user.role_changed"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_PASSWORD_RESET = "user.password_reset"  # noqa: S105 - an action name
    USER_PASSWORD_SET = "user.password_set"  # noqa: S105 - an action name
    LIMIT_CHANGED = "limit.changed"
    REASON_CHANGED = "reason.changed"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    WORKLIST_ASSIGNED = "worklist.assigned"
    WORKLIST_COMMENTED = "worklist.commented"
    WORKLIST_CLOSED = "worklist.closed"
    WORKLIST_REOPENED = "worklist.reopened"
    EXPORTED = "data.exported"
    IMPORTED = "data.imported"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, as the audit row names them. ``label`` is readable without a join and
    survives renames: an email, an API key's name, "poller", "webhook", "cli"."""

    user_id: int | None = None
    label: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


async def record(
    session: AsyncSession,
    action: Action,
    actor: Actor | None,
    *,
    object_type: str | None = None,
    object_id: str | int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit row to the caller's transaction (committed with it)."""
    who = actor or Actor()
    event = AuditEvent(
        at=utcnow(),
        action=action.value,
        actor_id=who.user_id,
        actor_label=(who.label or None) and who.label[:254],
        object_type=object_type,
        object_id=None if object_id is None else str(object_id)[:64],
        ip=who.ip,
        user_agent=(who.user_agent or None) and who.user_agent[:256],
        request_id=who.request_id,
        before=before,
        after=after,
        detail=detail,
    )
    session.add(event)
    return event
