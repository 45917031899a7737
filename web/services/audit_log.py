"""Reading the audit trail: the admin page's filters and its keyset-paginated list.

The read side of web/services/audit.py (which only appends). No Litestar here: the route
(web/routes/audit.py) turns query parameters into ``AuditFilters`` with ``audit_filters``
and renders the ``Page`` that ``list_events`` returns: newest first on (at, id), paged
with the list pages' own cursors (web/services/listing.py ``time_page``), so rows that
share a timestamp are never shown twice or skipped, and events recorded while someone
reads do not shift the pages they are on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import AuditEvent
from web.services.audit import Action
from web.services.listing import PAGE_SIZE, Page, date_range, parse_day, time_page
from web.timezones import valid_zone

# What the rows name as their object (``object_type``), for the filter's choices.
OBJECT_TYPES: dict[str, str] = {
    "refund": "Refund",
    "user": "User",
    "api_key": "API key",
    "order_import": "Order import (CSV)",
    "limit": "Limit",
    "reason": "Reason",
    "worklist_item": "Worklist item",
}
_TEXT_MAX = 254
_ID_MAX = 64
# A value longer than this is cut in the compact before/after view (the row keeps it).
_SHOWN_MAX = 80
_MISSING = object()


@dataclass(frozen=True, slots=True)
class AuditFilters:
    actor: str = ""  # any part of the actor's label (an email, an API key's name, "cli")
    action: str = ""  # an ``Action`` value
    object_type: str = ""
    object_id: str = ""
    date_from: date | None = None
    date_to: date | None = None
    cursor: str = ""
    # The reader's time zone: which days the date range means (not a query parameter).
    zone: str = "UTC"

    @property
    def active(self) -> bool:
        return bool(
            self.actor
            or self.action
            or self.object_type
            or self.object_id
            or self.date_from
            or self.date_to
        )

    def query_params(self, **changes: Any) -> dict[str, str]:
        """The filters as GET parameters, for links that keep them (pagination)."""
        f = replace(self, **changes)
        params = {
            "actor": f.actor,
            "action": f.action,
            "object_type": f.object_type,
            "object_id": f.object_id,
            "date_from": f.date_from.isoformat() if f.date_from else "",
            "date_to": f.date_to.isoformat() if f.date_to else "",
            "cursor": f.cursor,
        }
        return {k: v for k, v in params.items() if v}


def audit_filters(
    *,
    actor: str = "",
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    date_from: str = "",
    date_to: str = "",
    cursor: str = "",
    zone: str | None = None,
) -> AuditFilters:
    """Filters from raw query-string values; an unknown action or a malformed date is
    ignored (never an error page)."""
    known_actions = {a.value for a in Action}
    return AuditFilters(
        actor=actor.strip()[:_TEXT_MAX],
        action=action.strip() if action.strip() in known_actions else "",
        object_type=object_type.strip()[:32],
        object_id=object_id.strip()[:_ID_MAX],
        date_from=parse_day(date_from),
        date_to=parse_day(date_to),
        cursor=cursor.strip()[:200],
        zone=valid_zone(zone) or "UTC",
    )


def _where(f: AuditFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.actor:
        # Case-insensitive, % and _ are plain characters.
        where.append(col(AuditEvent.actor_label).icontains(f.actor, autoescape=True))
    if f.action:
        where.append(col(AuditEvent.action) == f.action)
    if f.object_type:
        where.append(col(AuditEvent.object_type) == f.object_type)
    if f.object_id:
        where.append(col(AuditEvent.object_id) == f.object_id)
    where.extend(date_range(col(AuditEvent.at), f.date_from, f.date_to, f.zone))
    return where


async def list_events(
    session: AsyncSession, f: AuditFilters, *, page_size: int = PAGE_SIZE
) -> Page[AuditEvent]:
    """One page of matching events, newest first."""
    return await time_page(
        session,
        select(AuditEvent).where(*_where(f)),
        at=col(AuditEvent.at),
        id_column=col(AuditEvent.id),
        cursor=f.cursor,
        page_size=page_size,
    )


def action_choices() -> list[tuple[str, str]]:
    """(value, label) for the action filter: ``auth.sign_in`` reads "auth: sign in"."""
    return [(a.value, a.value.replace(".", ": ", 1).replace("_", " ")) for a in Action]


def object_type_choices(f: AuditFilters) -> list[tuple[str, str]]:
    """The known object types, plus the one in the URL if it is unusual (stays selected)."""
    choices = list(OBJECT_TYPES.items())
    if f.object_type and f.object_type not in OBJECT_TYPES:
        choices.append((f.object_type, f.object_type))
    return choices


@dataclass(frozen=True, slots=True)
class Change:
    """One field of a before/after pair, as the page shows it."""

    field: str
    before: str | None  # None: the field was not there before
    after: str | None


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


def changes(event: AuditEvent) -> list[Change]:
    """The fields ``before`` and ``after`` differ on (or carry, when only one exists),
    in a stable order: ``status: pending → approved``."""
    before, after = event.before or {}, event.after or {}
    fields: Sequence[str] = list(dict.fromkeys([*before, *after]))
    return [
        Change(
            name,
            _shown(before[name]) if name in before else None,
            _shown(after[name]) if name in after else None,
        )
        for name in fields
        if before.get(name, _MISSING) != after.get(name, _MISSING)
    ]


def details(event: AuditEvent) -> list[tuple[str, str]]:
    """The row's ``detail`` as (key, compact value) pairs."""
    return [(k, _shown(v)) for k, v in (event.detail or {}).items()]
