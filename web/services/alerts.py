"""Raising worklist items (``/worklists``; queues in web/rules/worklists.py).

The desk raises them; only people work and close them (web/services/worklists.py)."""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Alert, AlertKind

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
