"""Jinja environment: strict undefined, money and time filters, safe flash reading.

Customised through Litestar's ``engine_callback`` so the environment Litestar builds
(with ``autoescape=True``) is kept; ``create_app`` asserts autoescape stays on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from markupsafe import Markup, escape

from web.antom.money import format_minor
from web.services.listing import match_spans


def money(minor: int | None, currency: str) -> str:
    """``{{ 120000 | money("JPY") }}`` → ``¥120,000``; None shows as an en dash."""
    return "–" if minor is None else format_minor(minor, currency)


def utc(value: datetime | None, seconds: bool = False) -> str:
    """``2026-11-25 19:36 UTC``: the one absolute time format on every page."""
    if value is None:
        return "–"
    fmt = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"
    return value.astimezone(UTC).strftime(fmt)


def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago (or until) ``value``: ``just now``, ``4 min ago``, ``in 2 h``."""
    if value is None:
        return "–"
    now = now or datetime.now(UTC)
    seconds = int((now - value).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size * 0.95 or unit == "min":
            count = max(1, round(seconds / size))
            label = f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''}"
            break
    return f"in {label}" if future else f"{label} ago"


def highlight(value: str | None, q: str) -> Markup:
    """``{{ p.buyer_email | highlight(filters.q) }}``: the value, escaped, with the parts
    the search matched in ``<mark>`` (the same rule as the query, web/services/listing.py).
    """
    if not value:
        return Markup("")
    parts: list[str] = []
    at = 0
    for start, end in match_spans(value, q):
        parts += [escape(value[at:start]), Markup("<mark>"), escape(value[start:end])]
        parts.append(Markup("</mark>"))
        at = end
    parts.append(escape(value[at:]))
    return Markup("").join(parts)


def flashes(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Pop flash messages (set with ``litestar.plugins.flash.flash``), if a session exists."""
    session = context["request"].scope.get("session")
    if not isinstance(session, dict):
        return []
    messages: list[dict[str, Any]] = session.pop("_messages", [])
    return messages


def configure_jinja(engine: JinjaTemplateEngine) -> None:
    env: Environment = engine.engine
    env.undefined = StrictUndefined
    env.trim_blocks = True
    env.lstrip_blocks = True
    env.filters["money"] = money
    env.globals["money"] = money
    env.filters["utc"] = utc
    env.filters["age"] = age
    env.filters["highlight"] = highlight
    env.globals["now"] = lambda: datetime.now(UTC)
    engine.register_template_callable("get_flashes", flashes)
