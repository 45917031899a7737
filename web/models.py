"""Database tables (SQLModel). The Alembic history under web/migrations is the schema.

Money columns are integer minor units of the row's currency. Timestamps are UTC and
always come back timezone-aware, on SQLite too (see ``UTCDateTime``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlmodel import Field, SQLModel, col


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores UTC; returns aware datetimes on every backend (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class Role(StrEnum):
    AGENT = "agent"
    LEAD = "lead"
    ADMIN = "admin"


class RefundStatus(StrEnum):
    """A refund's life. Only ever moves forward (web/rules/lifecycle.py has the table).

    AWAITING_APPROVAL: over a cap, or its reason needs a second person: its amount is
    reserved, nothing has been sent to Antom.
    PENDING: written ahead, the Antom call may or may not have left the building.
    PROCESSING: Antom accepted it (U / REFUND_IN_PROCESS) or the outcome is unknown.
    REJECTED: an approver said no, or the request expired unapproved; never sent.
    REVERSED: succeeded, then reversed (the buyer's bank sent it back; Antom's settlement
    report has a REFUND_REVERSAL row): the money came back to the merchant. It is not a
    failure, and its amount is not refundable again until a lead decides so.
    """

    AWAITING_APPROVAL = "awaiting"
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    REVERSED = "reversed"

    @property
    def final(self) -> bool:
        """No answer from Antom moves it any more (a reversal comes by settlement)."""
        return self in (
            RefundStatus.SUCCEEDED,
            RefundStatus.FAILED,
            RefundStatus.REJECTED,
            RefundStatus.REVERSED,
        )


class EventSource(StrEnum):
    """Who or what caused a refund's change of state."""

    AGENT = "agent"
    ANTOM_RESPONSE = "antom_response"
    WEBHOOK = "webhook"
    POLLER = "poller"
    RECONCILIATION = "reconciliation"
    SYSTEM = "system"


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(max_length=120)
    role: Role = Field(sa_type=sa.String(16))
    password_hash: str = Field(max_length=255)
    active: bool = True
    # Bumped to revoke every session of this user (sign out everywhere, role change).
    session_version: int = 1
    # IANA time zone pages show times in (web/timezones.py); None until the user or their
    # browser chose one, and shown as UTC meanwhile.
    time_zone: str | None = Field(default=None, max_length=64)
    created_at: datetime = ts(default_factory=utcnow)


class SpendingLimit(SQLModel, table=True):
    """What one person may refund in a currency without a second person's approval.

    A row is either a role's (``role`` set) or one user's (``user_id`` set); a user's row
    replaces their role's row for that currency. A NULL cap is no cap on that dimension.
    Without any row, people holding ``REFUND_WITHOUT_LIMIT`` are unlimited and everyone
    else needs approval for every refund in that currency (web/rules/caps.py).
    """

    __tablename__ = "spending_limits"
    __table_args__ = (
        sa.CheckConstraint(
            "(role IS NULL) <> (user_id IS NULL)", name="ck_spending_limits_one_subject"
        ),
        sa.CheckConstraint(
            "max_single_minor IS NULL OR max_single_minor >= 0",
            name="ck_spending_limits_single_not_negative",
        ),
        sa.CheckConstraint(
            "max_day_minor IS NULL OR max_day_minor >= 0",
            name="ck_spending_limits_day_not_negative",
        ),
        # NULLs are distinct in a UNIQUE constraint: one partial index per subject kind.
        sa.Index(
            "uq_spending_limits_role",
            "role",
            "currency",
            unique=True,
            postgresql_where=sa.text("role IS NOT NULL"),
            sqlite_where=sa.text("role IS NOT NULL"),
        ),
        sa.Index(
            "uq_spending_limits_user",
            "user_id",
            "currency",
            unique=True,
            postgresql_where=sa.text("user_id IS NOT NULL"),
            sqlite_where=sa.text("user_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    role: str | None = Field(default=None, max_length=16)
    user_id: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    currency: str = Field(max_length=3)
    # Largest single refund; total over the rolling 24 hours before a request.
    max_single_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    max_day_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    updated_at: datetime = ts(default_factory=utcnow)
    updated_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)


class RefundReason(SQLModel, table=True):
    """The managed list of reasons an agent picks from; admins edit it, never delete
    (refunds keep their code). Seeded from ``web.rules.refunds.DEFAULT_REASONS``."""

    __tablename__ = "refund_reasons"

    code: str = Field(primary_key=True, max_length=32)
    label: str = Field(max_length=80)
    active: bool = True
    note_required: bool = False
    ticket_required: bool = False
    approval_required: bool = False
    # Refunds for this reason may total at most this share of the payment without approval.
    max_percent: int | None = None
    position: int = 0


class Payment(SQLModel, table=True):
    """An Antom payment as the desk knows it, with its refund bookkeeping.

    ``reserved_minor`` is money held by refunds not yet final; the CHECK makes
    over-refunding impossible whatever path writes these columns.
    """

    __tablename__ = "payments"
    __table_args__ = (
        sa.CheckConstraint(
            "refunded_minor >= 0 AND reserved_minor >= 0 "
            "AND refunded_minor + reserved_minor <= captured_minor",
            name="ck_payments_refund_within_captured",
        ),
        sa.Index("ix_payments_created_id", "created_at", "id"),
        sa.Index("ix_payments_amount_id", "amount_minor", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    payment_id: str = Field(max_length=64, unique=True, index=True)
    payment_request_id: str = Field(max_length=64, index=True)
    reference_order_id: str | None = Field(default=None, max_length=64, index=True)
    buyer_email: str | None = Field(default=None, max_length=254, index=True)
    buyer_name: str | None = Field(default=None, max_length=120)
    method: str = Field(max_length=32, index=True)
    currency: str = Field(max_length=3, index=True)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    captured_minor: int = Field(default=0, sa_type=sa.BigInteger)
    refunded_minor: int = Field(default=0, sa_type=sa.BigInteger)
    reserved_minor: int = Field(default=0, sa_type=sa.BigInteger)
    # Refunds that succeeded or are in flight: the single-refund rule counts these.
    refund_count: int = 0
    # Antom's paymentStatus: SUCCESS, PROCESSING, FAIL, CANCELLED, PENDING.
    status: str = Field(max_length=16, index=True)
    dispute_open: bool = False
    paid_at: datetime | None = ts(default=None)
    created_at: datetime = ts(default_factory=utcnow)
    updated_at: datetime = ts(default_factory=utcnow)


class Refund(SQLModel, table=True):
    __tablename__ = "refunds"
    __table_args__ = (
        sa.CheckConstraint("amount_minor > 0", name="ck_refunds_amount_positive"),
        sa.Index("ix_refunds_created_id", "created_at", "id"),
        sa.Index("ix_refunds_status_next_check", "status", "next_check_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    # Our idempotency key at Antom; never changes once written, reused on every retry.
    refund_request_id: str = Field(max_length=64, unique=True, index=True)
    payment_pk: int = Field(foreign_key="payments.id", index=True, sa_type=BigId)
    refund_id: str | None = Field(default=None, max_length=64, unique=True)
    currency: str = Field(max_length=3)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    status: RefundStatus = Field(sa_type=sa.String(16), index=True)
    reason: str = Field(max_length=64)
    # The reason's label when the refund was requested: what Antom is sent as refundReason
    # on every attempt and what pages show, even after an admin renames the reason.
    reason_text: str = Field(max_length=80)
    note: str | None = Field(default=None, max_length=256)
    ticket_ref: str | None = Field(default=None, max_length=64)
    # Four eyes (AWAITING_APPROVAL): why it needed approval, who decided, when, and why.
    # ``revision`` moves on every edit of a pending request: an approval names the
    # revision it saw, so editing voids it (web/services/approvals.py).
    approval_reason: str | None = Field(default=None, max_length=256)
    approval_expires_at: datetime | None = ts(default=None, index=True)
    revision: int = 0
    decided_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    decided_at: datetime | None = ts(default=None)
    decision_note: str | None = Field(default=None, max_length=500)
    # Last result from Antom, for the agent and the timeline.
    result_code: str | None = Field(default=None, max_length=64)
    result_message: str | None = Field(default=None, max_length=256)
    agent_id: int | None = Field(default=None, foreign_key="users.id", index=True, sa_type=BigId)
    # Refunds made outside the desk (Antom Dashboard) learnt from webhooks or inquiries.
    external: bool = False
    # Unique per rendered form: a double submit of the same form hits this constraint.
    form_token: str | None = Field(default=None, max_length=64, unique=True)
    attempts: int = 0
    # Set once any attempt's answer was unknown (timeout, 5xx, U, untrusted): Antom may
    # have executed the refund, so a later F on a retry proves nothing. Only an inquiry
    # (web/outcomes.py) may then release the money. Cleared when an inquiry confirms
    # that Antom has no such refund.
    outcome_unknown: bool = False
    # Inquiries in a row that taught nothing; past a threshold a lead is asked to look.
    unknown_inquiries: int = 0
    # From Antom's refund answer, for reconciling with the settlement bill.
    acquirer_reference_no: str | None = Field(default=None, max_length=64)
    acquirer_info: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    next_check_at: datetime | None = ts(default=None)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = ts(default=None)
    refunded_at: datetime | None = ts(default=None)
    # REVERSED: when Antom reversed it and what came back to the merchant (from the
    # settlement report's REFUND_REVERSAL row); then, once a lead made the amount
    # refundable again, who, when and why (web/services/ledger.py ``release_reversal``).
    reversed_at: datetime | None = ts(default=None)
    reversed_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    reversal_released_at: datetime | None = ts(default=None)
    reversal_released_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    reversal_note: str | None = Field(default=None, max_length=500)
    created_at: datetime = ts(default_factory=utcnow)
    updated_at: datetime = ts(default_factory=utcnow)


class RefundEvent(SQLModel, table=True):
    """The timeline: every change of a refund's state, with who or what caused it."""

    __tablename__ = "refund_events"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    refund_pk: int = Field(foreign_key="refunds.id", index=True, sa_type=BigId)
    at: datetime = ts(default_factory=utcnow)
    source: EventSource = Field(sa_type=sa.String(24))
    actor_id: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str | None = Field(default=None, max_length=16)
    summary: str = Field(max_length=256)
    # Request/response exchange with Antom (secrets redacted), result codes.
    detail: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # The request that caused it: the HTTP request id (x-request-id, as in the logs) of
    # the agent's submit or "check now" or Antom's notification; "poll-…" for a poller pass.
    request_id: str | None = Field(default=None, max_length=64)


# List-page indexes (web/services/listing.py). The search box matches buyer email and
# name by case-insensitive prefix: ``lower(col) LIKE 'ab%'`` can only use an index on
# ``lower(col)``, and on PostgreSQL only one with ``text_pattern_ops`` unless the database
# collation is C. Other backends ignore postgresql_ops.
sa.Index(
    "ix_payments_buyer_email_lower",
    sa.func.lower(col(Payment.buyer_email)).label("buyer_email_lower"),
    postgresql_ops={"buyer_email_lower": "text_pattern_ops"},
)
sa.Index(
    "ix_payments_buyer_name_lower",
    sa.func.lower(col(Payment.buyer_name)).label("buyer_name_lower"),
    postgresql_ops={"buyer_name_lower": "text_pattern_ops"},
)
# Fragment search ("chen" finds mei.chen@example.com, "10233" finds ORD-10233) is a
# ``LIKE '%frag%'`` (web/services/listing.py), which no B-tree can answer. On PostgreSQL
# one trigram GIN index answers it (pg_trgm, created by the migration first), over one
# *search document* per payment: its searched columns, lower-cased, joined by a control
# character that no search can contain, so a match never spans two fields. One index,
# not one per column: the planner costs a single GIN lookup well below a table scan,
# where five OR-ed lookups looked as dear as the scan at 100,000 rows. It exists on
# PostgreSQL only (``ddl_if`` here; web/migrations/env.py renders it under a dialect
# check): SQLite scans, which is fine for a single-process desk.
POSTGRES_EXTENSIONS = ("pg_trgm",)
TRIGRAM_SEARCH_COLUMNS = (
    "payment_id",
    "payment_request_id",
    "reference_order_id",
    "buyer_email",
    "buyer_name",
)
SEARCH_SEPARATOR = "\x1f"


class _SearchSeparator(sa.sql.functions.FunctionElement[str]):
    """The separator as SQL: ``chr(31)`` (an immutable constant, as an index needs)."""

    type = sa.Text()
    inherit_cache = True


@compiles(_SearchSeparator)
def _separator_sql(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "chr(31)"


@compiles(_SearchSeparator, "sqlite")
def _separator_sqlite(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "char(31)"


def search_document() -> Any:
    """``lower(coalesce(payment_id, '') || chr(31) || coalesce(payment_request_id, '') …)``.

    Built from literals only (no bound parameters), so the query's expression is the
    index's expression, as PostgreSQL requires to use the index, in every plan.
    """
    parts = [
        sa.func.coalesce(col(getattr(Payment, name)), sa.literal_column("''"))
        for name in TRIGRAM_SEARCH_COLUMNS
    ]
    document: Any = parts[0]
    for part in parts[1:]:
        document = document.op("||")(_SearchSeparator()).op("||")(part)
    return sa.func.lower(document)


TRIGRAM_INDEXES = (
    sa.Index(
        "ix_payments_search_trgm",
        search_document().label("search_document"),
        postgresql_using="gin",
        postgresql_ops={"search_document": "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql"),
)
for _extension in POSTGRES_EXTENSIONS:
    # ``metadata.create_all`` (benchmarks, scratch test schemas) needs the extension too.
    sa.event.listen(
        SQLModel.metadata,
        "before_create",
        sa.DDL(  # type: ignore[no-untyped-call]  # SQLAlchemy leaves DDL() unannotated
            f"CREATE EXTENSION IF NOT EXISTS {_extension}"
        ).execute_if(dialect="postgresql"),
    )
# "Paid between" filters seek on paid_at; the id makes the range scan ordered like a page.
sa.Index("ix_payments_paid_id", col(Payment.paid_at), col(Payment.id))
# Refunds sorted by amount page through this the way ix_refunds_created_id serves time.
sa.Index("ix_refunds_amount_id", col(Refund.amount_minor), col(Refund.id))


class WebhookEvent(SQLModel, table=True):
    """A verified Antom notification, stored before anything acts on it (the inbox).

    ``dedupe_key`` (notify type + object id + status) makes re-deliveries a no-op;
    ``processed_at`` stays empty until the state it carries has been applied, so a
    crash between storing and applying is finished by the next delivery or the poller.
    """

    __tablename__ = "webhook_events"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    dedupe_key: str = Field(max_length=200, unique=True)
    notify_type: str = Field(max_length=40, index=True)
    refund_request_id: str | None = Field(default=None, max_length=64, index=True)
    refund_id: str | None = Field(default=None, max_length=64)
    payment_id: str | None = Field(default=None, max_length=64, index=True)
    # refundStatus, resultStatus or disputeNotificationType, whichever the type carries.
    status: str | None = Field(default=None, max_length=32)
    # The exact bytes received (UTF-8): what the signature covered.
    body: str = Field(sa_type=sa.Text)
    client_id: str = Field(max_length=128)
    request_time: str = Field(max_length=64)
    received_at: datetime = ts(default_factory=utcnow)
    processed_at: datetime | None = ts(default=None, index=True)
    # applied, duplicate, stale, orphan, mismatch, ignored
    outcome: str | None = Field(default=None, max_length=32)
    request_id: str | None = Field(default=None, max_length=64)


class RejectedWebhook(SQLModel, table=True):
    """A notification that failed verification, kept only to diagnose it (capped)."""

    __tablename__ = "rejected_webhooks"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    received_at: datetime = ts(default_factory=utcnow, index=True)
    reason: str = Field(max_length=32, index=True)
    detail: str | None = Field(default=None, max_length=256)
    path: str = Field(max_length=256)
    client_id: str | None = Field(default=None, max_length=128)
    request_time: str | None = Field(default=None, max_length=64)
    signature: str | None = Field(default=None, max_length=1024)
    body_size: int = 0
    body_sha256: str = Field(max_length=64)
    # The start of the body only: enough to see what was sent, bounded in size.
    body_excerpt: str = Field(default="", sa_type=sa.Text)
    remote_addr: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=64)


class AlertKind(StrEnum):
    """What a worklist item is about (web/rules/worklists.py maps each kind to its queue);
    the desk raises items, only people close them."""

    EXTERNAL_REFUND = "external_refund"  # a refund Antom made that the desk did not issue
    ORPHAN_NOTIFICATION = "orphan_notification"  # about a payment the desk does not know
    STUCK = "stuck"  # not final after the configured age
    MISMATCH = "mismatch"  # Antom's amount/currency differs from the desk's row
    CONTRADICTION = "contradiction"  # Antom reports a final state opposite to the desk's
    UNKNOWN_RESULT = "unknown_result"  # inquiries keep teaching nothing about a refund
    UNAPPLIED_NOTIFICATION = "unapplied_notification"  # verified, stored, could not be applied
    GATEWAY_REFUSED = "gateway_refused"  # Antom's gateway did not process the desk's request
    REFUND_FAILED = "refund_failed"  # Antom failed the refund (raised by the ledger)
    REVERSED = "reversed"  # a succeeded refund came back (settlement REFUND_REVERSAL row)
    RECONCILE = "reconcile"  # the settlement report and the desk disagree about a refund


class Alert(SQLModel, table=True):
    """A worklist item (web/rules/worklists.py): raised by the desk, worked by people.

    ``resolved_at``/``resolved_by``: closed, when and by whom (None again once reopened).
    ``assignee_id``: the lead or admin it is assigned to. Each change by a person adds an
    ``AlertNote`` (the item's thread) and an audit row.
    """

    __tablename__ = "alerts"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    # One alert per subject and kind (e.g. "stuck:refund:12"): raising twice is a no-op.
    dedupe_key: str = Field(max_length=200, unique=True)
    kind: AlertKind = Field(sa_type=sa.String(32), index=True)
    refund_pk: int | None = Field(default=None, foreign_key="refunds.id", index=True, sa_type=BigId)
    payment_pk: int | None = Field(default=None, foreign_key="payments.id", sa_type=BigId)
    webhook_event_pk: int | None = Field(
        default=None, foreign_key="webhook_events.id", sa_type=BigId
    )
    message: str = Field(max_length=256)
    detail: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    created_at: datetime = ts(default_factory=utcnow)
    resolved_at: datetime | None = ts(default=None, index=True)
    resolved_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    assignee_id: int | None = Field(default=None, foreign_key="users.id", index=True, sa_type=BigId)
    assigned_at: datetime | None = ts(default=None)


class AlertNote(SQLModel, table=True):
    """One entry in a worklist item's thread: a comment, an assignment, a close or a
    reopen (``web.rules.worklists.NoteKind``), with who and when."""

    __tablename__ = "alert_notes"
    __table_args__ = (sa.Index("ix_alert_notes_alert_id", "alert_pk", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    alert_pk: int = Field(foreign_key="alerts.id", sa_type=BigId)
    at: datetime = ts(default_factory=utcnow)
    author_id: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    kind: str = Field(max_length=16)
    body: str = Field(max_length=500)


class AuditEvent(SQLModel, table=True):
    """Append-only record of every security- or money-relevant action (web/services/audit.py).

    On PostgreSQL a trigger (migration 0002) refuses UPDATE and DELETE of these rows.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_at_id", "at", "id"),
        sa.Index("ix_audit_events_object", "object_type", "object_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    at: datetime = ts(default_factory=utcnow)
    action: str = Field(max_length=48, index=True)
    actor_id: int | None = Field(default=None, foreign_key="users.id", index=True, sa_type=BigId)
    # Who, readable without a join and kept if the user is renamed: an email, an API
    # key's name, "poller", "webhook".
    actor_label: str | None = Field(default=None, max_length=254)
    object_type: str | None = Field(default=None, max_length=32)
    object_id: str | None = Field(default=None, max_length=64)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=256)
    request_id: str | None = Field(default=None, max_length=64)
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    detail: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class PollerHeartbeat(SQLModel, table=True):
    """One row per running poller: /healthz and the metrics read liveness from here."""

    __tablename__ = "poller_heartbeats"

    owner: str = Field(primary_key=True, max_length=64)
    started_at: datetime = ts(default_factory=utcnow)
    last_loop_at: datetime = ts(default_factory=utcnow)
    checks: int = Field(default=0, sa_type=sa.BigInteger)
    rate_limit_hits: int = Field(default=0, sa_type=sa.BigInteger)


class UserSession(SQLModel, table=True):
    """One sign-in. The cookie carries a random token; only its SHA-256 is stored here.

    Every request reads this row together with its user (web/services/users.py
    ``get_signed_in_user``), so signing out, which sets ``revoked_at``, ends the session
    on every instance at once, and a copied cookie is worth nothing afterwards. A
    database leak gives no usable tokens.
    """

    __tablename__ = "user_sessions"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="users.id", index=True, sa_type=BigId)
    # The user's session_version at sign-in: bumping it ends every older session.
    session_version: int
    created_at: datetime = ts(default_factory=utcnow)
    last_seen_at: datetime = ts(default_factory=utcnow)
    revoked_at: datetime | None = ts(default=None)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=256)


class PasswordToken(SQLModel, table=True):
    """A one-time link to choose a password (an invitation or an admin's reset).

    Only the SHA-256 of the random token is stored: the link itself is shown once, to
    the admin who made it. It works once (``used_at``), until ``expires_at``, and only
    while its user is active; making a new one for a user deletes their unused ones.
    """

    __tablename__ = "password_tokens"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="users.id", index=True, sa_type=BigId)
    purpose: str = Field(max_length=16)  # "invite" or "reset"
    created_at: datetime = ts(default_factory=utcnow)
    expires_at: datetime = ts()
    used_at: datetime | None = ts(default=None)
    created_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)


# ---------------------------------------------------------------- the order feed


class ApiKeyScope(StrEnum):
    """What an API key may do. A key carries exactly one scope."""

    ORDERS_WRITE = "orders:write"  # POST /api/orders, nothing else


class ApiKey(SQLModel, table=True):
    """A key for the merchant's systems, created by an admin (web/services/api_keys.py).

    Only the SHA-256 of the key is stored: the key is random (256 bits), so a fast hash
    is enough, and a database leak gives no usable keys. ``prefix`` is the key's first
    characters, shown to tell keys apart; the whole key is shown once, at creation.
    """

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    name: str = Field(max_length=80)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    scope: ApiKeyScope = Field(sa_type=sa.String(32))
    created_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    created_at: datetime = ts(default_factory=utcnow)
    last_used_at: datetime | None = ts(default=None)
    revoked_at: datetime | None = ts(default=None)
    revoked_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)


class Order(SQLModel, table=True):
    """What the merchant's order system knows about a payment: buyer and order details.

    Antom's notifications and inquiries carry neither, so the merchant sends them through
    the order feed (``POST /api/orders`` or a CSV upload; web/services/orders.py). An
    order is keyed by the paymentRequestId (the merchant's own id, known before the
    payment exists) or the paymentId, and can arrive before or after its payment: the
    searchable fields are copied onto the payment when both are known, whichever came
    first (``web.services.orders.attach_waiting`` runs when a payment is created).
    """

    __tablename__ = "orders"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    payment_request_id: str | None = Field(default=None, max_length=64, unique=True)
    payment_id: str | None = Field(default=None, max_length=64, unique=True)
    reference_order_id: str | None = Field(default=None, max_length=64)
    buyer_name: str | None = Field(default=None, max_length=120)
    buyer_email: str | None = Field(default=None, max_length=254)
    buyer_phone: str | None = Field(default=None, max_length=32)
    customer_id: str | None = Field(default=None, max_length=64)
    total_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    total_currency: str | None = Field(default=None, max_length=3)
    items_summary: str | None = Field(default=None, max_length=500)
    # The payment it was last joined to; None while the payment is not known yet.
    payment_pk: int | None = Field(
        default=None, foreign_key="payments.id", index=True, sa_type=BigId
    )
    joined_at: datetime | None = ts(default=None)
    # "api" or "csv", and which key or person sent the latest version.
    source: str = Field(max_length=8)
    api_key_pk: int | None = Field(default=None, foreign_key="api_keys.id", sa_type=BigId)
    uploaded_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    created_at: datetime = ts(default_factory=utcnow)
    updated_at: datetime = ts(default_factory=utcnow)


class OrderImportStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class OrderImport(SQLModel, table=True):
    """One CSV upload of orders: its progress while it runs, then its per-line report."""

    __tablename__ = "order_imports"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    filename: str = Field(max_length=200)
    uploaded_by: int = Field(foreign_key="users.id", index=True, sa_type=BigId)
    status: OrderImportStatus = Field(sa_type=sa.String(16))
    total_lines: int = 0
    processed_lines: int = 0
    created_count: int = 0
    updated_count: int = 0
    unchanged_count: int = 0
    rejected_count: int = 0
    # [{"line": 7, "errors": [{"field": "buyer_email", "message": "..."}]}, ...], capped.
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    created_at: datetime = ts(default_factory=utcnow)
    updated_at: datetime = ts(default_factory=utcnow)
    finished_at: datetime | None = ts(default=None)


# ---------------------------------------------------------------- settlement reports


class SettlementImport(SQLModel, table=True):
    """One Antom settlement details report imported (an upload, or ``refund-desk
    settlement import``): its progress while it runs, then its per-line report."""

    __tablename__ = "settlement_imports"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    filename: str = Field(max_length=200)
    # None for the command line.
    uploaded_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    status: OrderImportStatus = Field(sa_type=sa.String(16))
    total_lines: int = 0
    processed_lines: int = 0
    new_count: int = 0  # detail rows stored for the first time
    unchanged_count: int = 0  # rows an earlier import already stored
    rejected_count: int = 0
    reversed_count: int = 0  # refunds this import moved to REVERSED
    raised_count: int = 0  # alerts this import raised
    # [{"line": 7, "errors": [{"field": "transactionAmountValue", "message": "..."}]}], capped.
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    # About the file as a whole (no <END> line, lines after it).
    notes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    created_at: datetime = ts(default_factory=utcnow)
    updated_at: datetime = ts(default_factory=utcnow)
    finished_at: datetime | None = ts(default=None)


class SettlementLine(SQLModel, table=True):
    """One detail row of a settlement report, once: (batch, type, transactionId) is its
    identity, so importing a report again stores and changes nothing. Amounts are minor
    units, signed as the file has them (web/services/settlement.py)."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        sa.UniqueConstraint(
            "settlement_batch_id",
            "transaction_type",
            "transaction_id",
            name="uq_settlement_lines_key",
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    import_pk: int = Field(foreign_key="settlement_imports.id", index=True, sa_type=BigId)
    line: int  # where it was in that import's file
    settlement_batch_id: str = Field(max_length=64)
    transaction_type: str = Field(max_length=32)
    transaction_id: str = Field(max_length=64)
    transaction_request_id: str | None = Field(default=None, max_length=64)
    original_transaction_id: str | None = Field(default=None, max_length=64, index=True)
    acquirer_reference_no: str | None = Field(default=None, max_length=64)
    payment_method_type: str | None = Field(default=None, max_length=64)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    settlement_amount_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    settlement_currency: str | None = Field(default=None, max_length=3)
    fee_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    fee_currency: str | None = Field(default=None, max_length=3)
    transaction_time: datetime | None = ts(default=None)
    # The desk's refund it is about (REFUND and REFUND_REVERSAL rows), once matched.
    refund_pk: int | None = Field(default=None, foreign_key="refunds.id", index=True, sa_type=BigId)


# ---------------------------------------------------------------- sign-in throttling


class SignInFailure(SQLModel, table=True):
    """One failed sign-in, counted against the account and against the client address.

    Kept in the database, not per process, so every instance sees the same count
    (web/services/throttle.py). ``key_hash`` is the SHA-256 of the normalised email or
    the address: people sometimes type their password into the email field, and a
    table of attempts must not keep that in clear. Rows older than the window are
    deleted as new failures come in.
    """

    __tablename__ = "sign_in_failures"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    # "account" or "address" (web.services.throttle.Scope).
    scope: str = Field(max_length=8)
    key_hash: str = Field(max_length=64)
    failed_at: datetime = ts(default_factory=utcnow, index=True)


# Counting one key's recent failures is an index range scan.
sa.Index(
    "ix_sign_in_failures_key",
    col(SignInFailure.scope),
    col(SignInFailure.key_hash),
    col(SignInFailure.failed_at),
)


# ---------------------------------------------------------------- bulk refunds


class BulkStatus(StrEnum):
    """A bulk refund batch's life (web/services/bulk.py, web/services/bulk_run.py).

    AWAITING: uploaded or selected; its preview is shown, rows may be excluded or edited
    by the requester (each edit moves ``revision``), nothing has been sent.
    APPROVED: a second person approved the revision they saw; queued to run.
    RUNNING: a driver is sending its rows (one process at a time: the batch's lease).
    FINISHED: every included row was written ahead and sent, or refused when its turn came.
    CANCELLED: a lead stopped it (before or during the run); REJECTED: the approver said no.
    """

    AWAITING = "awaiting"
    APPROVED = "approved"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        return self in (BulkStatus.FINISHED, BulkStatus.CANCELLED, BulkStatus.REJECTED)


class BulkExpect(StrEnum):
    """What the preview expects for a row."""

    OK = "ok"
    ATTENTION = "attention"  # allowed, but look first (duplicate, refunded lately, …)
    REFUSED = "refused"  # the rules refuse it: never sent


class BulkBatch(SQLModel, table=True):
    __tablename__ = "bulk_batches"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    status: BulkStatus = Field(sa_type=sa.String(16), index=True)
    source: str = Field(max_length=16)  # "csv" or "selection"
    filename: str | None = Field(default=None, max_length=200)
    created_by: int = Field(foreign_key="users.id", index=True, sa_type=BigId)
    created_at: datetime = ts(default_factory=utcnow)
    # Moves on every edit of the preview: an approval names the revision it saw.
    revision: int = 0
    decided_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    decided_at: datetime | None = ts(default=None)
    decision_note: str | None = Field(default=None, max_length=500)
    cancelled_by: int | None = Field(default=None, foreign_key="users.id", sa_type=BigId)
    cancelled_at: datetime | None = ts(default=None)
    started_at: datetime | None = ts(default=None)
    finished_at: datetime | None = ts(default=None)
    # The driver sending it (one at a time across instances), as on refund rows.
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = ts(default=None)
    # Touched by the driver as rows go (at most a few times a second): open pages hear it.
    progress_at: datetime | None = ts(default=None)
    updated_at: datetime = ts(default_factory=utcnow)


class BulkRow(SQLModel, table=True):
    """One line of a batch: what was asked, what the preview expects, what happened.

    ``refund_pk`` is set in the transaction that writes the row's refund ahead (and the
    refund's ``form_token`` is ``bulk:<row id>``, UNIQUE): a row makes at most one refund,
    however often its run is resumed.
    """

    __tablename__ = "bulk_rows"
    __table_args__ = (sa.Index("ix_bulk_rows_batch_line", "batch_pk", "line"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    batch_pk: int = Field(foreign_key="bulk_batches.id", sa_type=BigId)
    line: int  # the file's line number (or the selection's position)
    key: str = Field(max_length=64)  # paymentId, paymentRequestId or order ref, as given
    amount_text: str = Field(max_length=32)  # as given: "12.50" or "full"
    reason: str = Field(max_length=64)
    note: str | None = Field(default=None, max_length=256)
    payment_pk: int | None = Field(default=None, foreign_key="payments.id", sa_type=BigId)
    currency: str | None = Field(default=None, max_length=3)
    amount_minor: int | None = Field(default=None, sa_type=sa.BigInteger)
    expect: BulkExpect = Field(sa_type=sa.String(16))
    problem: str | None = Field(default=None, max_length=500)
    excluded: bool = False
    refund_pk: int | None = Field(
        default=None, foreign_key="refunds.id", unique=True, sa_type=BigId
    )
    # Refused when its turn came (the payment changed since the preview), never sent.
    run_problem: str | None = Field(default=None, max_length=500)
