"""Things a lead has to look at (``/alerts``). The desk raises them; only people resolve."""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Alert, AlertKind, User, utcnow

log = logging.getLogger(__name__)


async def raise_alert(
    session: AsyncSession,
    kind: AlertKind,
    subject: str,
    message: str,
    *,
    refund_pk: int | None = None,
    payment_pk: int | None = None,
    webhook_event_pk: int | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Flag something for leads once; False when the same alert exists already."""
    key = f"{kind.value}:{subject}"
    exists = (await session.exec(select(Alert.id).where(Alert.dedupe_key == key))).first()
    if exists is not None:
        return False
    session.add(
        Alert(
            dedupe_key=key,
            kind=kind,
            refund_pk=refund_pk,
            payment_pk=payment_pk,
            webhook_event_pk=webhook_event_pk,
            message=message[:256],
            detail=detail,
        )
    )
    log.warning("alert raised kind=%s subject=%s %s", kind.value, subject, message)
    return True


async def resolve(
    session: AsyncSession, alert_pk: int, user: User, *, note: str = ""
) -> Alert | None:
    """Mark an alert resolved by ``user`` (once; resolving again changes nothing), with the
    lead's note on what was done (kept in ``detail["resolution_note"]``)."""
    alert = await session.get(Alert, alert_pk)
    if alert is not None and alert.resolved_at is None:
        alert.resolved_at = utcnow()
        alert.resolved_by = user.id
        if note.strip():
            # A new dict: SQLAlchemy does not see changes made inside a JSON value.
            alert.detail = {**(alert.detail or {}), "resolution_note": note.strip()[:500]}
        await session.flush()
    return alert


async def alert_by_pk(session: AsyncSession, alert_pk: int) -> Alert | None:
    return await session.get(Alert, alert_pk)
