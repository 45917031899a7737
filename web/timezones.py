"""Times as the signed-in person reads them: in their own time zone, ISO 8601 dates.

Every timestamp is stored in UTC (``web.models.UTCDateTime``). Pages show it in the
user's time zone (``User.time_zone``, an IANA name such as ``Europe/Paris``; set on the
account page, and taken from the browser the first time when it is not set), written
``2026-11-25 20:36`` — year first, 24-hour clock, whatever the browser's locale.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DEFAULT_ZONE = "UTC"


@cache
def zone_names() -> tuple[str, ...]:
    """Every IANA zone this machine knows, sorted, "UTC" first."""
    names = sorted(
        n for n in available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV/"))
    )
    return (DEFAULT_ZONE, *names)


def valid_zone(name: str | None) -> str | None:
    """The zone's canonical spelling if ``name`` is a known IANA zone, else None."""
    text = (name or "").strip()
    if not text or len(text) > 64:
        return None
    if text == DEFAULT_ZONE:
        return DEFAULT_ZONE
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return text if text in zone_names() else None


@cache
def zone(name: str | None) -> tzinfo:
    """The zone called ``name``; UTC for none or an unknown one (never an error page)."""
    known = valid_zone(name)
    return UTC if known in (None, DEFAULT_ZONE) else ZoneInfo(known)


def local(value: datetime, zone_name: str | None, *, seconds: bool = False) -> str:
    """``2026-11-25 20:36`` (or ``…:12`` with seconds) in the zone."""
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return value.astimezone(zone(zone_name)).strftime(fmt)


def abbreviation(value: datetime, zone_name: str | None) -> str:
    """``CET``, ``EST``, ``+08``, ``UTC``: the zone's name at that moment."""
    return value.astimezone(zone(zone_name)).strftime("%Z") or DEFAULT_ZONE


def day(value: datetime, zone_name: str | None) -> str:
    """``2026-11-25``: the day it is in the zone."""
    return value.astimezone(zone(zone_name)).strftime("%Y-%m-%d")


def now() -> datetime:
    return datetime.now(UTC)
