"""The desk's schema for tests that build it from the models (fast) instead of running
the migrations: the tables, plus the rows migration 0002 seeds (the reason list)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

from web.models import RefundReason
from web.services.reasons import default_rows


async def create_schema(conn: AsyncConnection) -> None:
    await conn.run_sync(SQLModel.metadata.create_all)
    await seed(conn)


async def empty_schema(conn: AsyncConnection) -> None:
    """Every row gone, the seeded ones back: a fresh desk without re-creating tables."""
    for table in reversed(SQLModel.metadata.sorted_tables):
        await conn.execute(table.delete())
    await seed(conn)


async def seed(conn: AsyncConnection) -> None:
    await conn.execute(sa.insert(RefundReason), default_rows())


def create_schema_sync(engine: sa.Engine) -> None:
    SQLModel.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(RefundReason), default_rows())
