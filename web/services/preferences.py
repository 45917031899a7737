"""A person's own settings at the desk (no Litestar): for now, their time zone."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import User
from web.timezones import DEFAULT_ZONE, valid_zone


@dataclass(frozen=True, slots=True)
class ZoneChange:
    zone: str | None  # what is stored now
    changed: bool  # whether pages now show times differently
    error: str | None = None


async def set_time_zone(
    session: AsyncSession, user: User, name: str, *, only_if_unset: bool = False
) -> ZoneChange:
    """Store ``name`` (an IANA zone) as the user's time zone.

    ``only_if_unset`` is the browser's own guess on a first visit: it never overrides a
    zone the person chose.
    """
    row = await session.get(User, user.id)
    if row is None:
        return ZoneChange(None, False, "No such user")
    if only_if_unset and row.time_zone:
        return ZoneChange(row.time_zone, False)
    zone = valid_zone(name)
    if zone is None:
        return ZoneChange(row.time_zone, False, f"“{name[:64]}” is not a time zone the desk knows")
    # Not choosing showed UTC: choosing UTC changes nothing on the pages.
    changed = zone != (row.time_zone or DEFAULT_ZONE)
    row.time_zone = zone
    user.time_zone = zone  # the copy this request renders with
    await session.flush()
    return ZoneChange(zone, changed)
