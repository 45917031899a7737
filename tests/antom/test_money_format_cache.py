"""The cached money formatter says exactly what Babel's ``format_currency`` says."""

from __future__ import annotations

import pytest

from web.antom.money import ANTOM_EXPONENTS, _format_minor_uncached, format_minor


@pytest.mark.parametrize("currency", sorted(ANTOM_EXPONENTS))
@pytest.mark.parametrize("locale", ["en_US", "de_DE", "ja_JP"])
def test_cached_pattern_formats_like_babel(currency: str, locale: str) -> None:
    for minor in (0, 1, 5, 99, 100, 12_345, -250, 1_000_000_007):
        assert format_minor(minor, currency, locale) == _format_minor_uncached(
            minor, currency, locale
        )
