"""A failed refund in the agent's words: what Antom said, and what to do next.

Pure. ``web.antom.messages.explain_code`` says what a result code means; this adds the
next step for the person at the desk, and whether refunding again can help. Refunding
again is always a *new* refund (a new refundRequestId) that a person starts — the desk
never retries a confirmed failure by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from web.antom.messages import explain_code


@dataclass(frozen=True, slots=True)
class FailureAdvice:
    said: str  # what Antom said, in plain words
    next_step: str  # what the agent should do now
    again_may_help: bool  # offer "Refund again" prominently


# Codes a confirmed failure can carry, with the next step. Unknown codes fall back to
# "check with a lead": the desk does not guess.
_NEXT_STEPS: dict[str, tuple[str, bool]] = {
    "PROCESS_FAIL": (
        "Ask a team lead to raise it with Antom support; refund again only once they "
        "know why it failed (the buyer's account may be closed or limited).",
        False,
    ),
    "MERCHANT_BALANCE_NOT_ENOUGH": (
        "Ask finance to top up the Antom balance, then refund again.",
        True,
    ),
    "RISK_REJECT": (
        "Do not refund again now: ask a team lead to check the payment with Antom.",
        False,
    ),
    "REFUND_WINDOW_EXCEED": (
        "Antom can no longer refund this payment: offer the buyer another way "
        "(store credit or a bank transfer), as your team's policy says.",
        False,
    ),
    "REFUND_AMOUNT_EXCEED": (
        "Another refund took part of the money meanwhile: check what is still "
        "refundable, then refund again for at most that.",
        True,
    ),
    "PARTIAL_REFUND_NOT_SUPPORTED": (
        "This method refunds only the whole amount: refund again for the full amount, "
        "or offer the buyer another way.",
        True,
    ),
    "MULTIPLE_REFUNDS_NOT_SUPPORTED": (
        "This method allows one refund and it has been made: offer the buyer another way.",
        False,
    ),
    "ORDER_STATUS_INVALID": (
        "The payment cannot be refunded in its current state (not captured, or a "
        "chargeback is open): wait until that changes, then refund again.",
        True,
    ),
    "ORDER_IS_CANCELED": ("The payment was cancelled: there is nothing to refund.", False),
    "CURRENCY_NOT_SUPPORT": (
        "Refund again in the payment's own currency (the form always uses it).",
        True,
    ),
    "PARAM_ILLEGAL": (
        "Antom refused the request itself: ask a team lead before refunding again.",
        False,
    ),
    "ACCESS_DENIED": ("Ask a team lead: the merchant account needs Antom support.", False),
    "INVALID_CONTRACT": ("Ask a team lead: the merchant account needs Antom support.", False),
    "INVALID_MERCHANT_STATUS": (
        "Ask a team lead: the merchant account needs Antom support.",
        False,
    ),
    "SYSTEM_ERROR": (
        "Antom had a fault: wait a few minutes, then refund again.",
        True,
    ),
}
_DEFAULT = ("Ask a team lead what to do before refunding again.", False)


def advice(result_code: str | None, result_message: str | None = None) -> FailureAdvice:
    """What to tell the agent about a refund that failed with ``result_code``."""
    said = explain_code(result_code) if result_code else "Antom reported the refund failed."
    if result_code and result_code not in _NEXT_STEPS and result_message:
        # An unfamiliar code: Antom's own words say more than "Antom returned X".
        said = f"{said} Antom's message: “{result_message}”."
    next_step, again = _NEXT_STEPS.get(result_code or "", _DEFAULT)
    return FailureAdvice(said=said, next_step=next_step, again_may_help=again)
