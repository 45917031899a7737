"""Money: parsing what agents type, formatting, wire amounts. Never a float."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from web.antom.money import (
    ANTOM_EXPONENTS,
    MAX_DIGITS,
    Money,
    MoneyError,
    exponent,
    format_minor,
    format_plain,
    minor_unit_problem,
    parse_amount,
)

CURRENCIES = sorted(ANTOM_EXPONENTS)
minor_amounts = st.integers(min_value=1, max_value=10**MAX_DIGITS - 1)


@given(st.sampled_from(CURRENCIES), minor_amounts)
def test_plain_format_round_trips(currency: str, minor: int) -> None:
    parsed = parse_amount(format_plain(minor, currency), currency)
    assert type(parsed) is int
    assert parsed == minor


@given(st.sampled_from(CURRENCIES), minor_amounts)
def test_display_format_round_trips(currency: str, minor: int) -> None:
    parsed = parse_amount(format_minor(minor, currency), currency)
    assert type(parsed) is int
    assert parsed == minor


@given(
    st.sampled_from(CURRENCIES),
    st.integers(min_value=0, max_value=10**9),
    st.text(alphabet="0123456789", min_size=1, max_size=6),
)
def test_too_many_decimals_is_always_rejected(currency: str, whole: int, extra: str) -> None:
    places = exponent(currency)
    decimals = "5" * places + extra  # always more decimals than the currency has
    with pytest.raises(MoneyError, match=r"decimal places|no minor unit"):
        parse_amount(f"{whole}.{decimals}", currency)


@given(st.sampled_from(CURRENCIES), minor_amounts)
def test_wire_round_trip(currency: str, minor: int) -> None:
    money = Money(minor, currency)
    wire = money.to_wire()
    assert wire == {"currency": currency, "value": str(minor)}
    assert all(isinstance(v, str) for v in wire.values())
    assert Money.from_wire(dict(wire)) == money


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.5", "USD", 1250),
        (".5", "USD", 50),
        ("12.", "USD", 1200),
        ("1,234.56", "USD", 123456),
        ("$1,234.56", "USD", 123456),
        ("US$ 7", "USD", 700),
        ("12 USD", "USD", 1200),
        ("usd 12", "USD", 1200),
        ("¥1,200", "JPY", 1200),
        ("￥1200", "JPY", 1200),
        ("1200円", "JPY", 1200),
        ("₩50,000", "KRW", 50000),
        ("CA$3", "CAD", 300),
        ("$3", "CAD", 300),
        ("NT$100", "TWD", 10000),
        ("RM 5.50", "MYR", 550),
        ("Rp 10,000", "IDR", 1000000),
        ("  42  ", "EUR", 4200),
    ],
)
def test_parse_amount(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "USD", "Enter an amount"),
        ("   ", "USD", "Enter an amount"),
        ("-5", "USD", "The amount cannot be negative"),
        ("$-5", "USD", "The amount cannot be negative"),
        ("−5", "USD", "The amount cannot be negative"),
        ("abc", "USD", "'abc' is not a number"),
        ("1e5", "USD", "'1e5' is not a number"),
        ("1.2.3", "USD", "'1.2.3' is not a number"),
        ("1 234", "USD", "'1 234' is not a number"),
        ("12,34", "USD", "Use commas only between groups of three digits, like 1,234.56"),
        ("1,2345.00", "USD", "Use commas only between groups of three digits"),
        ("12.345", "USD", "USD allows at most 2 decimal places"),
        ("10.000", "IDR", "IDR allows at most 2 decimal places"),
        ("12.5", "JPY", "JPY has no minor unit: enter a whole number"),
        ("12.00", "JPY", "JPY has no minor unit: enter a whole number"),
        ("0", "USD", "The amount must be greater than zero"),
        ("0.00", "USD", "The amount must be greater than zero"),
        ("€12", "USD", "'€' is not a USD sign; enter the amount in USD"),
        ("$12", "JPY", "'$' is not a JPY sign; enter the amount in JPY"),
        ("12 £", "EUR", "'£' is not a EUR sign"),
        ("1" * 17, "JPY", "The amount is too large (at most 16 digits)"),
        ("99999999999999.99", "USD", None),  # exactly 16 digits: allowed
    ],
)
def test_parse_amount_errors_are_specific(text: str, currency: str, message: str | None) -> None:
    if message is None:
        assert parse_amount(text, currency) == 10**16 - 1
        return
    with pytest.raises(MoneyError) as raised:
        parse_amount(text, currency)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (120000, "JPY", "¥120,000"),
        (123456, "USD", "$1,234.56"),
        (5, "USD", "$0.05"),
        (100, "IDR", "IDR1.00"),
        (123456, "KRW", "₩123,456"),
    ],
)
def test_format_minor(minor: int, currency: str, text: str) -> None:
    assert format_minor(minor, currency) == text
    assert str(Money(minor, currency)) == text


def test_format_plain() -> None:
    assert format_plain(123450, "USD") == "1234.50"
    assert format_plain(1200, "JPY") == "1200"
    assert format_plain(5, "EUR") == "0.05"


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"currency": "USD", "value": 100}, "string currency and value"),
        ({"currency": "USD"}, "string currency and value"),
        ({"currency": "usd", "value": "1"}, "is not a currency code"),
        ({"currency": "USD", "value": "1.00"}, "not a whole number of minor units"),
        ({"currency": "USD", "value": "-1"}, "not a whole number of minor units"),
        ({"currency": "USD", "value": "²"}, "not a whole number of minor units"),
        ({"currency": "USD", "value": "١٢"}, "not a whole number of minor units"),
        ({"currency": "USD", "value": "1" * 17}, "not a whole number of minor units"),
    ],
)
def test_from_wire_rejects(wire: dict[str, object], message: str) -> None:
    with pytest.raises(MoneyError, match=message):
        Money.from_wire(wire)


def test_exponents() -> None:
    assert [exponent(c) for c in ("USD", "JPY", "KRW", "IDR", "TWD", "KWD", "ISK", "XYZ")] == [
        2,
        0,
        0,
        2,
        2,
        3,
        0,
        2,
    ]
    with pytest.raises(MoneyError, match="is not a currency code"):
        exponent("US")


def test_idr_must_be_whole_rupiah() -> None:
    assert minor_unit_problem(10050, "IDR") == "IDR amounts must be a multiple of IDR1.00"
    assert minor_unit_problem(10000, "IDR") is None
    assert minor_unit_problem(10050, "USD") is None


# ---------------------------------------------------------------- hostile input (issue 7)
#
# Python refuses int<->str conversions past 4,300 digits with a ValueError, which reached
# the agent as an HTTP 500. However long or strange the text, the answer is a MoneyError.

TOO_LARGE = "The amount is too large"


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("1" * 10_000, "USD"),
        ("9" * 5_000, "JPY"),
        ("1" * 4_301, "JPY"),
        ("1" * 4_301, "USD"),
        ("1" * 4_299, "KWD"),  # 4,299 digits and 3 places: 4,302 digits of minor units
        ("1" * 10_000 + ".50", "USD"),
        ("1" * 10_000 + ".", "EUR"),
        ("$" + "9" * 10_000, "USD"),
        ("9" * 10_000 + " JPY", "JPY"),
        ("1" + ",000" * 3_000, "USD"),
        ("1" + ",000" * 3_000 + ".25", "USD"),
        ("0" * 10_000 + "1" * 17, "JPY"),
        ("  " + "7" * 10_000 + "  ", "KRW"),
        ("1" * 17, "JPY"),
        ("1" * 15 + ".00", "USD"),  # 17 digits of minor units
    ],
)
def test_huge_amounts_are_refused_with_a_message(text: str, currency: str) -> None:
    with pytest.raises(MoneyError) as raised:
        parse_amount(text, currency)
    message = str(raised.value)
    assert message.startswith(TOO_LARGE), message
    # The message is for a person: it never echoes back thousands of characters.
    assert len(message) < 120


def test_long_text_that_is_no_number_is_refused_briefly() -> None:
    with pytest.raises(MoneyError) as raised:
        parse_amount("x" * 100_000, "USD")
    assert len(str(raised.value)) < 120


def test_leading_zeros_do_not_count_towards_the_size() -> None:
    assert parse_amount("0000012.50", "USD") == 1250
    assert parse_amount("0" * 20 + "1", "JPY") == 1


# Characters an agent (or a paste) might put in the field: ASCII and other digits,
# separators, signs, currency symbols and every kind of space.
_AMOUNT_ALPHABET = (
    "0123456789" * 4
    + ",.'_ -+−"
    + "\t\n\u00a0\u2009\u202f\u3000"
    + "٠١٢٣٤٥٦٧٨٩۰۱۲३४५０１２²³¹½"
    + "$¥￥€£₩₫฿Rp円元원USDJPYeE"
)
_hostile_text = st.one_of(
    st.text(),
    st.text(alphabet=_AMOUNT_ALPHABET, max_size=40),
    st.from_regex(r"\s*[$¥]?\s*-?[0-9,]{0,24}(\.[0-9]{0,6})?\s*[A-Z]{0,3}\s*", fullmatch=True),
    st.builds(
        lambda head, n, digit, tail: head + digit * n + tail,
        st.text(alphabet=_AMOUNT_ALPHABET, max_size=4),
        st.integers(min_value=15, max_value=12_000),
        st.sampled_from("019٣"),
        st.text(alphabet=_AMOUNT_ALPHABET, max_size=4),
    ),
)


@given(_hostile_text, st.sampled_from([*CURRENCIES, "KWD"]))
def test_parse_amount_answers_an_amount_or_a_money_error(text: str, currency: str) -> None:
    try:
        minor = parse_amount(text, currency)
    except MoneyError as exc:
        assert str(exc)
        assert len(str(exc)) < 200
        return
    assert type(minor) is int
    assert 0 < minor < 10**MAX_DIGITS


@given(st.one_of(st.text(), st.text(alphabet="0123456789", min_size=4_000, max_size=6_000)))
def test_from_wire_answers_money_or_a_money_error(value: str) -> None:
    try:
        money = Money.from_wire({"currency": "USD", "value": value})
    except MoneyError as exc:
        assert len(str(exc)) < 200
        return
    assert 0 <= money.minor < 10**MAX_DIGITS


def test_from_wire_refuses_a_huge_value_briefly() -> None:
    with pytest.raises(MoneyError, match="not a whole number of minor units") as raised:
        Money.from_wire({"currency": "USD", "value": "9" * 100_000})
    assert len(str(raised.value)) < 200
