"""A refund's life: the statuses it may move between and what each move does to money.

Pure data. ``web/ledger.py`` is the only code that applies a move and it refuses any
move this table does not list; ``web/rules/outcomes.py`` decides which move an answer
from Antom asks for. New states (approvals, reversals) are added here first.
"""

from __future__ import annotations

from enum import StrEnum

from web.models import RefundStatus


class Effect(StrEnum):
    """What a move does to the payment's books."""

    HOLD = "hold"  # the amount stays reserved: nobody else can refund it
    BOOK = "book"  # reserved → refunded: the money has left
    RELEASE = "release"  # reserved → refundable again; the refund stops counting
    KEEP = "keep"  # nothing moves: the amount stays refunded, so it is not refundable again
    UNBOOK = "unbook"  # refunded → refundable again; the refund stops counting


A, P, S, F, R = (
    RefundStatus.AWAITING_APPROVAL,
    RefundStatus.PROCESSING,
    RefundStatus.SUCCEEDED,
    RefundStatus.FAILED,
    RefundStatus.REJECTED,
)

# from → {to: effect}. Forward only; a final status never moves on Antom's answers (a
# contradiction is raised to a person instead, ``web/rules/outcomes.py``), the one
# exception being SUCCEEDED → REVERSED, which only the settlement report moves.
# AWAITING_APPROVAL moves only by a person's decision (or expiry): Antom has never seen
# it, so no answer can move it.
TRANSITIONS: dict[RefundStatus, dict[RefundStatus, Effect]] = {
    RefundStatus.AWAITING_APPROVAL: {RefundStatus.PENDING: Effect.HOLD, R: Effect.RELEASE},
    RefundStatus.PENDING: {P: Effect.HOLD, S: Effect.BOOK, F: Effect.RELEASE},
    RefundStatus.PROCESSING: {S: Effect.BOOK, F: Effect.RELEASE},
    # Antom's settlement report says the refund was reversed (never an API answer: inquiry
    # still says SUCCESS). The money came back to the merchant, but the desk does not make
    # it refundable again by itself: that is a lead's decision (RELEASES below).
    RefundStatus.SUCCEEDED: {RefundStatus.REVERSED: Effect.KEEP},
    RefundStatus.FAILED: {},
    RefundStatus.REJECTED: {},
    RefundStatus.REVERSED: {},
}

# A person's decision that changes a refund's money but not its status: a lead makes a
# reversed refund's amount refundable again (once; the ledger records who and why).
RELEASES: dict[RefundStatus, Effect] = {RefundStatus.REVERSED: Effect.UNBOOK}

# A refund is written ahead in one of these, its amount reserved: PENDING when it may be
# sent at once, AWAITING_APPROVAL when a second person must approve it first.
INITIAL = RefundStatus.PENDING
INITIAL_STATES = (RefundStatus.PENDING, RefundStatus.AWAITING_APPROVAL)
UNSETTLED = tuple(status for status in TRANSITIONS if not status.final)
# Unsettled refunds Antom may know about: what the poller and the reconciler look at.
SENT_OR_SENDING = tuple(s for s in UNSETTLED if s is not RefundStatus.AWAITING_APPROVAL)
# Refunds that count against caps and limits: everything not released.
COUNTING = tuple(s for s in RefundStatus if s not in (RefundStatus.FAILED, RefundStatus.REJECTED))


def effect_of(current: RefundStatus, target: RefundStatus) -> Effect | None:
    """The money effect of moving ``current`` → ``target``; None when that is no move."""
    return TRANSITIONS[current].get(target)


def release_effect(current: RefundStatus) -> Effect | None:
    """The money effect of a lead releasing a refund in ``current``; None when none may."""
    return RELEASES.get(current)


def predecessors(target: RefundStatus) -> tuple[RefundStatus, ...]:
    """The statuses a refund may be in to move to ``target``."""
    return tuple(status for status, moves in TRANSITIONS.items() if target in moves)
