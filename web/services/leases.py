"""Leases on refund rows: work shared out between any number of processes.

A process *claims* due refunds in one short transaction (``UPDATE … WHERE id IN
(SELECT … FOR UPDATE SKIP LOCKED)``: PostgreSQL skips rows another process is claiming;
SQLite has one writer at a time anyway), *renews* its lease right before each Antom call
and skips the refund if the lease was lost, and *releases* it in the transaction that
writes back, fenced on ``lease_owner``: whoever took the row meanwhile wins, and no two
processes ever ask Antom about one refund at the same moment. The poller uses these,
and so do bulk runs: on each row's refund, and on the batch itself (``model=BulkBatch``:
one driver per batch across instances).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.db import session_scope
from web.models import BulkBatch, Refund, utcnow

Leased = type[Refund] | type[BulkBatch]


def new_owner() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_free(now: datetime, model: Leased = Refund) -> sa.ColumnElement[bool]:
    return sa.or_(col(model.lease_until).is_(None), col(model.lease_until) < now)


class Leases:
    """One process's leases on rows of ``model`` (refunds unless told otherwise)."""

    def __init__(
        self, engine: AsyncEngine, owner: str, lease_s: float, model: Leased = Refund
    ) -> None:
        self.engine = engine
        self.owner = owner
        self.lease_s = lease_s
        self.model = model
        # When each of our leases was taken or last extended (monotonic clock).
        self._leased_at: dict[int, float] = {}

    async def claim(
        self,
        now: datetime,
        conditions: Sequence[sa.ColumnElement[bool]],
        order: Sequence[Any],
        limit: int,
    ) -> list[int]:
        """Lease up to ``limit`` free refunds matching ``conditions``, in ``order``."""
        candidates = (
            select(self.model.id)
            .where(*conditions, lease_free(now, self.model))
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with session_scope(self.engine) as session:
            rows = await session.exec(
                sa.update(self.model)
                .where(
                    col(self.model.id).in_(candidates.scalar_subquery()),
                    lease_free(now, self.model),
                )
                .values(lease_owner=self.owner, lease_until=now + timedelta(seconds=self.lease_s))
                .returning(col(self.model.id))
                .execution_options(synchronize_session=False)
            )
            claimed = sorted(int(pk) for pk in rows.scalars().all())
        at = time.monotonic()
        self._leased_at.update(dict.fromkeys(claimed, at))
        return claimed

    def held(self, refund_pk: int) -> None:
        """A lease this owner wrote with the row itself (a bulk run writes its refunds
        ahead already leased, so no poller asks about them while they are being sent)."""
        self._leased_at[refund_pk] = time.monotonic()

    async def renew(self, refund_pk: int) -> bool:
        """Make sure our lease outlasts the Antom call about to start; False if it is no
        longer ours. A lease taken moments ago (first half of its life) already does, as
        long as ``lease_s / 2`` exceeds the client's timeout; older ones are extended."""
        leased_at = self._leased_at.get(refund_pk)
        if leased_at is not None and time.monotonic() - leased_at < self.lease_s / 2:
            return True
        now = utcnow()
        async with session_scope(self.engine) as session:
            renewed = await session.exec(
                sa.update(self.model)
                .where(
                    col(self.model.id) == refund_pk,
                    col(self.model.lease_owner) == self.owner,
                    col(self.model.lease_until) > now,
                )
                .values(lease_until=now + timedelta(seconds=self.lease_s))
                .execution_options(synchronize_session=False)
            )
            if renewed.rowcount != 1:
                return False
        self._leased_at[refund_pk] = time.monotonic()
        return True

    async def release(
        self, session: AsyncSession, refund_pk: int, next_check_at: datetime | None
    ) -> bool:
        """Give the row back and schedule its next check, in the caller's transaction;
        False if the lease was no longer ours (then nothing may be written)."""
        self._leased_at.pop(refund_pk, None)
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if next_check_at is not None:
            values["next_check_at"] = next_check_at
        fenced = await session.exec(
            sa.update(self.model)
            .where(col(self.model.id) == refund_pk, col(self.model.lease_owner) == self.owner)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return fenced.rowcount == 1

    async def release_all(self) -> None:
        """Give back every lease we hold (shutdown): another process may take them at once."""
        self._leased_at.clear()
        async with session_scope(self.engine) as session:
            await session.exec(
                sa.update(self.model)
                .where(col(self.model.lease_owner) == self.owner)
                .values(lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
