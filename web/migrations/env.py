"""Alembic environment: the schema is ``SQLModel.metadata`` as declared in web/models.py.

The database comes from ``migrate(url)`` (``config.attributes["database_url"]``) or,
when run as ``uv run alembic ...``, from the same settings the app uses (DATABASE_URL).
Migrations run through a sync driver so they work from inside or outside an event loop.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate import renderers
from alembic.autogenerate.render import render_op
from alembic.operations import ops
from sqlmodel import SQLModel

import web.models  # noqa: F401  (registers every table on SQLModel.metadata)
from web.db import make_sync_engine
from web.models import POSTGRES_EXTENSIONS, TRIGRAM_INDEXES, UTCDateTime
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


class PostgresOnly(ops.MigrateOperation):
    """Operations the migration runs on PostgreSQL only: the search extension and its
    trigram indexes (web/models.py ``TRIGRAM_INDEXES``), which SQLite has no use for."""

    def __init__(self, inner: ops.MigrateOperation) -> None:
        self.inner = inner


@renderers.dispatch_for(PostgresOnly)
def _render_postgres_only(autogen_context: Any, op: PostgresOnly) -> list[str | None]:
    # Alembic's printer indents after a line ending in ":" and dedents at None.
    return [
        'if op.get_bind().dialect.name == "postgresql":',
        *render_op(autogen_context, op.inner),
        None,
    ]


_POSTGRES_ONLY_INDEXES = {index.name for index in TRIGRAM_INDEXES}


def _wrap_postgres_only(container: ops.OpContainer) -> None:
    for i, op in enumerate(container.ops):
        if isinstance(op, ops.OpContainer):
            _wrap_postgres_only(op)
        elif (
            isinstance(op, ops.CreateIndexOp | ops.DropIndexOp)
            and op.index_name in _POSTGRES_ONLY_INDEXES
        ):
            container.ops[i] = PostgresOnly(op)


def postgres_only_ops(_context: Any, _revision: Any, directives: list[Any]) -> None:
    """``process_revision_directives``: put PostgreSQL-only DDL under a dialect check, and
    create the extensions first. Downgrades keep the extensions: other databases on the
    server, or objects outside this schema, may use them."""
    for script in directives:
        for upgrade in script.upgrade_ops_list:
            _wrap_postgres_only(upgrade)
            upgrade.ops[:0] = [
                PostgresOnly(ops.ExecuteSQLOp(f"CREATE EXTENSION IF NOT EXISTS {name}"))
                for name in POSTGRES_EXTENSIONS
            ]
        for downgrade in script.downgrade_ops_list:
            _wrap_postgres_only(downgrade)


def configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
        process_revision_directives=postgres_only_ops,
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
