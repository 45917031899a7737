"""What an answer from Antom means for a refund: the one outcome policy.

Every answer the desk gets about a refund — the refund call's response, an inquiry, a
``REFUND_RESULT`` notification, a transaction listed by ``inquiryPayment`` — is first
read into an ``Observation`` (one adapter per kind of answer, below), then ``decide``
turns it and the refund's stored facts into a ``Verdict``: the status to move to (if
any; its money effect comes from ``web/rules/lifecycle.py``), whether to retry, re-send
or ask again soon, and what a person must look at. Pure: no I/O, no clock.

The rules, in the order ``decide`` applies them:

1. **One amount rule.** An answer naming an amount other than the refund's is never
   booked: the refund is held (PENDING → PROCESSING) and a lead is alerted.
2. **Success** books the money, from any unsettled status.
3. **Unknown is never failed.** A *failure* releases the money only when it cannot
   follow a refund Antom executed: an inquiry that finds the refund FAILED, or the
   refund call's own F when no earlier attempt's outcome was unknown. A FAIL
   notification, a FAIL in ``inquiryPayment``'s transactions, or an F on a retry after
   an unknown attempt hold the money and ask ``inquiryRefund`` to confirm.
4. **Gateway refusals** (``INVALID_SIGNATURE``, ``KEY_NOT_FOUND``, …) mean the request
   was not processed, never that the refund failed: the money stays reserved, a lead is
   told to fix the configuration, and the poller re-sends with the same id once Antom
   confirms it has no such refund.
5. **Unknown answers** (timeout, 5xx, ``U``, untrusted) hold the money and mark the
   refund's outcome unknown; the refund call retries with the same id. Inquiries that
   keep teaching nothing are counted and, past a limit, raised to a lead.
6. **Final is final.** A final status never moves; an answer contradicting it is raised.
   A request awaiting approval was never sent: no answer moves it either. A *reversed*
   refund (moved only by the settlement report) stays reversed: Antom's SUCCESS about it
   agrees, a FAIL or "no such refund" is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from web.antom.messages import (
    Answer,
    InquiryRefundResult,
    PaymentTransaction,
    RefundCallResult,
    explain_code,
)
from web.antom.money import Money
from web.antom.notifications import Notification
from web.models import AlertKind, RefundStatus
from web.rules.lifecycle import Effect, effect_of

# Codes after which an immediate same-id retry cannot help: an inquiry must settle them.
NO_RETRY_CODES = frozenset({"REPEAT_REQ_INCONSISTENT"})
# Inquiries in a row that taught nothing before a lead is asked to look.
DEFAULT_UNKNOWN_LIMIT = 10


class Kind(StrEnum):
    """Which kind of answer an observation was read from."""

    CALL = "call"  # the refund call's response (first send, retries, re-sends)
    INQUIRY = "inquiry"  # inquiryRefund
    NOTIFICATION = "notification"  # REFUND_RESULT
    TRANSACTION = "transaction"  # a REFUND entry of inquiryPayment's transactions


@dataclass(frozen=True, slots=True)
class Observation:
    """One answer from Antom about one refund, whatever it came from."""

    kind: Kind
    answer: Answer
    status: str | None = None  # refundStatus / transactionStatus, where the answer has one
    code: str | None = None
    message: str | None = None
    error: str | None = None
    amount: Money | None = None
    refund_id: str | None = None
    refund_time: str | None = None
    rate_limited: bool = False
    acquirer_reference_no: str | None = None
    acquirer_info: dict[str, Any] | None = None

    @classmethod
    def of_call(cls, result: RefundCallResult | None, error: str | None = None) -> Observation:
        """The refund call's answer; ``None`` when the call raised before any answer."""
        if result is None:
            return cls(Kind.CALL, Answer.UNKNOWN, error=error or "no answer")
        return cls(
            Kind.CALL,
            result.answer,
            code=result.result_code,
            message=result.result_message,
            error=result.error,
            amount=result.refund_amount,
            refund_id=result.refund_id,
            refund_time=result.refund_time,
            rate_limited=result.rate_limited,
            acquirer_reference_no=result.acquirer_reference_no,
            acquirer_info=result.acquirer_info,
        )

    @classmethod
    def of_inquiry(cls, result: InquiryRefundResult) -> Observation:
        return cls(
            Kind.INQUIRY,
            result.answer,
            status=result.refund_status,
            code=result.result_code,
            message=result.result_message,
            error=result.error,
            amount=result.refund_amount if result.found else None,
            refund_id=result.refund_id,
            refund_time=result.refund_time,
            rate_limited=result.rate_limited,
        )

    @classmethod
    def of_notification(cls, n: Notification) -> Observation:
        return cls._reported(
            Kind.NOTIFICATION,
            n.status,
            code=n.result_code,
            message=n.result_message,
            amount=n.amount,
            refund_id=n.refund_id,
            refund_time=_text(n.body.get("refundTime")),
        )

    @classmethod
    def of_transaction(cls, tx: PaymentTransaction) -> Observation:
        return cls._reported(
            Kind.TRANSACTION,
            tx.status,
            code=tx.result_code,
            amount=tx.amount,
            refund_id=tx.transaction_id,
            refund_time=tx.time,
        )

    @classmethod
    def _reported(cls, kind: Kind, status: str | None, **fields: Any) -> Observation:
        """A refund status Antom reports on its own (SUCCESS / FAIL / PROCESSING)."""
        return cls(kind, _STATUS_ANSWERS.get(status or "", Answer.UNKNOWN), status=status, **fields)

    def said(self) -> str:
        """What Antom said, in a few words, for the timeline."""
        return self.status or self.code or self.error or self.answer.value


# refundStatus / transactionStatus values, as notifications and inquiryPayment give them.
_STATUS_ANSWERS = {"SUCCESS": Answer.SUCCESS, "FAIL": Answer.FAIL, "PROCESSING": Answer.IN_PROCESS}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class RefundFacts:
    """What the policy needs to know about the stored refund."""

    status: RefundStatus
    amount: Money
    outcome_unknown: bool = False
    unknown_inquiries: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do about one observation. ``label`` names the case (logs, metrics, the
    poller's and the webhook's outcome); ``summary`` is the timeline's sentence."""

    label: str
    summary: str
    to: RefundStatus | None = None  # the status to move to; None: it stays
    effect: Effect | None = None  # what that move does to the money
    outcome_unknown: bool | None = None  # the refund's flag afterwards (None: unchanged)
    unknown_inquiries: int | None = None  # the counter afterwards (None: unchanged)
    check_soon: bool = False  # ask Antom again promptly (a failure to confirm)
    retry: bool = False  # the refund call: try again now with the same id
    resend: bool = False  # Antom has no such refund: send it again with the same id
    alert: AlertKind | None = None
    alert_message: str = ""

    @property
    def settles(self) -> bool:
        return self.to is not None and self.to.final


def decide(
    facts: RefundFacts, seen: Observation, *, unknown_limit: int = DEFAULT_UNKNOWN_LIMIT
) -> Verdict:
    """The one answer to "what does this mean for this refund?" (see the module doc)."""
    current = facts.status
    if seen.kind is Kind.INQUIRY and seen.rate_limited:
        return Verdict("rate_limited", "Antom asked the desk to slow down")
    if current is RefundStatus.AWAITING_APPROVAL:
        return _never_sent(facts, seen)

    if (
        seen.answer in (Answer.SUCCESS, Answer.FAIL, Answer.IN_PROCESS)
        and seen.amount is not None
        and seen.amount != facts.amount
    ):
        return _hold(
            facts,
            "mismatch",
            f"Antom reports {seen.amount}, the desk recorded {facts.amount}: needs review",
            alert=AlertKind.MISMATCH,
        )

    match seen.answer:
        case Answer.SUCCESS:
            if current.final:
                return _final_vs(facts, seen, RefundStatus.SUCCEEDED)
            return _move(
                facts, RefundStatus.SUCCEEDED, "succeeded", f"Antom refunded {facts.amount}"
            )
        case Answer.FAIL:
            if current.final:
                return _final_vs(facts, seen, RefundStatus.FAILED)
            confirmed = seen.kind is Kind.INQUIRY or (
                seen.kind is Kind.CALL and not facts.outcome_unknown
            )
            if confirmed:
                # An inquiry's result code is the inquiry's own ("SUCCESS": it was
                # answered), not the refund's: only the refund call's code says why.
                why = (
                    f"Antom refused the refund: {explain_code(seen.code)}"
                    if seen.kind is Kind.CALL
                    else f"Antom confirms the refund failed ({seen.kind.value})"
                )
                return _move(facts, RefundStatus.FAILED, "failed", why)
            why = (
                "an earlier attempt's outcome is unknown"
                if seen.kind is Kind.CALL
                else "only inquiryRefund may confirm a failure"
            )
            return _hold(
                facts,
                "confirming",
                f"Antom answered {seen.said()} but {why}: the money stays reserved "
                "until inquiryRefund confirms it",
                check_soon=True,
            )
        case Answer.IN_PROCESS:
            if current.final:
                return Verdict("stale", f"Antom says {seen.said()}; the refund is already final")
            return _hold(
                facts,
                "processing",
                f"Antom is processing the refund ({seen.said()})",
                unknown_inquiries=0 if seen.kind is Kind.INQUIRY else None,
            )
        case Answer.ABSENT:
            if current in (RefundStatus.SUCCEEDED, RefundStatus.REVERSED):
                return _contradiction(facts, seen)
            if current.final:
                return Verdict("stale", "Antom has no record of this refund; it is already final")
            return _hold(
                facts,
                "resend",
                "Antom has no record of this refund: it is sent again with the same id",
                outcome_unknown=False,
                unknown_inquiries=0,
                resend=True,
            )
        case Answer.NOT_PROCESSED if seen.kind is Kind.CALL:
            return _hold(
                facts,
                "not_processed",
                f"Antom's gateway did not process the request: {explain_code(seen.code)} "
                "The money stays reserved until Antom confirms what happened",
                alert=AlertKind.GATEWAY_REFUSED,
                alert_message=(
                    f"Antom refused the desk's request ({seen.code}): {explain_code(seen.code)}"
                ),
            )
        case _:
            return _unknown(facts, seen, unknown_limit)


def _unknown(facts: RefundFacts, seen: Observation, unknown_limit: int) -> Verdict:
    if facts.status.final:
        return Verdict("stale", f"Antom answered {seen.said()}; the refund is already final")
    if seen.kind is Kind.CALL:
        return _hold(
            facts,
            "unknown",
            f"The outcome is unknown ({seen.said()}): the money stays reserved",
            outcome_unknown=True,
            retry=seen.code not in NO_RETRY_CODES,
        )
    if seen.kind is Kind.INQUIRY:
        count = facts.unknown_inquiries + 1
        stuck = count >= unknown_limit
        return _hold(
            facts,
            "unknown",
            f"Antom's inquiry answered {seen.said()}: nothing learnt ({count} in a row)",
            unknown_inquiries=count,
            alert=AlertKind.UNKNOWN_RESULT if stuck else None,
            alert_message=(
                f"{count} inquiries in a row taught nothing about this refund "
                f"(last: {seen.said()}); check it with Antom"
            ),
        )
    return Verdict("ignored", f"Antom sent {seen.said()}, which says nothing about the outcome")


def _move(facts: RefundFacts, to: RefundStatus, label: str, summary: str) -> Verdict:
    return Verdict(
        label,
        summary,
        to=to,
        effect=effect_of(facts.status, to),
        unknown_inquiries=0 if to.final else None,
    )


def _hold(
    facts: RefundFacts,
    label: str,
    summary: str,
    *,
    alert: AlertKind | None = None,
    alert_message: str = "",
    **flags: Any,
) -> Verdict:
    """Keep the money reserved: PENDING moves to PROCESSING, PROCESSING stays."""
    to = RefundStatus.PROCESSING if facts.status is RefundStatus.PENDING else None
    return Verdict(
        label,
        summary,
        to=to,
        effect=effect_of(facts.status, to) if to else None,
        alert=alert,
        alert_message=alert_message or summary,
        **flags,
    )


def _final_vs(facts: RefundFacts, seen: Observation, says: RefundStatus) -> Verdict:
    # A rejected request was never sent: Antom failing it agrees (no money moved). A
    # reversed refund did succeed, and Antom goes on saying so after the reversal.
    agrees = (
        facts.status is says
        or (facts.status is RefundStatus.REJECTED and says is RefundStatus.FAILED)
        or (facts.status is RefundStatus.REVERSED and says is RefundStatus.SUCCEEDED)
    )
    if agrees:
        return Verdict("stale", f"Antom confirms {seen.said()}; already recorded")
    return _contradiction(facts, seen)


def _never_sent(facts: RefundFacts, seen: Observation) -> Verdict:
    """A request awaiting approval has never been sent: no answer may move it (only a
    person's decision does). Antom claiming to have it is raised to a lead."""
    if seen.answer in (Answer.SUCCESS, Answer.FAIL, Answer.IN_PROCESS):
        message = (
            f"Antom says {seen.said()} ({seen.kind.value}) for a refund the desk has not "
            "sent: it is awaiting approval"
        )
        return Verdict(
            "contradiction", message, alert=AlertKind.CONTRADICTION, alert_message=message
        )
    return Verdict("ignored", f"Antom answered {seen.said()}; the refund awaits approval")


def _contradiction(facts: RefundFacts, seen: Observation) -> Verdict:
    message = (
        f"Antom says {seen.said()} ({seen.kind.value}) for a refund the desk holds as "
        f"{facts.status.value}"
    )
    return Verdict("contradiction", message, alert=AlertKind.CONTRADICTION, alert_message=message)
