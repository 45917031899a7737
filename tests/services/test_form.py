"""The refund form: pre-filling, live validation messages, button label, stale forms.

Every message here is what the agent reads beside a field; the same function decides
for the submit path (test_submit.py checks that a refused submit writes nothing).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from tests.services.conftest import Desk, now, rendered_form
from web.models import Payment, RefundReason, Role, User
from web.rules.refunds import DEFAULT_REASONS
from web.services.refunds import (
    FormCheck,
    RefundDraft,
    check_draft,
)

UNLIMITED = {"USD": 10**9, "JPY": 10**9, "IDR": 10**12, "EUR": 10**9}


async def check(desk: Desk, payment: Payment, user: User, draft: RefundDraft) -> FormCheck:
    async with desk.session() as s:
        fresh = await s.get(Payment, payment.id)
        assert fresh is not None
        return await check_draft(s, fresh, user, draft, now())


async def errors_for(desk: Desk, user: User | None = None, **payment_kw: Any) -> Any:
    """Render a form on a new payment, fill it with ``amount``/``reason``/``note``, check it."""
    fill = {
        k: payment_kw.pop(k) for k in ("amount_text", "reason", "note", "ticket") if k in payment_kw
    }
    if "draft_currency" in payment_kw:
        fill["currency"] = payment_kw.pop("draft_currency")
    user = user or await desk.user(limits=UNLIMITED)
    payment = await desk.payment(**payment_kw)
    draft, _ = await rendered_form(desk, payment, user)
    draft = dataclasses.replace(draft, **({"reason": "customer_request"} | fill))
    return await check(desk, payment, user, draft)


async def test_new_form_prefills_refundable_amount_fixed_currency_fresh_tokens(desk: Desk) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment(amount_minor=10000, reserved_minor=3000, refund_count=1)
    draft, first = await rendered_form(desk, payment, user)
    again, _ = await rendered_form(desk, payment, user)

    assert draft.amount_text == "70.00"
    assert draft.currency == "USD"
    assert draft.reason == ""
    assert draft.form_token and draft.form_token != again.form_token
    assert draft.refundable_token == again.refundable_token
    # Nothing to complain about before the agent has touched the form.
    assert first.errors == {}
    assert first.amount_minor == 7000
    assert first.button_label == "Refund $70.00 to ALIPAY_CN"


async def test_button_label_says_what_will_happen(desk: Desk) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment(currency="JPY", amount_minor=5000, captured_minor=5000)
    draft, _ = await rendered_form(desk, payment, user)
    assert draft.amount_text == "5000"
    filled = dataclasses.replace(draft, amount_text="1200", reason="item_returned")
    result = await check(desk, payment, user, filled)
    assert result.ok
    assert result.amount_minor == 1200
    assert result.button_label == "Refund ¥1,200 to ALIPAY_CN"

    blank = await check(desk, payment, user, dataclasses.replace(filled, amount_text=""))
    assert blank.errors == {"amount": ["Enter an amount"]}
    assert blank.button_label == "Enter an amount to refund to ALIPAY_CN"


@pytest.mark.parametrize(
    ("fill", "field", "message"),
    [
        ({"draft_currency": "EUR"}, "currency", "Refunds must be in the payment's currency, USD"),
        ({"amount_text": "0"}, "amount", "The amount must be greater than zero"),
        ({"amount_text": "-5"}, "amount", "The amount cannot be negative"),
        ({"amount_text": "12.345"}, "amount", "USD allows at most 2 decimal places"),
        ({"amount_text": "abc"}, "amount", "'abc' is not a number"),
        (
            {"amount_text": "1,00.00"},
            "amount",
            "Use commas only between groups of three digits, like 1,234.56",
        ),
        ({"amount_text": "100.01"}, "amount", "Only $100.00 is still refundable"),
        ({"reason": ""}, "reason", "Choose a reason for the refund"),
        ({"reason": "because"}, "reason", "Choose a reason for the refund"),
        (
            {"reason": "other", "note": "meh"},
            "note",
            "“Other” needs a note saying why (at least 5 characters)",
        ),
        ({"ticket": "T" * 65}, "ticket", "The ticket reference can be at most 64 characters"),
        ({"note": "x" * 257}, "note", "The note can be at most 256 characters (257 now)"),
    ],
)
async def test_field_messages(desk: Desk, fill: dict[str, str], field: str, message: str) -> None:
    result = await errors_for(desk, amount_minor=10000, **fill)
    assert result.errors == {field: [message]}
    assert not result.ok


async def test_other_reason_with_a_note_is_fine(desk: Desk) -> None:
    result = await errors_for(desk, reason="other", note="Customer changed their mind twice")
    assert result.ok, result.errors


async def test_every_managed_reason_is_accepted(desk: Desk) -> None:
    for reason in DEFAULT_REASONS:
        result = await errors_for(desk, reason=reason.code, note="Long enough note")
        assert result.ok, (reason.code, result.errors)
    assert [r.code for r in result.reasons] == [r.code for r in DEFAULT_REASONS]


async def test_currency_decimals_and_minimum(desk: Desk) -> None:
    jpy = await errors_for(
        desk, currency="JPY", amount_minor=5000, captured_minor=5000, amount_text="12.5"
    )
    assert jpy.errors == {"amount": ["JPY has no minor unit: enter a whole number"]}
    # IDR keeps its last two digits at 00: Rp0.50 is below the smallest refundable step.
    idr = await errors_for(
        desk, currency="IDR", amount_minor=1_000_000, captured_minor=1_000_000, amount_text="0.50"
    )
    assert idr.errors == {"amount": ["IDR amounts must be a multiple of IDR1.00"]}


async def test_exceeds_counts_refunds_in_flight(desk: Desk) -> None:
    result = await errors_for(
        desk,
        amount_minor=10000,
        reserved_minor=3000,
        refunded_minor=1000,
        refund_count=2,
        amount_text="70.00",
    )
    assert result.errors["amount"] == [
        "Only $60.00 is still refundable ($30.00 is held for refunds not yet settled)"
    ]
    nothing = await errors_for(
        desk, amount_minor=10000, refunded_minor=10000, refund_count=1, amount_text="1"
    )
    assert nothing.errors["amount"] == ["Nothing is left to refund"]


async def test_card_not_captured(desk: Desk) -> None:
    result = await errors_for(desk, method="CARD", captured_minor=0, amount_text="10.00")
    assert result.errors["payment"] == ["The payment is authorised but not captured"]
    assert result.button_label == "This payment cannot be refunded"


async def test_payment_not_successful(desk: Desk) -> None:
    result = await errors_for(desk, status="PROCESSING", captured_minor=0, amount_text="10.00")
    assert result.errors["payment"] == ["The payment has not succeeded"]


async def test_open_chargeback(desk: Desk) -> None:
    result = await errors_for(desk, dispute_open=True, amount_text="10.00")
    assert result.errors == {
        "payment": [
            "A chargeback is open on this payment; it cannot be refunded until it is judged"
        ]
    }


async def test_refund_window_closed(desk: Desk) -> None:
    paid = now() - timedelta(days=400)
    result = await errors_for(desk, paid_at=paid, amount_text="10.00")
    closed = (paid + timedelta(days=365)).strftime("%Y-%m-%d")
    assert result.errors == {
        "payment": [f"The 365-day refund window for Alipay (CN) closed on {closed}"]
    }


async def test_partial_refund_not_supported(desk: Desk) -> None:
    result = await errors_for(
        desk,
        method="DANA",
        currency="IDR",
        amount_minor=5_000_000,
        captured_minor=5_000_000,
        amount_text="10000",
    )
    assert result.errors == {"amount": ["DANA refunds only the full amount, IDR50,000.00"]}
    full = await errors_for(
        desk,
        method="DANA",
        currency="IDR",
        amount_minor=5_000_000,
        captured_minor=5_000_000,
        amount_text="50,000.00",
    )
    assert full.ok, full.errors


async def test_multiple_refunds_not_supported(desk: Desk) -> None:
    result = await errors_for(
        desk, method="KAKAOPAY", refunded_minor=1000, refund_count=1, amount_text="10.00"
    )
    assert result.errors == {
        "payment": ["KakaoPay allows only 1 refund per payment, and it has been made"]
    }


async def test_over_the_agent_s_limit_the_form_says_it_will_need_approval(desk: Desk) -> None:
    agent = await desk.user(limits={"USD": 50000})
    over = await errors_for(desk, user=agent, amount_minor=100000, amount_text="600.00")
    assert over.ok, over.errors  # not refused: asked
    assert over.approval == ("$600.00 is over your $500.00 limit per refund",)
    assert over.button_label == "Ask a team lead to approve $600.00"
    at_limit = await errors_for(desk, user=agent, amount_minor=100000, amount_text="500.00")
    assert at_limit.ok and at_limit.approval == (), at_limit.approval
    assert at_limit.button_label == "Refund $500.00 to ALIPAY_CN"


async def test_an_agent_without_a_limit_in_a_currency_asks_for_every_refund(desk: Desk) -> None:
    agent = await desk.user(limits={"EUR": 50000})
    result = await errors_for(desk, user=agent, amount_text="1.00")
    assert result.ok and result.approval == ("You cannot refund in USD without approval",)


async def test_leads_and_admins_unlimited_unless_a_row_exists(desk: Desk) -> None:
    lead = await desk.user(role=Role.LEAD)
    admin = await desk.user(role=Role.ADMIN)
    for user in (lead, admin):
        result = await errors_for(desk, user=user, amount_minor=10**8, amount_text="999999.00")
        assert result.ok and not result.approval, (result.errors, result.approval)
    capped = await desk.user(role=Role.LEAD, limits={"USD": 100000})
    result = await errors_for(desk, user=capped, amount_minor=10**8, amount_text="1000.01")
    assert result.approval == ("$1,000.01 is over your $1,000.00 limit per refund",)


async def test_a_reason_can_require_a_ticket(desk: Desk) -> None:
    async with desk.session() as s:
        reason = await s.get(RefundReason, "duplicate_charge")
        assert reason is not None
        reason.ticket_required = True
        await s.commit()
    missing = await errors_for(desk, reason="duplicate_charge")
    assert missing.errors == {
        "ticket": ["“Duplicate charge” needs the support ticket it comes from"]
    }
    given = await errors_for(desk, reason="duplicate_charge", ticket="ZD-4821")
    assert given.ok, given.errors


async def test_an_inactive_reason_is_not_offered_or_accepted(desk: Desk) -> None:
    async with desk.session() as s:
        reason = await s.get(RefundReason, "service_issue")
        assert reason is not None
        reason.active = False
        await s.commit()
    result = await errors_for(desk, reason="service_issue")
    assert result.errors == {"reason": ["Choose a reason for the refund"]}
    assert "service_issue" not in [r.code for r in result.reasons]


async def test_stale_form_says_what_changed(desk: Desk) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment(amount_minor=10000)
    draft, _ = await rendered_form(desk, payment, user)
    draft = dataclasses.replace(draft, amount_text="50.00", reason="item_returned")
    assert (await check(desk, payment, user, draft)).ok

    # Meanwhile another agent's $60.00 refund is reserved on the same payment.
    async with desk.session() as s:
        row = await s.get(Payment, payment.id)
        assert row is not None
        row.reserved_minor, row.refund_count = 6000, 1
        await s.commit()
    result = await check(desk, payment, user, draft)
    assert result.errors["form"] == [
        "This payment changed while you were editing: $40.00 is now refundable. "
        "Check the amount and submit again."
    ]
    assert result.errors["amount"] == [
        "Only $40.00 is still refundable ($60.00 is held for refunds not yet settled)"
    ]


async def test_tampered_token_is_stale(desk: Desk) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment()
    draft, _ = await rendered_form(desk, payment, user)
    for token in ("", "garbage", "r1.x.0", "r1.10000.5"):
        result = await check(
            desk,
            payment,
            user,
            dataclasses.replace(draft, reason="item_returned", refundable_token=token),
        )
        assert list(result.errors) == ["form"], token


async def test_new_form_on_a_fully_refunded_payment_says_so(desk: Desk) -> None:
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment(
        amount_minor=10000, refunded_minor=8000, reserved_minor=2000, refund_count=2
    )
    draft, first = await rendered_form(desk, payment, user)
    assert draft.amount_text == ""
    nothing_left = "Nothing is left to refund ($20.00 is held for refunds not yet settled)"
    assert first.errors == {"amount": [nothing_left]}
    assert first.button_label == "Nothing is left to refund"
    typed = await check(
        desk, payment, user, dataclasses.replace(draft, reason="other", note="hello")
    )
    assert typed.errors == {"amount": ["Enter an amount", nothing_left]}
