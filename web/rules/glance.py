"""What a payment's status badge says at a glance: what, if anything, blocks a refund.

Pure (no database, no web): the payments list and the payment page's header show these
beside the payment's own status, so an agent sees *Chargeback*, *Not captured*, *Fully
refunded* or *Window closed* without opening the payment. The same facts decide the
refund form's messages (``web.rules.refunds.check_refund``); this only names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from web.rules.refunds import PaymentFacts

Tone = Literal["bad", "warn", "neutral", "info"]


@dataclass(frozen=True, slots=True)
class Blocker:
    key: str  # stable, for tests and CSS: chargeback, not_captured, ...
    label: str  # the badge's word(s)
    tone: Tone
    why: str  # the tooltip / screen-reader sentence


def refund_blockers(p: PaymentFacts, now: datetime) -> list[Blocker]:
    """Why no refund can be made on this payment now (empty: a refund is possible).

    A payment that has not succeeded says so with its own status badge; nothing more.
    """
    if not p.succeeded:
        return []
    found: list[Blocker] = []
    if p.dispute_open:
        found.append(
            Blocker(
                "chargeback",
                "Chargeback",
                "bad",
                "A chargeback is open: no refund until it is judged",
            )
        )
    if p.profile.needs_capture and p.captured_minor == 0:
        found.append(
            Blocker(
                "not_captured",
                "Not captured",
                "warn",
                "Authorised only: capture it before a refund",
            )
        )
    elif p.captured_minor > 0 and p.refundable_minor == 0:
        if p.in_flight_minor > 0:
            found.append(
                Blocker(
                    "in_flight",
                    "Refund processing",
                    "warn",
                    "Everything left is in refunds Antom has not settled yet",
                )
            )
        else:
            found.append(
                Blocker("fully_refunded", "Fully refunded", "neutral", "Nothing is left to refund")
            )
    elif p.profile.max_refunds is not None and p.refund_count >= p.profile.max_refunds:
        found.append(
            Blocker(
                "refund_made",
                "Refund made",
                "neutral",
                f"{p.profile.label} allows {p.profile.max_refunds} refund per payment",
            )
        )
    if now > p.window_deadline:
        found.append(
            Blocker(
                "window_closed",
                "Window closed",
                "neutral",
                f"The {p.profile.refund_window_days}-day refund window closed on "
                f"{p.window_deadline:%Y-%m-%d}",
            )
        )
    return found
