"""Alembic environment: the schema is ``SQLModel.metadata`` as declared in web/models.py.

The database comes from ``migrate(url)`` (``config.attributes["database_url"]``) or,
when run as ``uv run alembic ...``, from the same settings the app uses (DATABASE_URL).
Migrations run through a sync driver so they work from inside or outside an event loop.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlmodel import SQLModel

import web.models  # noqa: F401  (registers every table on SQLModel.metadata)
from web.db import make_sync_engine
from web.models import UTCDateTime
from web.settings import Settings

config = context.config
target_metadata = SQLModel.metadata


def database_url() -> str:
    url = config.attributes.get("database_url")
    if isinstance(url, str):
        return url
    return Settings.from_env().database_url


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Our UTC column type stores as a plain timezone-aware DateTime: no app import in migrations.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_sync_engine(database_url())
    try:
        with engine.connect() as connection:
            configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
