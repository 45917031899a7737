"""Worklist membership by kind: the one table sends every kind somewhere, new kinds
slot in, unknown ones are never lost."""

from __future__ import annotations

from web.models import AlertKind
from web.rules.worklists import (
    FALLBACK_QUEUE,
    QUEUE_OF_KIND,
    QUEUES,
    Queue,
    kinds_of,
    queue_of,
)


def test_every_alert_kind_has_a_raised_queue() -> None:
    for kind in AlertKind:
        assert kind.value in QUEUE_OF_KIND, f"{kind} is missing from the table"
        assert not queue_of(kind).derived  # raised items never land in a derived queue


def test_the_issue_s_queues_get_their_kinds() -> None:
    assert queue_of(AlertKind.REFUND_FAILED) is Queue.FAILED
    assert queue_of(AlertKind.STUCK) is Queue.OVERDUE
    assert queue_of(AlertKind.UNKNOWN_RESULT) is Queue.UNKNOWN
    assert queue_of(AlertKind.GATEWAY_REFUSED) is Queue.UNKNOWN
    assert queue_of(AlertKind.EXTERNAL_REFUND) is Queue.EXTERNAL
    assert queue_of(AlertKind.ORPHAN_NOTIFICATION) is Queue.EXTERNAL
    assert queue_of(AlertKind.MISMATCH) is Queue.DISCREPANCY
    assert kinds_of(Queue.APPROVAL) == []  # derived from refunds awaiting approval
    assert Queue.APPROVAL.derived


def test_a_kind_added_elsewhere_slots_in_by_value_and_an_unknown_one_is_kept() -> None:
    assert queue_of("reversed") is Queue.REVERSED  # AlertKind.REVERSED, when it exists
    assert queue_of("settlement_mismatch") is FALLBACK_QUEUE is Queue.DISCREPANCY


def test_every_queue_is_described_in_page_order() -> None:
    assert list(QUEUES) == list(Queue)
    assert all(q.label and q.description for q in Queue)
