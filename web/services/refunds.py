"""Refunds an agent asks for: the form, the request, and the submit that sends it.

No web framework here. The life of a desk refund (reliability notes §1.2):

1. ``new_form`` renders a draft with two hidden tokens: ``form_token`` (unique per
   rendered form, so a repeated submit finds the refund it already made) and
   ``refundable_token`` (the refundable amount and refund count the agent saw).
2. *Request* (``request_refund``): re-validate with the same rules as the live form,
   then in ONE short transaction reserve the amount and write the refund, PENDING, with
   a fresh ``refund_request_id`` (``web.ledger.open_refund``), and commit.
3. *Send* (``web.services.sending.send``): call Antom with no transaction open, from
   the committed row, retrying an unknown answer with the SAME ``refund_request_id``;
   each answer is recorded by the ledger as the outcome policy decides.

``submit_refund`` is request + send. A refund whose outcome is unknown stays PROCESSING
with its money reserved; it is never failed by a timeout and never sent again under a
new id. A new attempt after a confirmed failure is a new refund, made by a person.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.client import AntomClient
from web.antom.messages import RefundRequest, explain_code
from web.antom.money import Money, MoneyError, format_minor, format_plain, parse_amount
from web.faults import fault_point
from web.models import EventSource, Payment, Refund, RefundStatus, User, utcnow
from web.rules import refunds as rules
from web.rules.access import Permission, can
from web.rules.caps import approval_needed
from web.rules.refunds import Reason
from web.services import audit, ledger, limits
from web.services.reasons import catalogue
from web.services.sending import RETRY_DELAYS_S, refund_request_for, send

log = logging.getLogger(__name__)

NOTE_MIN_REQUIRED = 5  # when the reason requires a note
NOTE_MAX = 256  # Refund.note
TICKET_MAX = 64  # Refund.ticket_ref
# A request awaiting approval that nobody decides is rejected after this (its money
# released); REFUND_DESK_APPROVAL_EXPIRY_HOURS sets it for the app.
DEFAULT_APPROVAL_TTL = timedelta(hours=72)
EMPTY_AMOUNT = "Enter an amount"  # web.antom.money.parse_amount's message for a blank field

# A write-ahead row left PENDING (the process died before recording an answer) is picked
# up by the poller after the in-request attempts could have finished.
PENDING_RECHECK = timedelta(minutes=2)

_TOKEN_PREFIX = "r1"  # noqa: S105 - a format tag, not a secret


# ---------------------------------------------------------------- form


@dataclass(frozen=True)
class RefundDraft:
    """What the refund form holds; every field is a string, as posted."""

    amount_text: str
    currency: str
    reason: str
    note: str
    form_token: str  # unique per rendered form (double-submit guard)
    refundable_token: str  # opaque: the refundable state the form was rendered with
    ticket: str = ""  # the support ticket, where the reason requires one


@dataclass(frozen=True)
class FormCheck:
    amount_minor: int | None
    # Keys: "amount", "currency", "reason", "note", "ticket", "payment", "form".
    errors: dict[str, list[str]]
    button_label: str
    # Why this refund will wait for a second person's approval (empty: it is sent at once).
    approval: tuple[str, ...] = ()
    # The reasons the agent may pick, as the form offers them.
    reasons: tuple[Reason, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def needs_approval(self) -> bool:
        return bool(self.approval)


@dataclass
class SubmitOutcome:
    check: FormCheck  # errors when refused (nothing was written)
    refund: Refund | None  # the refund when accepted, in its latest known status
    message: str  # agent-readable summary of what happened


@dataclass(frozen=True, slots=True)
class _RefundableState:
    """What ``refundable_token`` carries: the refundable amount and the refund count.

    Both move whenever any refund on the payment is reserved, released or captured
    money changes, so a form built on an older state is detected as stale.
    """

    refundable_minor: int
    refund_count: int

    @classmethod
    def of(cls, facts: rules.PaymentFacts) -> _RefundableState:
        return cls(facts.refundable_minor, facts.refund_count)

    def encode(self) -> str:
        return f"{_TOKEN_PREFIX}.{self.refundable_minor}.{self.refund_count}"

    @classmethod
    def decode(cls, token: str) -> _RefundableState | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _TOKEN_PREFIX:
            return None
        # ASCII digits of a sane length only: int() on "²" or 5,000 digits would raise.
        if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts[1:]):
            return None
        return cls(int(parts[1]), int(parts[2]))


def new_form_token() -> str:
    return secrets.token_urlsafe(24)


def new_refund_request_id() -> str:
    # 35 characters: inside Antom's 64, no special characters (inquiryRefund rejects them).
    return f"rd_{uuid.uuid4().hex}"


async def payment_facts(session: AsyncSession, payment: Payment) -> rules.PaymentFacts:
    """The rules' view of a payment, from its bookkeeping columns as committed now."""
    if payment in session:
        # Other agents' refunds move these columns; decide on the database's values.
        await session.refresh(payment)
    return facts_of(payment)


def facts_of(payment: Payment) -> rules.PaymentFacts:
    """The rules' view of a payment from its columns as loaded (no refresh)."""
    return rules.PaymentFacts(
        method=payment.method,
        currency=payment.currency,
        amount_minor=payment.amount_minor,
        captured_minor=payment.captured_minor,
        succeeded=payment.status == "SUCCESS",
        dispute_open=payment.dispute_open,
        paid_at=payment.paid_at or payment.created_at,
        refunded_minor=payment.refunded_minor,
        in_flight_minor=payment.reserved_minor,
        refund_count=payment.refund_count,
    )


async def new_form(
    session: AsyncSession,
    payment: Payment,
    user: User,
    now: datetime,
    *,
    facts: rules.PaymentFacts | None = None,
) -> tuple[RefundDraft, FormCheck]:
    """A fresh form: the amount still refundable, fixed currency, new tokens.

    The check leaves out "choose a reason" and, when nothing is refundable, "enter an
    amount": the agent has not had the chance yet. What cannot be fixed is shown.
    ``facts``: the payment as this transaction just read it (``payment_facts``), so one
    request judges the form and renders the page from one reading; read here otherwise.
    """
    if facts is None:
        facts = await payment_facts(session, payment)
    draft = blank_draft(payment, facts)
    check = await _evaluate(session, payment, user, draft, now, facts)
    # Fields the agent has not had the chance to fill in are not wrong yet.
    errors = {k: v for k, v in check.errors.items() if k not in ("reason", "note")}
    if not draft.amount_text:
        unparsed = [m for m in errors.get("amount", []) if m != EMPTY_AMOUNT]
        errors = {k: v for k, v in errors.items() if k != "amount"}
        if unparsed:
            errors["amount"] = unparsed
    return draft, dataclasses.replace(check, errors=errors)


def without_own_hold(facts: rules.PaymentFacts, refund: Refund) -> rules.PaymentFacts:
    """The payment as a refund that already holds its amount on it is judged: its own
    hold and its own place in the refund count left out (a request awaiting approval,
    edited or approved)."""
    return dataclasses.replace(
        facts,
        in_flight_minor=facts.in_flight_minor - refund.amount_minor,
        refund_count=facts.refund_count - 1,
    )


async def check_draft(
    session: AsyncSession,
    payment: Payment,
    user: User,
    draft: RefundDraft,
    now: datetime,
    *,
    editing: Refund | None = None,
    facts: rules.PaymentFacts | None = None,
) -> FormCheck:
    """Live validation: exactly what ``submit_refund`` will decide, field by field.

    ``editing``: a request awaiting approval being changed; its own hold on the payment
    and its own amount in the totals are left out (the ledger moves the hold by the
    difference), and there is no stale-form check (the edit names the revision instead).
    ``facts``: as for ``new_form``.
    """
    if facts is None:
        facts = await payment_facts(session, payment)
    if editing is None:
        return await _evaluate(session, payment, user, draft, now, facts)
    facts = without_own_hold(facts, editing)
    draft = dataclasses.replace(draft, refundable_token=_RefundableState.of(facts).encode())
    return await _evaluate(session, payment, user, draft, now, facts, editing.id)


def blank_draft(payment: Payment, facts: rules.PaymentFacts) -> RefundDraft:
    """The draft a new form starts from: what is still refundable, new tokens."""
    return RefundDraft(
        amount_text=(
            format_plain(facts.refundable_minor, payment.currency)
            if facts.refundable_minor > 0
            else ""
        ),
        currency=payment.currency,
        reason="",
        note="",
        form_token=new_form_token(),
        refundable_token=_RefundableState.of(facts).encode(),
    )


def stale_message(facts: rules.PaymentFacts) -> str:
    lead = "This payment changed while you were editing: "
    if facts.refundable_minor <= 0:
        return lead + "nothing is left to refund."
    return (
        lead + f"{format_minor(facts.refundable_minor, facts.currency)} is now refundable. "
        "Check the amount and submit again."
    )


async def _evaluate(
    session: AsyncSession,
    payment: Payment,
    user: User,
    draft: RefundDraft,
    now: datetime,
    facts: rules.PaymentFacts,
    excluding_refund_pk: int | None = None,
) -> FormCheck:
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        messages = errors.setdefault(key, [])
        if message not in messages:
            messages.append(message)

    reasons = tuple(r for r in await catalogue(session) if r.active)
    chosen = {r.code: r for r in reasons}.get(draft.reason.strip())
    note = draft.note.strip()
    ticket = draft.ticket.strip()
    if chosen is None:
        add("reason", "Choose a reason for the refund")
    if len(note) > NOTE_MAX:
        add("note", f"The note can be at most {NOTE_MAX} characters ({len(note)} now)")
    elif chosen is not None and chosen.note_required and len(note) < NOTE_MIN_REQUIRED:
        add(
            "note",
            f"“{chosen.label}” needs a note saying why (at least {NOTE_MIN_REQUIRED} characters)",
        )
    if len(ticket) > TICKET_MAX:
        add("ticket", f"The ticket reference can be at most {TICKET_MAX} characters")
    elif chosen is not None and chosen.ticket_required and not ticket:
        add("ticket", f"“{chosen.label}” needs the support ticket it comes from")

    currency = draft.currency.strip().upper()
    amount_minor: int | None = None
    try:
        amount_minor = parse_amount(draft.amount_text, payment.currency)
    except MoneyError as exc:
        add("amount", str(exc))

    # Without an amount the payment-level rules still apply, and "nothing is left to
    # refund" still holds; other amount rules have nothing to judge and are dropped.
    probe = amount_minor if amount_minor is not None else max(facts.refundable_minor, 1)
    for violation in rules.check_refund(facts, currency, probe, now):
        if (
            amount_minor is None
            and violation.field is rules.Field.AMOUNT
            and facts.refundable_minor > 0
        ):
            continue
        add(violation.field.value, violation.message)

    approval: list[str] = []
    if amount_minor is not None and currency == payment.currency:
        approval = await _approval_needed(
            session, payment, user, chosen, amount_minor, now, excluding_refund_pk
        )
        if approval and not can(user, Permission.REQUEST_APPROVAL):
            add("amount", approval[0])
            approval = []

    if _RefundableState.decode(draft.refundable_token) != _RefundableState.of(facts):
        add("form", stale_message(facts))

    if "payment" in errors:
        label = "This payment cannot be refunded"
    elif facts.refundable_minor <= 0:
        label = "Nothing is left to refund"
    elif amount_minor is None or currency != payment.currency:
        label = f"Enter an amount to refund to {payment.method}"
    elif approval:
        label = f"Ask a team lead to approve {format_minor(amount_minor, payment.currency)}"
    else:
        label = f"Refund {format_minor(amount_minor, payment.currency)} to {payment.method}"
    return FormCheck(
        amount_minor=amount_minor,
        errors=errors,
        button_label=label,
        approval=tuple(approval),
        reasons=reasons,
    )


async def _approval_needed(
    session: AsyncSession,
    payment: Payment,
    user: User,
    reason: Reason | None,
    amount_minor: int,
    now: datetime,
    excluding_refund_pk: int | None,
) -> list[str]:
    """Why this refund needs a second person (web/rules/caps.py); empty: it does not."""
    caps = await limits.caps_for(session, user, payment.currency)
    spent = await limits.spent(
        session,
        user_id=user.id,
        currency=payment.currency,
        payment_pk=payment.id or 0,
        payment_amount_minor=payment.captured_minor or payment.amount_minor,
        reason=reason.code if reason is not None else "",
        now=now,
        excluding_refund_pk=excluding_refund_pk,
    )
    return approval_needed(caps, reason, amount_minor, payment.currency, spent)


# ---------------------------------------------------------------- request and submit


def status_message(refund: Refund) -> str:
    """What the agent reads about a refund, in any status."""
    amount = format_minor(refund.amount_minor, refund.currency)
    match refund.status:
        case RefundStatus.SUCCEEDED:
            return f"Refund of {amount} succeeded"
        case RefundStatus.FAILED:
            reason = (
                explain_code(refund.result_code)
                if refund.result_code
                else "Antom reports it failed and gave no reason."
            )
            return f"Refund of {amount} failed: {reason}"
        case RefundStatus.AWAITING_APPROVAL:
            why = f" ({refund.approval_reason})" if refund.approval_reason else ""
            return (
                f"Refund of {amount} is waiting for a team lead's approval{why}. "
                "Nothing has been sent to Antom yet; the amount is held for it."
            )
        case RefundStatus.REJECTED:
            said = f": {refund.decision_note}" if refund.decision_note else ""
            if refund.decided_by is None:
                return f"Refund of {amount} expired unapproved; nothing was refunded"
            return f"Refund of {amount} was not approved{said}. Nothing was refunded"
        case RefundStatus.REVERSED:
            back = format_minor(refund.reversed_minor or refund.amount_minor, refund.currency)
            then = (
                " A team lead has made the amount refundable again."
                if refund.reversal_released_at is not None
                else " It is not refundable again until a team lead decides so."
            )
            return (
                f"Refund of {amount} succeeded, then Antom reversed it: {back} came back to "
                f"the merchant and the buyer did not receive it.{then}"
            )
        case RefundStatus.PROCESSING:
            return (
                f"Refund of {amount} is processing at Antom. Do not refund again: "
                "the desk will record the result when Antom confirms it."
            )
        case _:
            return f"Refund of {amount} was recorded and is being sent to Antom"


@dataclass(frozen=True, slots=True)
class Requested:
    """A refund written ahead and ready to send."""

    refund: Refund
    payment: Payment
    check: FormCheck
    request: RefundRequest


async def submit_refund(
    engine: AsyncEngine,
    antom: AntomClient,
    *,
    payment_pk: int,
    user: User,
    draft: RefundDraft,
    notify_url: str | None,
    now: datetime,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
    request_id: str | None = None,
    who: audit.Actor | None = None,
    approval_ttl: timedelta = DEFAULT_APPROVAL_TTL,
) -> SubmitOutcome:
    """Request (validate, reserve, write ahead), then send (one Antom call plus same-id
    retries, each answer recorded by the ledger) — unless the refund needs approval: then
    it waits, reserved, and nothing is sent (``web.services.approvals`` sends it later).

    Opens its own short transactions on ``engine``; the caller must not hold one open
    (on SQLite every writing transaction takes the write lock). ``request_id`` (the
    agent's HTTP request) goes on every timeline entry this writes.
    """
    requested = await request_refund(
        engine,
        payment_pk=payment_pk,
        user=user,
        draft=draft,
        notify_url=notify_url,
        now=now,
        request_id=request_id,
        who=who,
        approval_ttl=approval_ttl,
    )
    if isinstance(requested, SubmitOutcome):
        return requested
    if requested.refund.status is RefundStatus.AWAITING_APPROVAL:
        return SubmitOutcome(
            check=requested.check,
            refund=requested.refund,
            message=status_message(requested.refund),
        )
    fault_point("after_write_ahead")
    cause = ledger.Cause(EventSource.ANTOM_RESPONSE, request_id, user.id, who)
    return await send_requested(engine, antom, requested, cause=cause, retry_delays=retry_delays)


def ready_to_send(refund: Refund, payment: Payment, notify_url: str | None) -> Requested:
    """A refund already judged and now PENDING (approved, or edited under every cap) as
    ``send_requested`` takes it: its Antom request from the committed row, and a clean
    check of its own amount (the judging happened when it was approved or edited)."""
    return Requested(
        refund,
        payment,
        FormCheck(refund.amount_minor, {}, ""),
        refund_request_for(refund, payment, notify_url),
    )


async def send_requested(
    engine: AsyncEngine,
    antom: AntomClient,
    requested: Requested,
    *,
    cause: ledger.Cause,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
) -> SubmitOutcome:
    """Send a refund written ahead (PENDING) through the one send path and say what
    happened, for whoever caused the send: the requester, or the approver."""
    sent = await send(
        engine, antom, requested.request, requested.refund, cause=cause, retry_delays=retry_delays
    )
    refund = sent.refund
    if not sent.recorded:
        amount = format_minor(refund.amount_minor, refund.currency)
        message = (
            f"Refund of {amount} was sent to Antom but its result could not be "
            "recorded yet. Do not refund again: the desk will check it with Antom."
        )
    else:
        message = status_message(refund)
    log.info(
        "refund %s submitted by user=%s status=%s request_id=%s",
        refund.refund_request_id,
        cause.actor_id,
        RefundStatus(refund.status).value,
        cause.request_id,
    )
    return SubmitOutcome(check=requested.check, refund=refund, message=message)


async def request_refund(
    engine: AsyncEngine,
    *,
    payment_pk: int,
    user: User,
    draft: RefundDraft,
    notify_url: str | None,
    now: datetime,
    request_id: str | None,
    who: audit.Actor | None = None,
    approval_ttl: timedelta = DEFAULT_APPROVAL_TTL,
) -> Requested | SubmitOutcome:
    """Validate, reserve, write the refund and its first event; one transaction.

    Over a cap (web/rules/caps.py) the refund is written AWAITING_APPROVAL instead of
    PENDING: reserved the same way, never sent until approved. The requester's row is
    locked first, so two of their requests at once see each other's totals: splitting
    a refund cannot beat the daily cap.

    Answers a SubmitOutcome without writing anything when the refund is refused, or with
    the refund this form already made: a repeated form, seen at any step (even after a
    refusal that a concurrent copy of the same form caused), is always answered with it.
    """
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await limits.lock_spender(session, user)
        refused = await _validate(session, payment_pk, user, draft, notify_url, now)
        if isinstance(refused, SubmitOutcome):
            return await _repeat_or(session, draft, payment_pk, refused)
        payment, check, request = refused
        assert check.amount_minor is not None
        state = _RefundableState.decode(draft.refundable_token)
        assert state is not None  # check_draft refuses a token that does not decode
        awaiting = check.needs_approval
        reason_text = _reason_text(check, draft)
        refund = Refund(
            refund_request_id=request.refund_request_id,
            payment_pk=payment_pk,
            currency=payment.currency,
            amount_minor=check.amount_minor,
            status=RefundStatus.PENDING,
            reason=draft.reason.strip(),
            reason_text=reason_text,
            note=draft.note.strip() or None,
            ticket_ref=draft.ticket.strip() or None,
            agent_id=user.id,
            form_token=draft.form_token,
            next_check_at=None if awaiting else utcnow() + PENDING_RECHECK,
            approval_reason=ledger.clip("; ".join(check.approval)) if awaiting else None,
            approval_expires_at=now + approval_ttl if awaiting else None,
        )
        asked = "asked for approval of" if awaiting else "requested"
        try:
            opened = await ledger.open_refund(
                session,
                payment,
                amount_minor=check.amount_minor,
                expected=ledger.Expected(state.refundable_minor, state.refund_count),
                max_refunds=rules.profile_for(payment.method).max_refunds,
                refund=refund,
                cause=ledger.Cause(EventSource.AGENT, request_id, user.id, who),
                summary=f"{user.name} {asked} a refund of {request.amount} ({reason_text})",
                detail={
                    "refund_request_id": refund.refund_request_id,
                    "note": refund.note,
                    "ticket": refund.ticket_ref,
                },
                initial=RefundStatus.AWAITING_APPROVAL if awaiting else RefundStatus.PENDING,
            )
            if opened is None:
                await session.rollback()
                return await _repeat_or(
                    session,
                    draft,
                    payment_pk,
                    await _lost_race(session, payment_pk, user, draft, now),
                )
            await session.commit()
        except IntegrityError:
            # The same form committed first (form_token is UNIQUE): answer with that refund.
            await session.rollback()
            if existing := await _refund_by_form_token(session, draft.form_token):
                return await _already_submitted(session, existing, payment_pk)
            raise
        return Requested(
            ledger.typed(opened), payment, check, refund_request_for(opened, payment, notify_url)
        )


def _reason_text(check: FormCheck, draft: RefundDraft) -> str:
    by_code = {r.code: r.label for r in check.reasons}
    return by_code.get(draft.reason.strip(), draft.reason.strip())[:80]


async def _validate(
    session: AsyncSession,
    payment_pk: int,
    user: User,
    draft: RefundDraft,
    notify_url: str | None,
    now: datetime,
) -> tuple[Payment, FormCheck, RefundRequest] | SubmitOutcome:
    if not draft.form_token or len(draft.form_token) > 64:
        return _refused(FormCheck(None, {"form": ["This form is not valid; reload it"]}, ""))
    payment = await session.get(Payment, payment_pk)
    if payment is None:
        return _refused(FormCheck(None, {"payment": ["This payment does not exist"]}, ""))
    check = await check_draft(session, payment, user, draft, now)
    if not check.ok or check.amount_minor is None:
        return _refused(check)
    try:
        # The same checks the real request gets after the commit: a row that could
        # never be sent would hold its money until someone noticed.
        request = RefundRequest(
            refund_request_id=new_refund_request_id(),
            payment_id=payment.payment_id,
            amount=Money(check.amount_minor, payment.currency),
            reason=_reason_text(check, draft),
            notify_url=notify_url,
        )
    except ValueError as exc:
        log.error("refund for payment %s cannot be sent: %s", payment.payment_id, exc)
        errors = {"form": [f"This refund cannot be sent to Antom: {exc}"]}
        return _refused(dataclasses.replace(check, errors=errors))
    return payment, check, request


async def _repeat_or(
    session: AsyncSession, draft: RefundDraft, payment_pk: int, refused: SubmitOutcome
) -> SubmitOutcome:
    """A form that already made a refund is answered with that refund, never refused:
    a concurrent copy of it may be what moved the payment ("it changed, submit again"
    would invite a second refund)."""
    if existing := await _refund_by_form_token(session, draft.form_token):
        return await _already_submitted(session, existing, payment_pk)
    return refused


async def _refund_by_form_token(session: AsyncSession, form_token: str) -> Refund | None:
    if not form_token:
        return None
    result = await session.exec(
        select(Refund)
        .where(Refund.form_token == form_token)
        .execution_options(populate_existing=True)
    )
    return result.first()


def _refused(check: FormCheck) -> SubmitOutcome:
    return SubmitOutcome(check=check, refund=None, message="Nothing was refunded")


async def _already_submitted(
    session: AsyncSession, existing: Refund, payment_pk: int
) -> SubmitOutcome:
    if existing.payment_pk != payment_pk:
        check = FormCheck(None, {"form": ["This form is not valid any more; reload it"]}, "")
        return _refused(check)
    amount = format_minor(existing.amount_minor, existing.currency)
    payment = await session.get(Payment, payment_pk)
    method = payment.method if payment else "the buyer"
    check = FormCheck(existing.amount_minor, {}, f"Refund {amount} to {method}")
    return SubmitOutcome(
        check=check,
        refund=ledger.typed(existing),
        message=f"This form was already submitted. {status_message(existing)}",
    )


async def _lost_race(
    session: AsyncSession, payment_pk: int, user: User, draft: RefundDraft, now: datetime
) -> SubmitOutcome:
    """The reservation found the payment changed since the check: say what changed."""
    payment = await session.get(Payment, payment_pk)
    if payment is None:
        return _refused(FormCheck(None, {"payment": ["This payment does not exist"]}, ""))
    check = await check_draft(session, payment, user, draft, now)
    if check.ok:
        facts = await payment_facts(session, payment)
        check = dataclasses.replace(check, errors={"form": [stale_message(facts)]})
    return _refused(check)
