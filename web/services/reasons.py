"""The managed reason list: what agents may pick and what each reason demands."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import RefundReason
from web.rules.refunds import DEFAULT_REASONS, EXTERNAL_REASON, Reason
from web.services import audit
from web.services.audit import Action, Actor


def _rule(row: RefundReason) -> Reason:
    return Reason(
        code=row.code,
        label=row.label,
        active=row.active,
        note_required=row.note_required,
        ticket_required=row.ticket_required,
        approval_required=row.approval_required,
        max_percent=row.max_percent,
    )


async def catalogue(session: AsyncSession) -> list[Reason]:
    """Every reason, active or not, in the order admins gave them."""
    rows = await session.exec(
        select(RefundReason).order_by(col(RefundReason.position), col(RefundReason.code))
    )
    return [_rule(row) for row in rows]


def default_rows(reasons: Sequence[Reason] = DEFAULT_REASONS) -> list[dict[str, object]]:
    """The starting list as table rows (the migration and the tests' databases)."""
    return [
        {
            "code": r.code,
            "label": r.label,
            "active": r.active,
            "note_required": r.note_required,
            "ticket_required": r.ticket_required,
            "approval_required": r.approval_required,
            "max_percent": r.max_percent,
            "position": i * 10,
        }
        for i, r in enumerate(reasons)
    ]


# ---------------------------------------------------------------- admin: editing the list

CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]{1,31}")
FLAGS = ("active", "note_required", "ticket_required", "approval_required")


class ReasonError(ValueError):
    """A reason change that cannot be made; ``errors`` has one message per field
    (code, label, max_percent, position)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ReasonInput:
    """What an admin typed for a reason (the form, or the CLI's options)."""

    label: str
    active: bool = True
    note_required: bool = False
    ticket_required: bool = False
    approval_required: bool = False
    max_percent: str = ""  # 1-100, or empty: no share cap
    position: str = ""  # empty: after the last one (new) / unchanged (edit)


def _snapshot(row: RefundReason) -> dict[str, object]:
    return {
        "label": row.label,
        **{flag: getattr(row, flag) for flag in FLAGS},
        "max_percent": row.max_percent,
        "position": row.position,
    }


def _parse(given: ReasonInput) -> tuple[dict[str, object], dict[str, str]]:
    values: dict[str, object] = {flag: getattr(given, flag) for flag in FLAGS}
    errors: dict[str, str] = {}
    label = given.label.strip()
    if not label:
        errors["label"] = "Enter a label agents will see"
    elif len(label) > 80:
        errors["label"] = "The label must be at most 80 characters"
    values["label"] = label
    percent = given.max_percent.strip().rstrip("%").strip()
    if percent:
        if not percent.isascii() or not percent.isdigit() or not 1 <= int(percent) <= 100:
            errors["max_percent"] = "Enter a whole number from 1 to 100, or leave it empty"
        else:
            values["max_percent"] = int(percent)
    else:
        values["max_percent"] = None
    position = given.position.strip()
    if position:
        if not re.fullmatch(r"-?[0-9]{1,6}", position):
            errors["position"] = "Enter a whole number (smaller comes first)"
        else:
            values["position"] = int(position)
    return values, errors


async def reason_rows(session: AsyncSession) -> Sequence[RefundReason]:
    return (
        await session.exec(
            select(RefundReason).order_by(col(RefundReason.position), col(RefundReason.code))
        )
    ).all()


async def save_reason(
    session: AsyncSession, code: str, given: ReasonInput, *, actor: Actor, new: bool
) -> RefundReason:
    """Add a reason (``new``) or change one; one ``reason.changed`` audit row with the
    values before (None for a new one) and after. Codes never change and reasons are
    never deleted (refunds keep their code): a reason no longer used is deactivated."""
    code = code.strip()
    values, errors = _parse(given)
    row = await session.get(RefundReason, code) if code else None
    if new:
        if not CODE_PATTERN.fullmatch(code):
            errors["code"] = "Use 2 to 32 lower-case letters, digits and _, starting with a letter"
        elif code == EXTERNAL_REASON:
            errors["code"] = f"“{EXTERNAL_REASON}” is kept for refunds made outside the desk"
        elif row is not None:
            errors["code"] = f"There is already a reason “{code}”; edit it instead"
    elif row is None:
        errors["code"] = f"There is no reason “{code}”"
    if errors:
        raise ReasonError(errors)
    if row is None:
        last = (await session.exec(select(sa.func.max(RefundReason.position)))).one()
        values.setdefault("position", (last or 0) + 10)
        row = RefundReason(code=code, label=str(values["label"]))
        before = None
    else:
        before = _snapshot(row)
    for name, value in values.items():
        setattr(row, name, value)
    session.add(row)
    await session.flush()
    after = _snapshot(row)
    if before != after:
        await audit.record(
            session,
            Action.REASON_CHANGED,
            actor,
            object_type="refund_reason",
            object_id=code,
            before=before,
            after=after,
        )
    return row
