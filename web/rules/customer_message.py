"""The message an agent pastes to the customer about a refund: plain language, no jargon.

Pure: plain values in, text out. ``METHOD_TIMING`` is the one table of how long each
payment method typically takes to put the money back (from the methods' own refund
pages, as Antom relays them); every method in ``web.rules.refunds.METHOD_PROFILES`` has a
row, and an unknown method gets the cautious ``DEFAULT_TIMING``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timing:
    """How a method's refunds reach the customer."""

    # Where the money goes back to, as the customer knows it.
    destination: str
    # How long after the refund succeeds the customer typically sees it.
    typical: str


METHOD_TIMING: dict[str, Timing] = {
    "CARD": Timing("the card you paid with", "5 to 10 business days, depending on your bank"),
    "ALIPAY_CN": Timing("your Alipay account", "a few minutes, and at most 1 business day"),
    "ALIPAY_HK": Timing("your AlipayHK wallet", "a few minutes, and at most 1 business day"),
    "GCASH": Timing("your GCash wallet", "1 to 3 business days"),
    "DANA": Timing("your DANA wallet", "1 to 3 business days"),
    "KAKAOPAY": Timing("your KakaoPay account", "a few minutes, and at most 1 business day"),
    "TRUEMONEY": Timing("your TrueMoney wallet", "1 to 3 business days"),
}
DEFAULT_TIMING = Timing("the account you paid with", "up to 10 business days")


def timing(method: str) -> Timing:
    return METHOD_TIMING.get(method, DEFAULT_TIMING)


def customer_message(*, amount: str, status: str, method: str, reference: str | None = None) -> str:
    """The text for a refund of ``amount`` (already formatted with its currency, such as
    ``$12.50`` or ``¥1,000``) in ``status`` (a refund status value, "reversed" included)
    by ``method``; ``reference`` is the trace number the customer's bank or wallet knows
    the refund by, when there is one."""
    t = timing(method)
    ref = (
        f" If you ask your bank or wallet about it, the refund's reference is {reference}."
        if reference
        else ""
    )
    if status in ("awaiting", "pending", "processing"):
        check = " It needs a quick check by our team first." if status == "awaiting" else ""
        return (
            f"We have started a refund of {amount} to {t.destination}.{check} "
            f"Once it is complete, the money usually arrives within {t.typical}. "
            f"We will let you know if anything changes.{ref}"
        )
    if status == "succeeded":
        return (
            f"Your refund of {amount} is complete: it has been sent back to {t.destination}. "
            f"It usually shows up within {t.typical}. If you do not see it by then, "
            f"please reply to this message.{ref}"
        )
    if status == "reversed":
        return (
            f"Your refund of {amount} was returned to us by the payment provider, so it has "
            f"not reached {t.destination}. We are looking into it and will contact you "
            f"about another way to get your money back.{ref}"
        )
    if status == "failed":
        return (
            f"We tried to refund {amount} to {t.destination}, but the payment provider "
            f"could not complete it. No money has left your account and nothing was "
            f"charged again. We will contact you about another way to refund you."
        )
    if status == "rejected":
        return (
            f"We were not able to issue the refund of {amount} we discussed. "
            f"Please reply to this message and we will explain the next steps."
        )
    return f"Your refund of {amount} is being handled. We will let you know when it is done."
