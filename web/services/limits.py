"""Spending limits (per role and per user, per currency) and what already counts against
them. The decision itself is pure: ``web.rules.caps``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import MoneyError, exponent, format_minor, parse_amount
from web.models import Refund, Role, SpendingLimit, User, utcnow
from web.rules.access import Permission, can
from web.rules.caps import Caps, Spent, effective_caps
from web.rules.lifecycle import COUNTING
from web.services import audit
from web.services.audit import Action, Actor

DAY = timedelta(hours=24)  # the daily cap is over the rolling 24 hours (web/rules/caps.py)


class LimitError(ValueError):
    """A limit that cannot be set; the message says why."""


def _caps(row: SpendingLimit | None) -> Caps | None:
    return None if row is None else Caps(row.max_single_minor, row.max_day_minor)


async def _own_and_role_rows(
    session: AsyncSession, user: User, currency: str | None = None
) -> Sequence[SpendingLimit]:
    """``user``'s own SpendingLimit rows and their role's, by currency (only ``currency``'s
    when given). Both kinds come back: which one wins is the caller's rule, so the caps
    the desk applies (``caps_for``) and the limits a person is shown (``limits_for``)
    start from the same rows."""
    subject = sa.or_(
        col(SpendingLimit.user_id) == user.id,
        col(SpendingLimit.role) == str(user.role),
    )
    in_currency = [] if currency is None else [SpendingLimit.currency == currency]
    return (
        await session.exec(
            select(SpendingLimit).where(subject, *in_currency).order_by(col(SpendingLimit.currency))
        )
    ).all()


async def caps_for(session: AsyncSession, user: User, currency: str) -> Caps:
    """The caps ``user`` works under in ``currency`` now (their own row, else their role's)."""
    rows = await _own_and_role_rows(session, user, currency)
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
    amount = col(Refund.amount_minor)
    mine_today = sa.and_(
        col(Refund.agent_id) == user_id,
        col(Refund.currency) == currency,
        col(Refund.created_at) > now - DAY,
    )
    same_reason = sa.and_(col(Refund.payment_pk) == payment_pk, col(Refund.reason) == reason)
    others = [] if excluding_refund_pk is None else [col(Refund.id) != excluding_refund_pk]
    # Both sums in one statement: the form re-judges on every keystroke.
    day, reason_total = (
        await session.exec(
            select(
                sa.func.coalesce(sa.func.sum(sa.case((mine_today, amount), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case((same_reason, amount), else_=0)), 0),
            ).where(col(Refund.status).in_(COUNTING), sa.or_(mine_today, same_reason), *others)
        )
    ).one()
    return Spent(
        day_minor=int(day),
        reason_minor=int(reason_total),
        payment_amount_minor=payment_amount_minor,
    )


async def limits_for(session: AsyncSession, user: User) -> Sequence[SpendingLimit]:
    """The rows that apply to ``user``: their own, and their role's where they have none."""
    rows = await _own_and_role_rows(session, user)
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
    row = await _row_for(session, currency, user, role)
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


# ---------------------------------------------------------------- admin: editing limits


class LimitFormError(LimitError):
    """A limit form with mistakes: one message per field (subject, currency, max_single,
    max_day)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


_ZERO = re.compile(r"0+(\.0*)?|\.0+")


def parse_cap(text: str, currency: str) -> int | None:
    """A cap as people type it, in major units: empty or "none" is no cap, "0" is a cap
    of nothing (every refund needs approval), else ``parse_amount``'s rules."""
    raw = text.strip()
    if not raw or raw.lower() == "none":
        return None
    if _ZERO.fullmatch(raw):
        return 0
    return parse_amount(raw, currency)


def parse_currency(text: str) -> str:
    currency = text.strip().upper()
    if not currency:
        raise LimitError("Enter a currency code, e.g. USD")
    try:
        exponent(currency)
    except MoneyError as exc:
        raise LimitError(str(exc)) from None
    return currency


def parse_caps(currency_text: str, single_text: str, day_text: str) -> tuple[str, Caps]:
    """The currency and caps of a limit form, or ``LimitFormError`` naming each bad field.

    At least one cap is needed: a limit without caps is removed instead (``remove``)."""
    errors: dict[str, str] = {}
    try:
        currency = parse_currency(currency_text)
    except LimitError as exc:
        raise LimitFormError({"currency": str(exc)}) from None
    values: dict[str, int | None] = {}
    for name, text in (("max_single", single_text), ("max_day", day_text)):
        try:
            values[name] = parse_cap(text, currency)
        except MoneyError as exc:
            errors[name] = str(exc)
    if not errors and values["max_single"] is None and values["max_day"] is None:
        errors["max_single"] = "Enter at least one cap (or remove the limit instead)"
    if errors:
        raise LimitFormError(errors)
    return currency, Caps(values["max_single"], values["max_day"])


def _values(row: SpendingLimit | None) -> dict[str, object] | None:
    if row is None:
        return None
    return {"max_single_minor": row.max_single_minor, "max_day_minor": row.max_day_minor}


async def _row_for(
    session: AsyncSession, currency: str, user: User | None, role: Role | None
) -> SpendingLimit | None:
    subject = (
        col(SpendingLimit.user_id) == user.id
        if user is not None
        else col(SpendingLimit.role) == str(role)
    )
    return (
        await session.exec(select(SpendingLimit).where(subject, SpendingLimit.currency == currency))
    ).first()


async def change_limit(
    session: AsyncSession,
    *,
    currency: str,
    max_single_minor: int | None,
    max_day_minor: int | None,
    actor: Actor,
    user: User | None = None,
    role: Role | None = None,
) -> SpendingLimit | None:
    """``set_limit``, audited: one ``limit.changed`` row with the caps before and after
    (nothing is written when nothing changes). Both caps None removes the limit."""
    currency = parse_currency(currency)
    before = _values(await _row_for(session, currency, user, role))
    row = await set_limit(
        session,
        currency=currency,
        max_single_minor=max_single_minor,
        max_day_minor=max_day_minor,
        user=user,
        role=role,
    )
    if row is not None:
        row.updated_by = actor.user_id
        session.add(row)
        await session.flush()
    after = _values(row)
    if before != after:
        subject = f"user:{user.email}" if user is not None else f"role:{role}"
        await audit.record(
            session,
            Action.LIMIT_CHANGED,
            actor,
            object_type="spending_limit",
            object_id=f"{subject}:{currency}",
            before=before,
            after=after,
            detail={
                "subject": subject,
                "currency": currency,
                **({"user_id": user.id} if user is not None else {}),
            },
        )
    return row


@dataclass(frozen=True, slots=True)
class LimitView:
    """One limit row as the admin page lists it."""

    row: SpendingLimit
    role: Role | None
    user: User | None

    @property
    def subject(self) -> str:
        return f"role:{self.role}" if self.role is not None else f"user:{self.row.user_id}"


async def all_limits(session: AsyncSession) -> list[LimitView]:
    """Every limit: the roles' (in role order) first, then people's (by email)."""
    rows = (
        await session.exec(
            select(SpendingLimit, User).outerjoin(User, col(User.id) == col(SpendingLimit.user_id))
        )
    ).all()
    order = {r: i for i, r in enumerate(Role)}
    views = [
        LimitView(row=row, role=Role(row.role) if row.role else None, user=user)
        for row, user in rows
    ]
    return sorted(
        views,
        key=lambda v: (
            v.role is None,
            order.get(v.role, 0) if v.role is not None else 0,
            v.user.email if v.user is not None else "",
            v.row.currency,
        ),
    )


async def get_limit(session: AsyncSession, limit_id: int) -> LimitView:
    row = await session.get(SpendingLimit, limit_id)
    if row is None:
        raise LimitError("There is no such limit (it may have been removed)")
    user = await session.get(User, row.user_id) if row.user_id is not None else None
    return LimitView(row=row, role=Role(row.role) if row.role else None, user=user)


async def remove_limit(session: AsyncSession, limit_id: int, *, actor: Actor) -> LimitView:
    view = await get_limit(session, limit_id)
    await change_limit(
        session,
        currency=view.row.currency,
        max_single_minor=None,
        max_day_minor=None,
        actor=actor,
        user=view.user,
        role=view.role,
    )
    return view


def describe_caps(caps: Caps, currency: str) -> str:
    """``¥5,000 per refund, no cap per 24 h``; a cap of 0 needs approval every time."""
    if caps.max_single_minor == 0 or caps.max_day_minor == 0:
        return "every refund needs approval"
    if caps.max_single_minor is None and caps.max_day_minor is None:
        return "no limit"

    def one(minor: int | None, what: str) -> str:
        return f"no cap {what}" if minor is None else f"{format_minor(minor, currency)} {what}"

    return f"{one(caps.max_single_minor, 'per refund')}, {one(caps.max_day_minor, 'per 24 h')}"


@dataclass(frozen=True, slots=True)
class Effective:
    """What one person works under in one currency, and where it comes from."""

    currency: str
    caps: Caps
    source: str  # "own limit", "<role> role", "default"
    text: str


@dataclass(frozen=True, slots=True)
class PersonCaps:
    user: User
    currencies: list[Effective]
    elsewhere: str  # every other currency


async def effective_limits(session: AsyncSession) -> list[PersonCaps]:
    """For each active person: their caps in every currency any limit names, and what
    holds in the others — the same rule ``caps_for`` applies (``effective_caps``)."""
    views = await all_limits(session)
    currencies = sorted({v.row.currency for v in views})
    by_role = {(str(v.role), v.row.currency): _caps(v.row) for v in views if v.role}
    by_user = {(v.row.user_id, v.row.currency): _caps(v.row) for v in views if v.user}
    people = (
        await session.exec(select(User).where(col(User.active)).order_by(col(User.email)))
    ).all()
    result = []
    for person in people:
        unlimited = can(person, Permission.REFUND_WITHOUT_LIMIT)
        shown = []
        for currency in currencies:
            own, role = (
                by_user.get((person.id, currency)),
                by_role.get((str(person.role), currency)),
            )
            caps = effective_caps(own, role, unlimited_by_default=unlimited)
            source = "own limit" if own else f"{person.role} role" if role else "default"
            shown.append(Effective(currency, caps, source, describe_caps(caps, currency)))
        elsewhere = "no limit" if unlimited else "every refund needs approval"
        result.append(PersonCaps(person, shown, elsewhere))
    return result


async def parse_subject(session: AsyncSession, text: str) -> tuple[User | None, Role | None]:
    """Whose limit a form means: ``role:agent`` or ``user:12``."""
    kind, _, value = text.strip().partition(":")
    if kind == "role":
        try:
            return None, Role(value)
        except ValueError:
            pass
    elif kind == "user" and value.isascii() and value.isdigit():
        user = await session.get(User, int(value))
        if user is not None:
            return user, None
    raise LimitFormError({"subject": "Choose a role or a person"})
