"""The customer message: every method has a timing row, and the text follows the status."""

from __future__ import annotations

import re

import pytest

from web.models import RefundStatus
from web.rules.customer_message import DEFAULT_TIMING, METHOD_TIMING, customer_message, timing
from web.rules.refunds import METHOD_PROFILES


def test_every_method_has_its_own_timing() -> None:
    assert set(METHOD_TIMING) == set(METHOD_PROFILES)
    assert timing("SOMETHING_NEW") == DEFAULT_TIMING


@pytest.mark.parametrize("status", [*(s.value for s in RefundStatus), "reversed"])
def test_each_status_says_the_amount_in_plain_words(status: str) -> None:
    text = customer_message(amount="$12.50", status=status, method="CARD", reference="7412")
    assert "$12.50" in text
    for jargon in ("REFUND_", "Antom", "pending", "awaiting", "processing"):
        assert not re.search(rf"\b{jargon}\b", text, flags=re.IGNORECASE), jargon


def test_in_flight_says_what_happens_next_and_how_long() -> None:
    text = customer_message(amount="₱500.00", status="processing", method="GCASH", reference="R1")
    assert "started a refund of ₱500.00 to your GCash wallet" in text
    assert "1 to 3 business days" in text
    assert "reference is R1" in text


def test_succeeded_card_gives_the_card_timing_and_reference() -> None:
    text = customer_message(amount="$9.00", status="succeeded", method="CARD", reference="74123")
    assert text.startswith("Your refund of $9.00 is complete")
    assert "5 to 10 business days" in text and "74123" in text


def test_no_reference_no_reference_sentence() -> None:
    text = customer_message(amount="¥1,000", status="awaiting", method="ALIPAY_CN")
    assert "reference" not in text
    assert "quick check by our team" in text


def test_failed_and_reversed_promise_a_next_step() -> None:
    failed = customer_message(amount="$1.00", status="failed", method="DANA", reference="X")
    reversed_ = customer_message(amount="$1.00", status="reversed", method="DANA")
    assert "could not complete it" in failed and "another way" in failed
    assert "returned to us" in reversed_ and "another way" in reversed_
