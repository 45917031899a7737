"""Refund rules: one definition, used by the live form, the submit path and the simulator.

Pure functions over plain values; no web framework, no database. The checks follow the
seed guide's Table 1 plus the per-method capabilities, in this documented order (the
first violation is what Antom answers; the form shows them all beside their fields):

1. ORDER_STATUS_INVALID         payment not successful, not captured, or open chargeback
2. CURRENCY_NOT_SUPPORT         refund currency differs from the payment currency
3. PARAM_ILLEGAL                amount not positive / breaks the currency's unit rule
4. REFUND_AMOUNT_EXCEED         below the minimum, or above what is still refundable
                                (in-flight refunds count as already spent)
5. REFUND_WINDOW_EXCEED         past the method's refund window
6. PARTIAL_REFUND_NOT_SUPPORTED method refunds only the full captured amount
7. MULTIPLE_REFUNDS_NOT_SUPPORTED method allows a single refund
8. MERCHANT_BALANCE_NOT_ENOUGH  (simulator only: the merchant balance is Antom's to know)

ORDER_NOT_EXIST is the caller's: there is no payment to pass in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from web.antom.money import MINOR_MULTIPLE, exponent, format_minor, minor_unit_problem


class Code(StrEnum):
    ORDER_NOT_EXIST = "ORDER_NOT_EXIST"
    ORDER_STATUS_INVALID = "ORDER_STATUS_INVALID"
    CURRENCY_NOT_SUPPORT = "CURRENCY_NOT_SUPPORT"
    PARAM_ILLEGAL = "PARAM_ILLEGAL"
    REFUND_AMOUNT_EXCEED = "REFUND_AMOUNT_EXCEED"
    REFUND_WINDOW_EXCEED = "REFUND_WINDOW_EXCEED"
    PARTIAL_REFUND_NOT_SUPPORTED = "PARTIAL_REFUND_NOT_SUPPORTED"
    MULTIPLE_REFUNDS_NOT_SUPPORTED = "MULTIPLE_REFUNDS_NOT_SUPPORTED"
    MERCHANT_BALANCE_NOT_ENOUGH = "MERCHANT_BALANCE_NOT_ENOUGH"


class Field(StrEnum):
    """Where a violation is shown on the refund form."""

    PAYMENT = "payment"
    CURRENCY = "currency"
    AMOUNT = "amount"


@dataclass(frozen=True, slots=True)
class Violation:
    code: Code
    field: Field
    message: str


@dataclass(frozen=True, slots=True)
class MethodProfile:
    """What a payment method allows for refunds (from Antom's per-method docs)."""

    method: str
    label: str
    refund_window_days: int
    partial: bool = True
    max_refunds: int | None = None
    # Async methods answer REFUND_IN_PROCESS and settle later; sync ones answer S at once.
    asynchronous: bool = True
    # Cards authorise first and need a capture before anything can be refunded.
    needs_capture: bool = False


METHOD_PROFILES: dict[str, MethodProfile] = {
    p.method: p
    for p in (
        MethodProfile("CARD", "Card", 365, needs_capture=True),
        MethodProfile("ALIPAY_CN", "Alipay (CN)", 365, asynchronous=False),
        MethodProfile("ALIPAY_HK", "AlipayHK", 365, asynchronous=False),
        MethodProfile("GCASH", "GCash", 180),
        MethodProfile("DANA", "DANA", 90, partial=False),
        MethodProfile("KAKAOPAY", "KakaoPay", 365, max_refunds=1, asynchronous=False),
        MethodProfile("TRUEMONEY", "TrueMoney", 90),
    )
}


def profile_for(method: str) -> MethodProfile:
    """Unknown methods get the conservative defaults Antom documents (365 days, async)."""
    return METHOD_PROFILES.get(method) or MethodProfile(method, method, 365)


def minimum_refund_minor(currency: str) -> int:
    """The smallest refund Antom accepts: one minor unit, or the currency's step (IDR 100).

    Antom says "usually the same as the minimum payment amount"; it publishes no table.
    """
    exponent(currency)  # rejects a malformed code
    return MINOR_MULTIPLE.get(currency, 1)


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """What the rules need to know about a payment, in minor units of its currency."""

    method: str
    currency: str
    amount_minor: int
    captured_minor: int
    succeeded: bool
    dispute_open: bool
    paid_at: datetime
    refunded_minor: int = 0  # refunds that succeeded
    in_flight_minor: int = 0  # refunds accepted or sent but not final
    refund_count: int = 0  # refunds that succeeded or are in flight

    @property
    def profile(self) -> MethodProfile:
        return profile_for(self.method)

    @property
    def refundable_minor(self) -> int:
        return max(0, self.captured_minor - self.refunded_minor - self.in_flight_minor)

    @property
    def window_deadline(self) -> datetime:
        return self.paid_at + timedelta(days=self.profile.refund_window_days)


def check_refund(
    payment: PaymentFacts,
    currency: str,
    amount_minor: int,
    now: datetime,
    merchant_balance_minor: int | None = None,
) -> list[Violation]:
    """Every rule the refund breaks, in the documented order (empty means allowed)."""
    found: list[Violation] = []
    p = payment

    def add(code: Code, field: Field, message: str) -> None:
        found.append(Violation(code, field, message))

    def fmt(minor: int) -> str:
        return format_minor(minor, p.currency)

    if not p.succeeded:
        add(Code.ORDER_STATUS_INVALID, Field.PAYMENT, "The payment has not succeeded")
    elif p.profile.needs_capture and p.captured_minor == 0:
        add(Code.ORDER_STATUS_INVALID, Field.PAYMENT, "The payment is authorised but not captured")
    if p.dispute_open:
        add(
            Code.ORDER_STATUS_INVALID,
            Field.PAYMENT,
            "A chargeback is open on this payment; it cannot be refunded until it is judged",
        )

    if currency != p.currency:
        add(
            Code.CURRENCY_NOT_SUPPORT,
            Field.CURRENCY,
            f"Refunds must be in the payment's currency, {p.currency}",
        )
        # Amount checks below compare minor units of the payment's currency.
        return found

    if amount_minor <= 0:
        add(Code.PARAM_ILLEGAL, Field.AMOUNT, "The amount must be greater than zero")
    elif problem := minor_unit_problem(amount_minor, currency):
        add(Code.PARAM_ILLEGAL, Field.AMOUNT, problem)
    else:
        minimum = minimum_refund_minor(currency)
        if amount_minor < minimum:
            add(Code.REFUND_AMOUNT_EXCEED, Field.AMOUNT, f"The minimum refund is {fmt(minimum)}")
        elif amount_minor > p.refundable_minor:
            # In flight: sent and not settled, or held for a request awaiting approval.
            held = fmt(p.in_flight_minor)
            detail = f" ({held} is held for refunds not yet settled)" if p.in_flight_minor else ""
            if p.refundable_minor == 0:
                msg = f"Nothing is left to refund{detail}"
            else:
                msg = f"Only {fmt(p.refundable_minor)} is still refundable{detail}"
            add(Code.REFUND_AMOUNT_EXCEED, Field.AMOUNT, msg)

    if now > p.window_deadline:
        add(
            Code.REFUND_WINDOW_EXCEED,
            Field.PAYMENT,
            f"The {p.profile.refund_window_days}-day refund window for {p.profile.label} "
            f"closed on {p.window_deadline:%Y-%m-%d}",
        )

    if not p.profile.partial and amount_minor != p.captured_minor:
        add(
            Code.PARTIAL_REFUND_NOT_SUPPORTED,
            Field.AMOUNT,
            f"{p.profile.label} refunds only the full amount, {fmt(p.captured_minor)}",
        )

    limit = p.profile.max_refunds
    if limit is not None and p.refund_count >= limit:
        add(
            Code.MULTIPLE_REFUNDS_NOT_SUPPORTED,
            Field.PAYMENT,
            f"{p.profile.label} allows only {limit} refund per payment, and it has been made",
        )

    if merchant_balance_minor is not None and amount_minor > merchant_balance_minor:
        add(
            Code.MERCHANT_BALANCE_NOT_ENOUGH,
            Field.AMOUNT,
            "The merchant balance is too low for this refund",
        )
    return found


# ---------------------------------------------------------------- reasons


@dataclass(frozen=True, slots=True)
class Reason:
    """One entry of the managed reason list (the ``refund_reasons`` table)."""

    code: str
    label: str
    active: bool = True
    note_required: bool = False
    ticket_required: bool = False
    approval_required: bool = False
    max_percent: int | None = None  # share of the payment this reason may refund unapproved


# What a new desk starts with (migration 0002 and the tests' databases insert these);
# admins edit the list at /admin/reasons. The code is what a refund stores.
DEFAULT_REASONS: tuple[Reason, ...] = (
    Reason("customer_request", "Customer request"),
    Reason("duplicate_charge", "Duplicate charge"),
    Reason("item_not_received", "Item not received"),
    Reason("item_returned", "Item returned"),
    Reason("service_issue", "Service issue"),
    Reason("goodwill", "Goodwill gesture", note_required=True, max_percent=20),
    Reason("fraud_suspected", "Fraud suspected", note_required=True, approval_required=True),
    Reason("other", "Other", note_required=True),
)
# Refunds found at Antom that the desk did not issue (Antom Dashboard); never selectable.
EXTERNAL_REASON = "external"
EXTERNAL_REASON_TEXT = "Made outside the desk"
