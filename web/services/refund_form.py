"""The refund form on an open page: re-judged when the payment moves, refilled to refund again.

No web framework here; the rules are ``web.services.refunds.check_draft``'s. This module
decides what an open form does with them:

* ``recheck``: live validation of what the agent typed. When the payment changed since
  the form was rendered (another refund, a settlement, a chargeback), the form is
  re-armed with the payment as it is now instead of being refused: an amount the agent
  has not touched follows the new refundable amount; one she typed is kept and judged
  against it, and a notice says so. Only a *submit* of a stale form is refused.
* ``again_form``: "Refund again" after a confirmed failure — a new form (a new refund,
  with a new refundRequestId at submit), prefilled from the failed one by a person's
  click. The desk never refunds again by itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import format_minor, format_plain
from web.models import Payment, Refund, RefundStatus, User
from web.rules.refunds import PaymentFacts
from web.services.refunds import (
    FormCheck,
    RefundDraft,
    blank_draft,
    check_draft,
    new_form,
    payment_facts,
)


@dataclass(frozen=True, slots=True)
class OpenForm:
    """A refund form as the page should show it now."""

    draft: RefundDraft  # what the form holds (amount, reason, note, tokens)
    check: FormCheck  # its messages and button
    amount_default: str  # the amount the form offers by itself ("" when nothing is left)
    # The payment as the form was judged against it: the page around the form renders
    # from the same reading, so the two cannot disagree.
    facts: PaymentFacts
    rearmed: bool = False  # the payment changed under the form; it now judges the new state
    notice: str | None = None  # what the agent should know about that


async def recheck(
    session: AsyncSession,
    payment: Payment,
    user: User,
    draft: RefundDraft,
    amount_default: str,
    now: datetime,
) -> OpenForm:
    """Judge ``draft``; re-arm it first if the payment changed since it was rendered."""
    facts = await payment_facts(session, payment)
    fresh = blank_draft(payment, facts)
    if draft.refundable_token == fresh.refundable_token:
        check = _quiet(await check_draft(session, payment, user, draft, now, facts=facts), draft)
        return OpenForm(draft, check, amount_default, facts)
    edited = draft.amount_text.strip() != amount_default.strip()
    draft = dataclasses.replace(
        draft,
        refundable_token=fresh.refundable_token,
        amount_text=draft.amount_text if edited else fresh.amount_text,
    )
    check = _quiet(await check_draft(session, payment, user, draft, now, facts=facts), draft)
    refundable = format_minor(facts.refundable_minor, payment.currency)
    notice = f"This payment changed while you were editing: {refundable} is now refundable."
    if facts.refundable_minor <= 0:
        notice = "This payment changed while you were editing: nothing is left to refund."
    elif edited:
        notice += " Your amount was kept and checked against it."
    else:
        notice += " The amount was updated to match."
    return OpenForm(
        draft,
        check,
        fresh.amount_text,
        facts,
        rearmed=True,
        notice=notice,
    )


def _quiet(check: FormCheck, draft: RefundDraft) -> FormCheck:
    """No "choose a reason" while the agent has not reached the reason yet: live checks
    say what is wrong, not what is still to do. The button still says the form is not
    ready, and a submit names every missing field."""
    if draft.reason.strip() or "reason" not in check.errors:
        return check
    errors = {k: v for k, v in check.errors.items() if k != "reason"}
    return dataclasses.replace(check, errors=errors)


async def fresh_form(
    session: AsyncSession, payment: Payment, user: User, now: datetime
) -> OpenForm:
    facts = await payment_facts(session, payment)
    draft, check = await new_form(session, payment, user, now, facts=facts)
    return OpenForm(draft, check, draft.amount_text, facts)


async def again_form(
    session: AsyncSession, payment: Payment, user: User, refund_pk: int, now: datetime
) -> OpenForm | None:
    """A new form prefilled from the failed refund ``refund_pk`` of this payment.

    None when there is no such failed refund: the page then shows its ordinary form.
    """
    failed = await session.get(Refund, refund_pk)
    if failed is None or failed.payment_pk != payment.id or failed.status != RefundStatus.FAILED:
        return None
    base = await fresh_form(session, payment, user, now)
    offered = {r.code for r in base.check.reasons}
    draft = dataclasses.replace(
        base.draft,
        amount_text=format_plain(failed.amount_minor, failed.currency),
        reason=failed.reason if failed.reason in offered else "",
        note=failed.note or "",
        ticket=failed.ticket_ref or "",
    )
    check = await check_draft(session, payment, user, draft, now, facts=base.facts)
    notice = (
        f"Refunding again after the failed refund {failed.refund_request_id}: this is a "
        "new refund, with a new id. Check the amount and the reason, then submit."
    )
    # The offered default stays what is refundable, so the prefilled amount counts as
    # the agent's own: a change of the payment keeps it and re-judges it.
    return dataclasses.replace(base, draft=draft, check=check, notice=notice)
