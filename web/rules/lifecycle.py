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


P, S, F = RefundStatus.PROCESSING, RefundStatus.SUCCEEDED, RefundStatus.FAILED

# from → {to: effect}. Forward only; a final status never moves (a contradiction is
# raised to a person instead, ``web/rules/outcomes.py``).
TRANSITIONS: dict[RefundStatus, dict[RefundStatus, Effect]] = {
    RefundStatus.PENDING: {P: Effect.HOLD, S: Effect.BOOK, F: Effect.RELEASE},
    RefundStatus.PROCESSING: {S: Effect.BOOK, F: Effect.RELEASE},
    RefundStatus.SUCCEEDED: {},
    RefundStatus.FAILED: {},
}

# A refund is written ahead in this status, its amount reserved.
INITIAL = RefundStatus.PENDING
UNSETTLED = tuple(status for status, moves in TRANSITIONS.items() if moves)


def effect_of(current: RefundStatus, target: RefundStatus) -> Effect | None:
    """The money effect of moving ``current`` → ``target``; None when that is no move."""
    return TRANSITIONS[current].get(target)


def predecessors(target: RefundStatus) -> tuple[RefundStatus, ...]:
    """The statuses a refund may be in to move to ``target``."""
    return tuple(status for status, moves in TRANSITIONS.items() if target in moves)
