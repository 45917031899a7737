"""Regenerate the single initial migration from web/models.py.

    uv run python -m web.migrations.regenerate

Autogenerate runs against a scratch PostgreSQL database (SQLite cannot reflect
expression indexes, so it would silently leave them out). The server is the one in
TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/postgres. The scratch
database is dropped afterwards and the new file is formatted with ruff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from alembic import command

from web.db import alembic_config
from web.settings import ROOT, normalise_database_url

VERSIONS = ROOT / "web" / "migrations" / "versions"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_SERVER


def with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def main() -> None:
    server = server_url().replace("postgresql+psycopg://", "postgresql://")
    name = f"rd_regen_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # Only 0001 is generated: later migrations (0002…) are written by hand. They stay
    # out of the way while Alembic autogenerates (their parent is the one rewritten).
    later = [p for p in VERSIONS.glob("*.py") if not p.name.startswith("0001_")]
    aside = Path(tempfile.mkdtemp(prefix="rd_regen_"))
    try:
        for path in later:
            shutil.move(str(path), aside / path.name)
        for old in VERSIONS.glob("0001_*.py"):
            old.unlink()
        url = normalise_database_url(with_database(server, name), ROOT)
        command.revision(alembic_config(url), message="initial", autogenerate=True, rev_id="0001")
    finally:
        for path in later:
            shutil.move(str(aside / path.name), path)
        aside.rmdir()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    files = [str(p) for p in VERSIONS.glob("0001_*.py")]
    subprocess.run(["ruff", "format", *files], check=True)  # noqa: S603, S607
    subprocess.run(["ruff", "check", "--fix", "--quiet", *files], check=False)  # noqa: S603, S607
    print("wrote", *files, file=sys.stderr)


if __name__ == "__main__":
    main()
