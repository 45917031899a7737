"""Worklists: the queues leads work through, and which queue each kind of item lands in.

A worklist item is an ``Alert`` row (web/models.py): the desk raises it once per subject
and kind (web/services/alerts.py ``raise_alert``), and only people act on it: assign it
to someone, comment on it, close it with a note of what was done, reopen it
(web/services/worklists.py). There is one concept, not two: what used to be "alerts"
are these items.

``QUEUE_OF_KIND`` is the one table from kinds to queues. It is keyed by the kind's
*value*, so a kind another part of the desk adds (``reversed``, a settlement mismatch)
slots in with one line here, and a kind missing from it still shows, in
``FALLBACK_QUEUE``: no item is ever lost from the lists.

Awaiting approval is the one *derived* queue: its members are the refunds whose status
is ``awaiting`` (read from the refunds, never stored twice), and deciding on one at
/approvals is what takes it out. A failed refund, by contrast, is an item the ledger
raises in the same transaction that fails the refund (web/services/ledger.py): the
refund stays failed for ever, but the follow-up is done once, when a lead closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Queue(StrEnum):
    FAILED = "failed"
    OVERDUE = "overdue"
    UNKNOWN = "unknown"
    APPROVAL = "approval"
    EXTERNAL = "external"
    REVERSED = "reversed"
    DISCREPANCY = "discrepancy"

    @property
    def label(self) -> str:
        return QUEUES[self].label

    @property
    def description(self) -> str:
        return QUEUES[self].description

    @property
    def derived(self) -> bool:
        return QUEUES[self].derived


@dataclass(frozen=True, slots=True)
class QueueInfo:
    label: str
    description: str
    # Derived: computed from refunds' status, not made of raised items.
    derived: bool = False


# In the order the page shows them.
QUEUES: dict[Queue, QueueInfo] = {
    Queue.FAILED: QueueInfo(
        "Failed refunds",
        "Refunds Antom failed: the money was released; someone tells the customer or "
        "refunds another way.",
    ),
    Queue.OVERDUE: QueueInfo(
        "Over SLA",
        "Refunds still unsettled after the time allowed for their payment method; the "
        "desk keeps asking Antom.",
    ),
    Queue.UNKNOWN: QueueInfo(
        "Unknown results",
        "Refunds whose outcome Antom has not made clear (its gateway did not process "
        "the request, or inquiries keep teaching nothing). The money stays held.",
    ),
    Queue.APPROVAL: QueueInfo(
        "Awaiting approval",
        "Refunds waiting for a second person. Deciding on one takes it off this list.",
        derived=True,
    ),
    Queue.EXTERNAL: QueueInfo(
        "External refunds",
        "Refunds made outside the desk (the Antom Dashboard), booked against their "
        "payment, or about a payment the desk does not know.",
    ),
    Queue.REVERSED: QueueInfo(
        "Reversed",
        "Refunds that succeeded and were reversed afterwards: the customer has not got the money.",
    ),
    Queue.DISCREPANCY: QueueInfo(
        "Discrepancies",
        "Antom and the desk disagree (amounts, contradicting results, settlement), or a "
        "notification was kept but could not be applied.",
    ),
}

# The one table: alert kind (its value) -> queue. Add a line for a new kind.
QUEUE_OF_KIND: dict[str, Queue] = {
    "refund_failed": Queue.FAILED,
    "stuck": Queue.OVERDUE,
    "unknown_result": Queue.UNKNOWN,
    "gateway_refused": Queue.UNKNOWN,
    "external_refund": Queue.EXTERNAL,
    "orphan_notification": Queue.EXTERNAL,
    "reversed": Queue.REVERSED,
    "mismatch": Queue.DISCREPANCY,
    "contradiction": Queue.DISCREPANCY,
    "unapplied_notification": Queue.DISCREPANCY,
    "reconcile": Queue.DISCREPANCY,  # the settlement report and the desk disagree
}
# Where a kind missing from the table lands.
FALLBACK_QUEUE = Queue.DISCREPANCY


def queue_of(kind: str) -> Queue:
    """The queue an item of ``kind`` (an AlertKind or its value) belongs to."""
    return QUEUE_OF_KIND.get(str(kind), FALLBACK_QUEUE)


def kinds_of(queue: Queue) -> list[str]:
    """The kinds the table sends to ``queue`` (the fallback queue also takes the rest)."""
    return sorted(kind for kind, q in QUEUE_OF_KIND.items() if q is queue)


def kind_label(kind: str) -> str:
    """``unknown_result`` -> ``Unknown result``."""
    return str(kind).replace("_", " ").capitalize()


# What a thread entry (web.models.AlertNote.kind) is.
class NoteKind(StrEnum):
    COMMENT = "comment"
    ASSIGN = "assign"
    CLOSE = "close"
    REOPEN = "reopen"


NOTE_MAX = 500
