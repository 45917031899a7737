"""Seed the reason list; make the audit trail append-only on PostgreSQL.

Written by hand (``web.migrations.regenerate`` only rewrites 0001).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from web.services.reasons import default_rows

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The app's own database role can neither rewrite nor erase history: any UPDATE, DELETE
# or TRUNCATE of audit_events raises. (A superuser can drop the trigger; that is a
# deliberate, visible act, not something a bug in the app can do.)
AUDIT_GUARD = """
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    reasons = sa.table(
        "refund_reasons",
        sa.column("code", sa.String),
        sa.column("label", sa.String),
        sa.column("active", sa.Boolean),
        sa.column("note_required", sa.Boolean),
        sa.column("ticket_required", sa.Boolean),
        sa.column("approval_required", sa.Boolean),
        sa.column("max_percent", sa.Integer),
        sa.column("position", sa.Integer),
    )
    op.bulk_insert(reasons, default_rows())
    if op.get_bind().dialect.name == "postgresql":
        op.execute(AUDIT_GUARD)
        op.execute(
            "CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE "
            "ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE "
            "ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    op.execute("DELETE FROM refund_reasons")
