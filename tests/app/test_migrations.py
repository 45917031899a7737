"""The Alembic history builds exactly the schema web/models.py declares.

If this fails after a model change, regenerate the single initial migration:
``uv run python -m web.migrations.regenerate`` (see that module).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import web.models  # registers the tables on SQLModel.metadata
from web.db import alembic_config, make_sync_engine, migrate


def schema_diff(url: str) -> list[object]:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            # SQLite cannot reflect expression indexes; PostgreSQL checks those.
            warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression")
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = make_sync_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_migrations_are_the_generated_one_and_the_hand_written_ones() -> None:
    versions = Path(web.models.__file__).parent / "migrations" / "versions"
    # 0001 is generated from the models; later ones are written by hand (data, triggers).
    assert sorted(p.name for p in versions.glob("*.py")) == [
        "0001_initial.py",
        "0002_reasons_and_audit.py",
    ]


def test_sqlite_upgrade_head_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}"
    migrate(url)
    assert {
        "users",
        "spending_limits",
        "password_tokens",
        "payments",
        "refunds",
        "refund_events",
    } <= tables(url)
    assert schema_diff(url) == []


def test_sqlite_downgrade_to_base_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.sqlite3'}"
    migrate(url)
    command.downgrade(alembic_config(url), "base")
    assert tables(url) == {"alembic_version"}
    migrate(url)
    assert schema_diff(url) == []


def test_a_model_change_without_migration_is_detected(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'drift.sqlite3'}"
    migrate(url)
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)")
    engine.dispose()
    assert any("nickname" in repr(diff) for diff in schema_diff(url))


@pytest.mark.postgres
def test_postgres_upgrade_head_matches_the_models(postgres_url: str) -> None:
    # postgres_url is a fresh database copied from a template migrated by migrate().
    assert {
        "users",
        "spending_limits",
        "password_tokens",
        "payments",
        "refunds",
        "refund_events",
    } <= tables(postgres_url)
    assert schema_diff(postgres_url) == []


@pytest.mark.postgres
def test_postgres_migrates_from_empty(postgres_url: str) -> None:
    command.downgrade(alembic_config(postgres_url), "base")
    assert tables(postgres_url) == {"alembic_version"}
    migrate(postgres_url)
    assert schema_diff(postgres_url) == []
