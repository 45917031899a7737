"""Money in integer minor units, as Antom puts it on the wire (``{"currency", "value"}``).

Floats never appear: what an agent types is parsed with ``Decimal`` straight into an
``int`` of minor units, and display goes through Babel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from babel import Locale
from babel.numbers import NumberPattern, format_currency, get_currency_symbol, parse_pattern

# Antom's own currency table (protocol notes §12): the only currencies it documents.
ANTOM_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "AUD BDT BRL CAD CNY EUR GBP HKD IDR MXN MYR NZD PEN PHP PKR PLN SGD THB TWD USD".split(),
        2,
    ),
    **dict.fromkeys("CLP JPY KRW VND".split(), 0),
}
# ISO 4217 exponents for currencies Antom does not list; used only as a fallback.
ISO_EXPONENTS: dict[str, int] = {
    **dict.fromkeys("ISK UGX PYG XAF XOF XPF VUV RWF KMF GNF DJF BIF".split(), 0),
    **dict.fromkeys("BHD KWD OMR JOD TND LYD IQD".split(), 3),
}
# Amounts that must be a multiple of N minor units (IDR keeps its last two digits 00).
MINOR_MULTIPLE: dict[str, int] = {"IDR": 100}

MAX_DIGITS = 16  # Amount.value is String(16)
# Longer than any amount a person types ("Rp 1,234,567,890,123,456.00" is 27). Checked
# before any parsing: Python's int() and str() refuse numbers past 4,300 digits with a
# ValueError (an HTTP 500), and nothing longer deserves regex or Decimal work.
MAX_INPUT_CHARS = 64
TOO_LARGE = f"The amount is too large (at most {MAX_DIGITS} digits)"
_CODE = re.compile(r"^[A-Z]{3}$")
_WIRE_VALUE = re.compile(r"[0-9]+")


class MoneyError(ValueError):
    """Input that is not a valid amount; ``str()`` is a message fit to show an agent."""


def _quoted(text: str, limit: int = 24) -> str:
    """``text`` for an error message, cut short: a pasted essay must not come back whole."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def is_antom_currency(code: str) -> bool:
    return code in ANTOM_EXPONENTS


def exponent(code: str) -> int:
    """Minor-unit exponent: Antom's table first, ISO 4217 second, 2 for other valid codes."""
    if not _CODE.fullmatch(code):
        raise MoneyError(f"{_quoted(code)} is not a currency code")
    return ANTOM_EXPONENTS.get(code, ISO_EXPONENTS.get(code, 2))


@dataclass(frozen=True, slots=True, order=True)
class Money:
    minor: int
    currency: str

    def to_wire(self) -> dict[str, str]:
        return {"currency": self.currency, "value": str(self.minor)}

    @classmethod
    def from_wire(cls, amount: dict[str, object]) -> Money:
        currency, value = amount.get("currency"), amount.get("value")
        if not isinstance(currency, str) or not isinstance(value, str):
            raise MoneyError("amount needs string currency and value")
        exponent(currency)
        # The length first, so int() never sees more digits than Antom's String(16);
        # str.isdigit() would let "²" or Arabic-Indic digits through; the wire is ASCII.
        if len(value) > MAX_DIGITS or not _WIRE_VALUE.fullmatch(value):
            raise MoneyError(f"amount value {_quoted(value)} is not a whole number of minor units")
        return cls(int(value), currency)

    def __str__(self) -> str:
        return format_minor(self.minor, self.currency)


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def format_minor(minor: int, currency: str, locale: str = "en_US") -> str:
    """``format_minor(120000, "JPY") == "¥120,000"``; locale-aware via Babel."""
    parsed, pattern = _money_pattern(currency, locale)
    text: str = pattern.apply(
        to_decimal(minor, currency), parsed, currency=currency, currency_digits=False
    )
    return text


@lru_cache(maxsize=512)
def _money_pattern(currency: str, locale: str) -> tuple[Locale, NumberPattern]:
    """Babel's locale and pattern for one currency, parsed once: what ``format_currency``
    redoes on every call (list pages format a few hundred amounts each)."""
    places = exponent(currency)
    # An explicit pattern: Babel's own digit table disagrees with Antom's (IDR, TWD).
    return Locale.parse(locale), parse_pattern("¤#,##0" + ("." + "0" * places if places else ""))


def _format_minor_uncached(minor: int, currency: str, locale: str = "en_US") -> str:
    """The same through ``format_currency`` (what the cache must agree with; tests)."""
    places = exponent(currency)
    pattern = "¤#,##0" + ("." + "0" * places if places else "")
    return format_currency(
        to_decimal(minor, currency), currency, format=pattern, locale=locale, currency_digits=False
    )


def format_plain(minor: int, currency: str) -> str:
    """The amount as an agent would type it back: ``1234.50``, no symbol, no grouping."""
    places = exponent(currency)
    return f"{to_decimal(minor, currency):.{places}f}"


# Signs people type for each Antom currency that Babel's symbols below may miss. A sign of
# another currency is refused rather than ignored: "€12" on a USD payment is a mistake.
_LOCAL_SIGNS: dict[str, str] = {
    "AUD": "$ AU$",
    "BDT": "৳ Tk",
    "BRL": "R$",
    "CAD": "$ C$",
    "CLP": "$",
    "CNY": "¥ ￥ 元 RMB",
    "EUR": "€",
    "GBP": "£",
    "HKD": "$",
    "IDR": "Rp",
    "JPY": "¥ ￥ 円",
    "KRW": "₩ ￦ 원",
    "MXN": "$",
    "MYR": "RM",
    "NZD": "$",
    "PEN": "S/",
    "PHP": "₱",
    "PKR": "Rs",
    "PLN": "zł",
    "SGD": "$ S$",
    "THB": "฿",
    "TWD": "$ NT$",
    "USD": "$",
    "VND": "₫",
}
_SYMBOLS_CACHE: dict[str, list[str]] = {}


def _symbols(currency: str) -> list[str]:
    """This currency's signs, longest first (so "CA$" is stripped before "$")."""
    if currency not in _SYMBOLS_CACHE:
        found = {currency, *_LOCAL_SIGNS.get(currency, "").split()}
        for locale in ("en_US", "en_GB", "ja_JP", "zh_CN", "ko_KR", "id_ID", "en_IN"):
            found.add(get_currency_symbol(currency, locale=locale))
        _SYMBOLS_CACHE[currency] = sorted(found, key=len, reverse=True)
    return _SYMBOLS_CACHE[currency]


_FOREIGN_SIGN = re.compile(r"^[^0-9.,\s]+|[^0-9.,\s]+$")
_NUMBER = re.compile(r"[0-9][0-9,]*(\.[0-9]*)?|\.[0-9]+")


def parse_amount(text: str, currency: str) -> int:
    """Parse what an agent types ("12.5", "1,234.56", "¥500") into minor units.

    Raises :class:`MoneyError` with a message specific to what is wrong.
    """
    places = exponent(currency)
    raw = text.strip()
    if not raw:
        raise MoneyError("Enter an amount")
    if len(raw) > MAX_INPUT_CHARS:
        if any(c.isdigit() for c in raw):
            raise MoneyError(TOO_LARGE)
        raise MoneyError(f"{_quoted(raw)} is not a number")
    for symbol in _symbols(currency):
        if raw.upper().startswith(symbol.upper()):
            raw = raw[len(symbol) :].strip()
            break
        if raw.upper().endswith(symbol.upper()):
            raw = raw[: -len(symbol)].strip()
            break
    if raw.startswith("-") or raw.startswith("−"):
        raise MoneyError("The amount cannot be negative")
    sign = _FOREIGN_SIGN.search(raw)
    if sign and _NUMBER.fullmatch(raw.replace(sign.group(0), "", 1).strip()):
        raise MoneyError(
            f"{sign.group(0)!r} is not a {currency} sign; enter the amount in {currency}"
        )
    if not _NUMBER.fullmatch(raw):
        raise MoneyError(f"{_quoted(text.strip())} is not a number")
    if "," in raw and not re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})*(\.[0-9]*)?", raw):
        raise MoneyError("Use commas only between groups of three digits, like 1,234.56")
    try:
        value = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        raise MoneyError(f"{_quoted(text.strip())} is not a number") from None
    # Trailing zeros count: "10.000" may be ten thousand written the Indonesian or German
    # way, and reading it as 10.00 would refund a hundredth of what was meant.
    written_places = len(raw.partition(".")[2])
    if written_places > places:
        if places == 0:
            raise MoneyError(f"{currency} has no minor unit: enter a whole number")
        raise MoneyError(f"{currency} allows at most {places} decimal places")
    # Counted on the text, before any int(): Decimal's 28-digit context would round a
    # longer number, and leading zeros ("0012.50") are no reason to refuse. The digits of
    # the minor units are these whole digits plus the currency's places.
    whole_digits = len(raw.partition(".")[0].replace(",", "").lstrip("0"))
    if whole_digits + places > MAX_DIGITS:
        raise MoneyError(TOO_LARGE)
    minor = int(value.scaleb(places))
    if minor == 0:
        raise MoneyError("The amount must be greater than zero")
    return minor


def minor_unit_problem(minor: int, currency: str) -> str | None:
    """A currency rule an amount in minor units breaks, or None (IDR must end in 00)."""
    multiple = MINOR_MULTIPLE.get(currency)
    if multiple and minor % multiple:
        step = format_minor(multiple, currency)
        return f"{currency} amounts must be a multiple of {step}"
    return None
