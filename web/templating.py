"""Jinja environment: strict undefined, money and time filters, safe flash reading.

Customised through Litestar's ``engine_callback`` so the environment Litestar builds
(with ``autoescape=True``) is kept; ``create_app`` asserts autoescape stays on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, StrictUndefined, pass_context
from litestar.plugins.jinja import JinjaTemplateEngine
from markupsafe import Markup, escape

from web import timezones
from web.antom.money import format_minor
from web.live import refund_version
from web.models import Payment, Refund
from web.rules.access import Permission, can
from web.rules.customer_message import customer_message
from web.rules.failures import advice
from web.rules.glance import Blocker, refund_blockers
from web.services.listing import match_spans
from web.services.refunds import facts_of, status_message


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


def user_zone(context: Mapping[str, Any]) -> str | None:
    """The signed-in user's time zone (None: not chosen yet, shown as UTC)."""
    request = context.get("request")
    user = request.scope.get("user") if request is not None else None
    zone: str | None = getattr(user, "time_zone", None)
    return zone


@pass_context
def local_time(
    context: Mapping[str, Any], value: datetime | None, seconds: bool = False, zone: bool = False
) -> str:
    """``{{ refund.created_at | local }}`` → ``2026-11-25 20:36`` in the user's time zone
    (``zone=True`` adds its abbreviation: ``2026-11-25 20:36 CET``)."""
    if value is None:
        return "–"
    name = user_zone(context)
    text = timezones.local(value, name, seconds=seconds)
    return f"{text} {timezones.abbreviation(value, name)}" if zone else text


@pass_context
def local_day(context: Mapping[str, Any], value: datetime | None) -> str:
    """``{{ deadline | day }}`` → ``2026-11-25``, the day it is in the user's time zone."""
    return "–" if value is None else timezones.day(value, user_zone(context))


@pass_context
def zone_label(context: Mapping[str, Any]) -> str:
    return user_zone(context) or timezones.DEFAULT_ZONE


def blockers_of(payment: Payment) -> list[Blocker]:
    """What blocks a refund on ``payment`` now (the payments list's status column)."""
    return refund_blockers(facts_of(payment), timezones.now())


def watch_pair(shown: tuple[int, str], kind: str) -> tuple[str, str]:
    """``(12, "ab12")`` → ``("payment", "12.ab12")``: one thing a live list watches."""
    pk, version = shown
    return kind, f"{pk}.{version}"


def flashes(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Pop flash messages (set with ``litestar.plugins.flash.flash``), if a session exists."""
    session = context["request"].scope.get("session")
    if not isinstance(session, dict):
        return []
    messages: list[dict[str, Any]] = session.pop("_messages", [])
    return messages


def message_for_customer(refund: Refund, payment: Payment) -> str:
    """The ready-to-paste customer message for ``refund`` as it stands now
    (web/rules/customer_message.py); the card's trace number (ARN) or Antom's refund id is
    the reference."""
    return customer_message(
        amount=format_minor(refund.amount_minor, refund.currency),
        status=str(refund.status),
        method=payment.method,
        reference=refund.acquirer_reference_no or refund.refund_id,
    )


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
    env.filters["local"] = local_time
    env.filters["day"] = local_day
    env.filters["watch_pair"] = watch_pair
    env.globals["message_for_customer"] = message_for_customer
    env.globals["zone_label"] = zone_label
    env.globals["time_zones"] = timezones.zone_names
    env.globals["refund_sentence"] = status_message
    env.globals["failure_advice"] = advice
    env.globals["refund_version"] = refund_version
    env.globals["blockers_of"] = blockers_of
    # Templates ask the same permission table the routes declare (web/rules/access.py).
    env.globals["can"] = can
    env.globals["P"] = Permission
