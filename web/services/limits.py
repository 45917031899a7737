"""Spending limits (per role and per user, per currency) and what already counts against
them. The decision itself is pure: ``web.rules.caps``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import MoneyError, exponent, format_minor
from web.models import Refund, Role, SpendingLimit, User, utcnow
from web.rules.access import Permission, can
from web.rules.caps import Caps, Spent, effective_caps
from web.rules.lifecycle import COUNTING

DAY = timedelta(hours=24)  # the daily cap is over the rolling 24 hours (web/rules/caps.py)


class LimitError(ValueError):
    """A limit that cannot be set; the message says why."""


def _caps(row: SpendingLimit | None) -> Caps | None:
    return None if row is None else Caps(row.max_single_minor, row.max_day_minor)


async def caps_for(session: AsyncSession, user: User, currency: str) -> Caps:
    """The caps ``user`` works under in ``currency`` now (their own row, else their role's)."""
    rows = (
        await session.exec(
            select(SpendingLimit).where(
                SpendingLimit.currency == currency,
                sa.or_(
                    col(SpendingLimit.user_id) == user.id,
                    col(SpendingLimit.role) == str(user.role),
                ),
            )
        )
    ).all()
    own = next((r for r in rows if r.user_id is not None), None)
    role = next((r for r in rows if r.role is not None), None)
    return effective_caps(
        _caps(own), _caps(role), unlimited_by_default=can(user, Permission.REFUND_WITHOUT_LIMIT)
    )


async def spent(
    session: AsyncSession,
    *,
    user_id: int | None,
    currency: str,
    payment_pk: int,
    payment_amount_minor: int,
    reason: str,
    now: datetime,
    excluding_refund_pk: int | None = None,
) -> Spent:
    """What counts against the caps: this person's refunds in ``currency`` over the last
    24 hours, and this payment's refunds for ``reason`` (failed and rejected ones do not
    count; ``excluding_refund_pk`` leaves out a pending request being edited)."""
    counting = col(Refund.status).in_(COUNTING)
    others = [] if excluding_refund_pk is None else [col(Refund.id) != excluding_refund_pk]
    day = await session.exec(
        select(sa.func.coalesce(sa.func.sum(Refund.amount_minor), 0)).where(
            col(Refund.agent_id) == user_id,
            Refund.currency == currency,
            col(Refund.created_at) > now - DAY,
            counting,
            *others,
        )
    )
    same_reason = await session.exec(
        select(sa.func.coalesce(sa.func.sum(Refund.amount_minor), 0)).where(
            Refund.payment_pk == payment_pk, Refund.reason == reason, counting, *others
        )
    )
    return Spent(
        day_minor=int(day.one()),
        reason_minor=int(same_reason.one()),
        payment_amount_minor=payment_amount_minor,
    )


async def limits_for(session: AsyncSession, user: User) -> Sequence[SpendingLimit]:
    """The rows that apply to ``user``: their own, and their role's where they have none."""
    rows = (
        await session.exec(
            select(SpendingLimit)
            .where(
                sa.or_(
                    col(SpendingLimit.user_id) == user.id,
                    col(SpendingLimit.role) == str(user.role),
                )
            )
            .order_by(col(SpendingLimit.currency))
        )
    ).all()
    own = {r.currency for r in rows if r.user_id is not None}
    return [r for r in rows if r.user_id is not None or r.currency not in own]


async def set_limit(
    session: AsyncSession,
    *,
    currency: str,
    max_single_minor: int | None,
    max_day_minor: int | None,
    user: User | None = None,
    role: Role | None = None,
    by: User | None = None,
) -> SpendingLimit | None:
    """Set one subject's (a user's or a role's) caps in ``currency``; both caps None
    removes the row (the subject then falls back to its role, or to the default)."""
    if (user is None) == (role is None):
        raise LimitError("A limit is for one user or one role")
    currency = currency.strip().upper()
    try:
        exponent(currency)
    except MoneyError as exc:
        raise LimitError(str(exc)) from None
    for value in (max_single_minor, max_day_minor):
        if value is not None and value < 0:
            raise LimitError("A limit cannot be negative")
    subject = (
        col(SpendingLimit.user_id) == user.id
        if user is not None
        else col(SpendingLimit.role) == str(role)
    )
    row = (
        await session.exec(select(SpendingLimit).where(subject, SpendingLimit.currency == currency))
    ).first()
    if max_single_minor is None and max_day_minor is None:
        if row is not None:
            await session.delete(row)
            await session.flush()
        return None
    if row is None:
        row = SpendingLimit(
            user_id=user.id if user is not None else None,
            role=str(role) if role is not None else None,
            currency=currency,
        )
    row.max_single_minor = max_single_minor
    row.max_day_minor = max_day_minor
    row.updated_at = utcnow()
    row.updated_by = by.id if by is not None else None
    session.add(row)
    await session.flush()
    return row


def describe(row: SpendingLimit) -> str:
    """One line for people: "USD: 500.00 per refund, 1,000.00 per 24 h"."""
    parts = []
    if row.max_single_minor is not None:
        parts.append(f"{format_minor(row.max_single_minor, row.currency)} per refund")
    if row.max_day_minor is not None:
        parts.append(f"{format_minor(row.max_day_minor, row.currency)} per 24 h")
    return f"{row.currency}: " + ", ".join(parts)


async def lock_spender(session: AsyncSession, user: User) -> None:
    """Serialise one person's refund requests: what counts against their daily cap is
    read after this, so two requests at once cannot both fit under it. (PostgreSQL locks
    the user's row; SQLite's writing transactions hold the database lock already.)"""
    await session.exec(select(User.id).where(col(User.id) == user.id).with_for_update())
