"""Caps: when a refund needs a second person's approval. Pure; no database.

A person refunds on their own up to their caps in the payment's currency — the largest
single refund and the total over the **rolling 24 hours** before the request (rolling,
not a calendar day: a day boundary in some time zone would let two halves of one refund
fall on two "days") — and up to each reason's share of the payment. Anything over a
cap, or for a reason that always needs approval, becomes AWAITING_APPROVAL: reserved,
not sent. Totals count every refund not failed or rejected, awaiting ones included, so
splitting a refund into parts never beats the daily total.
"""

from __future__ import annotations

from dataclasses import dataclass

from web.antom.money import format_minor
from web.rules.refunds import Reason


@dataclass(frozen=True, slots=True)
class Caps:
    """One person's caps in one currency; None is no cap on that dimension."""

    max_single_minor: int | None = None
    max_day_minor: int | None = None


UNLIMITED = Caps()
# Someone without a limit row and without REFUND_WITHOUT_LIMIT: every refund is asked.
NOTHING_UNAPPROVED = Caps(0, 0)


def effective_caps(
    user_caps: Caps | None, role_caps: Caps | None, *, unlimited_by_default: bool
) -> Caps:
    """A user's own row replaces their role's; without either the permission decides."""
    if user_caps is not None:
        return user_caps
    if role_caps is not None:
        return role_caps
    return UNLIMITED if unlimited_by_default else NOTHING_UNAPPROVED


@dataclass(frozen=True, slots=True)
class Spent:
    """What already counts against the caps when a refund is asked for."""

    day_minor: int  # this person's refunds in the currency over the last 24 hours
    reason_minor: int  # this payment's refunds for the same reason
    payment_amount_minor: int  # the payment's captured amount, the base of a percentage


def approval_needed(
    caps: Caps, reason: Reason | None, amount_minor: int, currency: str, spent: Spent
) -> list[str]:
    """Why this refund needs approval, one sentence per cap it breaks (empty: it does not)."""

    def fmt(minor: int) -> str:
        return format_minor(minor, currency)

    why: list[str] = []
    single = caps.max_single_minor
    if single is not None and amount_minor > single:
        if single == 0:
            why.append(f"You cannot refund in {currency} without approval")
        else:
            why.append(f"{fmt(amount_minor)} is over your {fmt(single)} limit per refund")
    day = caps.max_day_minor
    if day is not None and single != 0 and spent.day_minor + amount_minor > day:
        total = spent.day_minor + amount_minor
        if spent.day_minor:
            why.append(
                f"{fmt(spent.day_minor)} today + {fmt(amount_minor)} = {fmt(total)}, "
                f"over your {fmt(day)} daily limit"
            )
        else:
            why.append(f"{fmt(amount_minor)} is over your {fmt(day)} daily limit")
    if reason is not None:
        if reason.approval_required:
            why.append(f"Refunds for “{reason.label}” always need approval")
        if reason.max_percent is not None and spent.payment_amount_minor > 0:
            allowed = spent.payment_amount_minor * reason.max_percent // 100
            total = spent.reason_minor + amount_minor
            if total > allowed:
                share = f"{reason.max_percent} % of the payment ({fmt(allowed)})"
                if spent.reason_minor:
                    why.append(
                        f"{fmt(spent.reason_minor)} already refunded as “{reason.label}” + "
                        f"{fmt(amount_minor)} = {fmt(total)}, over {share}"
                    )
                else:
                    why.append(f"{fmt(amount_minor)} as “{reason.label}” is over {share}")
    return why
