"""Working a worklist item: assign it, comment on it, close it with a note, reopen it.

The desk raises items (web/services/alerts.py ``raise_alert``; queues in
web/rules/worklists.py); only people change them, here. Every change adds one entry to
the item's thread (``AlertNote``: who, when, what) and one audit row, in the caller's
transaction. State changes are conditional updates (``WHERE resolved_at IS NULL``…), so
two leads closing the same item at once close it once: the second is told who did.
No Litestar here.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Alert, AlertNote, User, utcnow
from web.rules.access import Permission, can
from web.rules.worklists import NOTE_MAX, NoteKind, queue_of
from web.services import audit
from web.services.audit import Action, Actor


class WorklistError(Exception):
    """Nothing changed; the message says why, for people."""


class NoSuchItem(WorklistError):
    pass


@dataclass(frozen=True, slots=True)
class Changed:
    alert: Alert
    note: AlertNote


def _text(note: str) -> str:
    return " ".join(note.split())[:NOTE_MAX]


async def _item(session: AsyncSession, alert_pk: int) -> Alert:
    alert = await session.get(Alert, alert_pk, populate_existing=True)
    if alert is None:
        raise NoSuchItem("No such worklist item")
    return alert


async def _conditional(
    session: AsyncSession, alert_pk: int, where: sa.ColumnElement[bool], **values: object
) -> bool:
    done = await session.exec(
        sa.update(Alert)
        .where(col(Alert.id) == alert_pk, where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return done.rowcount == 1


async def _noted(
    session: AsyncSession,
    alert_pk: int,
    kind: NoteKind,
    body: str,
    by: User,
    who: Actor | None,
    action: Action,
    *,
    before: dict[str, object] | None = None,
    after: dict[str, object] | None = None,
) -> Changed:
    note = AlertNote(alert_pk=alert_pk, at=utcnow(), author_id=by.id, kind=kind, body=body)
    session.add(note)
    alert = await _item(session, alert_pk)
    await audit.record(
        session,
        action,
        who or Actor(user_id=by.id, label=by.email),
        object_type="worklist_item",
        object_id=alert_pk,
        before=before,
        after=after,
        detail={"kind": str(alert.kind), "queue": queue_of(alert.kind).value}
        | ({"note": body} if kind is not NoteKind.ASSIGN else {}),
    )
    await session.flush()
    return Changed(alert, note)


async def assignable(session: AsyncSession, user_pk: int) -> User | None:
    """The person, if an item may be assigned to them (active, sees the worklists)."""
    user = await session.get(User, user_pk)
    return user if user is not None and can(user, Permission.VIEW_ALERTS) else None


async def assign(
    session: AsyncSession,
    alert_pk: int,
    assignee_pk: int | None,
    *,
    by: User,
    who: Actor | None = None,
) -> Changed:
    """Assign an open item to a lead or admin (None: unassign it)."""
    alert = await _item(session, alert_pk)
    if alert.resolved_at is not None:
        raise WorklistError("This item is closed; reopen it before assigning it")
    assignee = None
    if assignee_pk is not None:
        assignee = await assignable(session, assignee_pk)
        if assignee is None:
            raise WorklistError("Items can only be assigned to active team leads and admins")
    previous = alert.assignee_id
    if previous == assignee_pk:
        raise WorklistError(
            f"It is already assigned to {assignee.name}" if assignee else "It is not assigned"
        )
    moved = await _conditional(
        session,
        alert_pk,
        sa.and_(
            col(Alert.resolved_at).is_(None),
            col(Alert.assignee_id).is_(None)
            if previous is None
            else col(Alert.assignee_id) == previous,
        ),
        assignee_id=assignee_pk,
        assigned_at=utcnow() if assignee_pk is not None else None,
    )
    if not moved:
        raise WorklistError("Someone changed this item meanwhile; look again")
    body = f"Assigned to {assignee.name}" if assignee else "Unassigned"
    return await _noted(
        session,
        alert_pk,
        NoteKind.ASSIGN,
        body,
        by,
        who,
        Action.WORKLIST_ASSIGNED,
        before={"assignee_id": previous},
        after={"assignee_id": assignee_pk},
    )


async def comment(
    session: AsyncSession, alert_pk: int, text: str, *, by: User, who: Actor | None = None
) -> Changed:
    """Add a comment to the item's thread (open or closed)."""
    body = _text(text)
    if not body:
        raise WorklistError("Write a comment first")
    await _item(session, alert_pk)
    return await _noted(
        session, alert_pk, NoteKind.COMMENT, body, by, who, Action.WORKLIST_COMMENTED
    )


async def close(
    session: AsyncSession, alert_pk: int, note: str, *, by: User, who: Actor | None = None
) -> Changed:
    """Close an open item with a note of what was done (required)."""
    body = _text(note)
    if not body:
        raise WorklistError("Say what was done before closing it")
    await _item(session, alert_pk)
    now = utcnow()
    if not await _conditional(
        session, alert_pk, col(Alert.resolved_at).is_(None), resolved_at=now, resolved_by=by.id
    ):
        raise WorklistError(await _closed_by(session, alert_pk))
    return await _noted(
        session,
        alert_pk,
        NoteKind.CLOSE,
        body,
        by,
        who,
        Action.WORKLIST_CLOSED,
        before={"open": True},
        after={"open": False},
    )


async def reopen(
    session: AsyncSession, alert_pk: int, note: str, *, by: User, who: Actor | None = None
) -> Changed:
    """Reopen a closed item, saying why (required). It keeps its thread."""
    body = _text(note)
    if not body:
        raise WorklistError("Say why it needs another look before reopening it")
    await _item(session, alert_pk)
    if not await _conditional(
        session,
        alert_pk,
        col(Alert.resolved_at).is_not(None),
        resolved_at=None,
        resolved_by=None,
    ):
        raise WorklistError("This item is open already")
    return await _noted(
        session,
        alert_pk,
        NoteKind.REOPEN,
        body,
        by,
        who,
        Action.WORKLIST_REOPENED,
        before={"open": False},
        after={"open": True},
    )


async def _closed_by(session: AsyncSession, alert_pk: int) -> str:
    alert = await _item(session, alert_pk)
    closer = await session.get(User, alert.resolved_by) if alert.resolved_by else None
    return f"{closer.name} closed it already" if closer else "It is closed already"
