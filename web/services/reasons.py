"""The managed reason list: what agents may pick and what each reason demands."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import RefundReason
from web.rules.refunds import DEFAULT_REASONS, Reason


def _rule(row: RefundReason) -> Reason:
    return Reason(
        code=row.code,
        label=row.label,
        active=row.active,
        note_required=row.note_required,
        ticket_required=row.ticket_required,
        approval_required=row.approval_required,
        max_percent=row.max_percent,
    )


async def catalogue(session: AsyncSession) -> list[Reason]:
    """Every reason, active or not, in the order admins gave them."""
    rows = await session.exec(
        select(RefundReason).order_by(col(RefundReason.position), col(RefundReason.code))
    )
    return [_rule(row) for row in rows]


def default_rows(reasons: Sequence[Reason] = DEFAULT_REASONS) -> list[dict[str, object]]:
    """The starting list as table rows (the migration and the tests' databases)."""
    return [
        {
            "code": r.code,
            "label": r.label,
            "active": r.active,
            "note_required": r.note_required,
            "ticket_required": r.ticket_required,
            "approval_required": r.approval_required,
            "max_percent": r.max_percent,
            "position": i * 10,
        }
        for i, r in enumerate(reasons)
    ]
