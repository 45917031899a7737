"""The shared refund rules (``web.rules``) as pure functions: the same ones the simulator,
the form and the submit path use."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from web.rules.refunds import METHOD_PROFILES, Code, Field, PaymentFacts, check_refund, profile_for

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def facts(**kw: object) -> PaymentFacts:
    base = PaymentFacts(
        method="ALIPAY_CN",
        currency="USD",
        amount_minor=10000,
        captured_minor=10000,
        succeeded=True,
        dispute_open=False,
        paid_at=NOW - timedelta(days=1),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def codes(
    p: PaymentFacts, amount: int, currency: str = "USD", balance: int | None = None
) -> list[Code]:
    return [v.code for v in check_refund(p, currency, amount, NOW, balance)]


def test_allowed_refund_has_no_violations() -> None:
    assert check_refund(facts(), "USD", 10000, NOW) == []


def test_profiles_match_the_documented_methods() -> None:
    assert set(METHOD_PROFILES) == {
        "CARD",
        "ALIPAY_CN",
        "ALIPAY_HK",
        "GCASH",
        "DANA",
        "KAKAOPAY",
        "TRUEMONEY",
    }
    assert profile_for("CARD").needs_capture and profile_for("CARD").asynchronous
    assert not profile_for("ALIPAY_CN").asynchronous
    assert profile_for("DANA").partial is False
    assert profile_for("KAKAOPAY").max_refunds == 1
    unknown = profile_for("NEWPAY")
    assert (unknown.refund_window_days, unknown.asynchronous, unknown.partial) == (365, True, True)


def test_status_violations() -> None:
    assert codes(facts(succeeded=False), 100) == [Code.ORDER_STATUS_INVALID]
    assert codes(facts(method="CARD", captured_minor=0), 100)[0] == Code.ORDER_STATUS_INVALID
    assert codes(facts(dispute_open=True), 100) == [Code.ORDER_STATUS_INVALID]


def test_currency_mismatch_stops_amount_checks() -> None:
    assert codes(facts(), 99999999, "EUR") == [Code.CURRENCY_NOT_SUPPORT]


@pytest.mark.parametrize(("amount", "currency"), [(0, "USD"), (-1, "USD"), (150, "IDR")])
def test_param_illegal_amounts(amount: int, currency: str) -> None:
    p = facts(currency=currency)
    found = check_refund(p, currency, amount, NOW)
    assert found[0].code == Code.PARAM_ILLEGAL and found[0].field == Field.AMOUNT


def test_amount_exceed_counts_refunded_and_in_flight() -> None:
    p = facts(refunded_minor=4000, in_flight_minor=3000)
    assert p.refundable_minor == 3000
    assert codes(p, 3000) == []
    over = check_refund(p, "USD", 3001, NOW)
    assert [v.code for v in over] == [Code.REFUND_AMOUNT_EXCEED]
    assert "Only $30.00" in over[0].message
    assert "$30.00 is held for refunds not yet settled" in over[0].message
    assert codes(facts(refunded_minor=10000), 1) == [Code.REFUND_AMOUNT_EXCEED]


def test_window_boundary() -> None:
    days = profile_for("GCASH").refund_window_days
    edge = facts(method="GCASH", paid_at=NOW - timedelta(days=days))
    assert codes(edge, 100) == []
    late = facts(method="GCASH", paid_at=NOW - timedelta(days=days, seconds=1))
    found = check_refund(late, "USD", 100, NOW)
    assert [v.code for v in found] == [Code.REFUND_WINDOW_EXCEED]
    assert "180-day" in found[0].message


def test_partial_and_multiple() -> None:
    dana = facts(method="DANA", currency="IDR", amount_minor=100000, captured_minor=100000)
    assert codes(dana, 50000, "IDR") == [Code.PARTIAL_REFUND_NOT_SUPPORTED]
    assert codes(dana, 100000, "IDR") == []
    kakao = facts(method="KAKAOPAY", currency="KRW", refund_count=1, refunded_minor=100)
    assert codes(kakao, 100, "KRW") == [Code.MULTIPLE_REFUNDS_NOT_SUPPORTED]


def test_balance_only_when_known() -> None:
    assert codes(facts(), 5000, balance=None) == []
    assert codes(facts(), 5000, balance=4999) == [Code.MERCHANT_BALANCE_NOT_ENOUGH]
    assert codes(facts(), 5000, balance=5000) == []


def test_all_violations_come_in_the_documented_order() -> None:
    p = facts(
        method="KAKAOPAY",
        succeeded=False,
        refund_count=1,
        paid_at=NOW - timedelta(days=400),
    )
    assert codes(p, 20000, balance=1) == [
        Code.ORDER_STATUS_INVALID,
        Code.REFUND_AMOUNT_EXCEED,
        Code.REFUND_WINDOW_EXCEED,
        Code.MULTIPLE_REFUNDS_NOT_SUPPORTED,
        Code.MERCHANT_BALANCE_NOT_ENOUGH,
    ]
    dana = facts(method="DANA", paid_at=NOW - timedelta(days=91))
    assert codes(dana, 100) == [Code.REFUND_WINDOW_EXCEED, Code.PARTIAL_REFUND_NOT_SUPPORTED]
