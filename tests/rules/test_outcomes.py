"""The outcome policy as a pure function, checked over every (status, answer) pair: the
table in README "The rule for unknown answers", and the properties behind it."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from web.antom.messages import Answer
from web.antom.money import Money
from web.models import AlertKind, RefundStatus
from web.rules.lifecycle import TRANSITIONS, Effect, effect_of
from web.rules.outcomes import Kind, Observation, RefundFacts, decide

ASKED = Money(2_000, "USD")
P, S, F = RefundStatus.PROCESSING, RefundStatus.SUCCEEDED, RefundStatus.FAILED

facts = st.builds(
    RefundFacts,
    status=st.sampled_from(list(RefundStatus)),
    amount=st.just(ASKED),
    outcome_unknown=st.booleans(),
    unknown_inquiries=st.integers(0, 20),
)
observations = st.builds(
    Observation,
    kind=st.sampled_from(list(Kind)),
    answer=st.sampled_from(list(Answer)),
    code=st.sampled_from(
        [None, "SUCCESS", "PROCESS_FAIL", "INVALID_SIGNATURE", "UNKNOWN_EXCEPTION"]
    ),
    amount=st.sampled_from([None, ASKED, Money(1_999, "USD"), Money(2_000, "EUR")]),
    rate_limited=st.booleans(),
)


def released(before: RefundFacts, seen: Observation) -> bool:
    verdict = decide(before, seen)
    return verdict.effect is Effect.RELEASE


@given(facts, observations)
def test_moves_only_along_the_transition_table(before: RefundFacts, seen: Observation) -> None:
    verdict = decide(before, seen)
    if verdict.to is not None:
        assert verdict.to in TRANSITIONS[before.status]
        assert verdict.effect is effect_of(before.status, verdict.to)
    if before.status.final:
        assert verdict.to is None  # final is final


@given(facts, observations)
def test_money_is_released_only_on_a_failure_that_cannot_follow_an_executed_refund(
    before: RefundFacts, seen: Observation
) -> None:
    if released(before, seen):
        assert seen.answer is Answer.FAIL
        assert seen.kind is Kind.INQUIRY or (seen.kind is Kind.CALL and not before.outcome_unknown)
        assert seen.amount in (None, ASKED)


@given(facts, observations)
def test_a_different_amount_is_never_booked_or_released(
    before: RefundFacts, seen: Observation
) -> None:
    if seen.amount is not None and seen.amount != ASKED:
        verdict = decide(before, seen)
        assert verdict.effect in (None, Effect.HOLD)


@given(facts, observations)
def test_the_same_answer_twice_moves_at_most_once(before: RefundFacts, seen: Observation) -> None:
    first = decide(before, seen)
    after = dataclasses.replace(
        before,
        status=first.to or before.status,
        outcome_unknown=(
            first.outcome_unknown if first.outcome_unknown is not None else before.outcome_unknown
        ),
    )
    second = decide(after, seen)
    if first.to is not None and first.to.final:
        assert second.to is None


@pytest.mark.parametrize(
    ("status", "kind", "answer", "unknown_before", "to", "effect", "alert"),
    [
        (P, Kind.CALL, Answer.SUCCESS, False, S, Effect.BOOK, None),
        (RefundStatus.PENDING, Kind.CALL, Answer.FAIL, False, F, Effect.RELEASE, None),
        (P, Kind.CALL, Answer.FAIL, True, None, None, None),  # defect 1: confirm first
        (P, Kind.NOTIFICATION, Answer.FAIL, False, None, None, None),
        (P, Kind.TRANSACTION, Answer.FAIL, False, None, None, None),
        (P, Kind.INQUIRY, Answer.FAIL, True, F, Effect.RELEASE, None),
        (
            RefundStatus.PENDING,
            Kind.CALL,
            Answer.NOT_PROCESSED,
            False,
            P,
            Effect.HOLD,
            AlertKind.GATEWAY_REFUSED,
        ),
        (RefundStatus.PENDING, Kind.CALL, Answer.UNKNOWN, False, P, Effect.HOLD, None),
        (S, Kind.NOTIFICATION, Answer.FAIL, False, None, None, AlertKind.CONTRADICTION),
        (S, Kind.INQUIRY, Answer.ABSENT, False, None, None, AlertKind.CONTRADICTION),
    ],
)
def test_the_table(
    status: RefundStatus,
    kind: Kind,
    answer: Answer,
    unknown_before: bool,
    to: RefundStatus | None,
    effect: Effect | None,
    alert: AlertKind | None,
) -> None:
    verdict = decide(RefundFacts(status, ASKED, unknown_before), Observation(kind, answer))
    assert (verdict.to, verdict.effect, verdict.alert) == (to, effect, alert)


@given(facts, observations)
def test_no_answer_moves_a_request_awaiting_approval(
    before: RefundFacts, seen: Observation
) -> None:
    """Antom has never seen it: only a person's decision moves it."""
    awaiting = dataclasses.replace(before, status=RefundStatus.AWAITING_APPROVAL)
    verdict = decide(awaiting, seen)
    assert verdict.to is None and verdict.effect is None
    assert not verdict.retry and not verdict.resend


@pytest.mark.parametrize("answer", [Answer.SUCCESS, Answer.IN_PROCESS, Answer.FAIL])
def test_antom_claiming_a_refund_the_desk_never_sent_is_raised(answer: Answer) -> None:
    verdict = decide(
        RefundFacts(RefundStatus.AWAITING_APPROVAL, ASKED), Observation(Kind.INQUIRY, answer)
    )
    assert verdict.alert is AlertKind.CONTRADICTION


def test_a_failure_confirmed_by_inquiry_does_not_quote_the_inquiry_s_own_code() -> None:
    """The inquiry's result code is "SUCCESS" (the inquiry was answered): the timeline
    once read "Antom refused the refund: The refund succeeded."."""
    seen = Observation(Kind.INQUIRY, Answer.FAIL, code="SUCCESS")
    verdict = decide(RefundFacts(P, ASKED, True), seen)
    assert verdict.to is F
    assert "succeeded" not in verdict.summary.lower()
    assert "failed" in verdict.summary


def test_antom_failing_a_rejected_request_agrees_with_it() -> None:
    seen = Observation(Kind.INQUIRY, Answer.FAIL)
    verdict = decide(RefundFacts(RefundStatus.REJECTED, ASKED), seen)
    assert verdict.to is None and verdict.alert is None


def test_a_failure_to_confirm_asks_antom_again_soon() -> None:
    verdict = decide(RefundFacts(P, ASKED), Observation(Kind.NOTIFICATION, Answer.FAIL))
    assert verdict.check_soon and verdict.label == "confirming"


def test_an_unknown_call_is_retried_and_marks_the_outcome_unknown() -> None:
    verdict = decide(
        RefundFacts(RefundStatus.PENDING, ASKED), Observation(Kind.CALL, Answer.UNKNOWN)
    )
    assert verdict.retry and verdict.outcome_unknown is True
    inconsistent = Observation(Kind.CALL, Answer.UNKNOWN, code="REPEAT_REQ_INCONSISTENT")
    assert not decide(RefundFacts(P, ASKED), inconsistent).retry  # an inquiry must settle it


def test_absent_clears_the_unknown_mark_and_asks_for_a_re_send() -> None:
    verdict = decide(RefundFacts(P, ASKED, True, 4), Observation(Kind.INQUIRY, Answer.ABSENT))
    assert verdict.resend and verdict.outcome_unknown is False and verdict.unknown_inquiries == 0


@pytest.mark.parametrize("before", [0, 8, 9])
def test_unknown_inquiries_are_counted_and_raised_at_the_limit(before: int) -> None:
    verdict = decide(
        RefundFacts(P, ASKED, unknown_inquiries=before),
        Observation(Kind.INQUIRY, Answer.UNKNOWN),
        unknown_limit=10,
    )
    assert verdict.to is None and verdict.unknown_inquiries == before + 1
    assert verdict.alert == (AlertKind.UNKNOWN_RESULT if before + 1 >= 10 else None)


@given(seen=observations)
def test_no_answer_moves_a_reversed_refund(seen: Observation) -> None:
    verdict = decide(RefundFacts(RefundStatus.REVERSED, ASKED), seen)
    assert verdict.to is None and verdict.effect is None


def test_antom_still_saying_success_after_a_reversal_agrees() -> None:
    verdict = decide(
        RefundFacts(RefundStatus.REVERSED, ASKED),
        Observation(Kind.INQUIRY, Answer.SUCCESS, amount=ASKED),
    )
    assert (verdict.label, verdict.alert) == ("stale", None)


@pytest.mark.parametrize("answer", [Answer.FAIL, Answer.ABSENT])
def test_antom_denying_a_reversed_refund_is_raised(answer: Answer) -> None:
    verdict = decide(RefundFacts(RefundStatus.REVERSED, ASKED), Observation(Kind.INQUIRY, answer))
    assert verdict.alert is AlertKind.CONTRADICTION and verdict.to is None
