"""Live pages: every open page hears "this changed" and re-reads the database.

When a transaction that changed refunds, payments or alerts commits, a session hook
(``announce_commits``, installed per app by ``live_lifespan``) calls ``publish_changes``:
it reads the committed rows and publishes one small JSON message on the ``refund_desk``
channel. No writer has to remember to announce anything. Every instance's ``/events``
streams (``web/routes/live.py``) receive it through Litestar Channels — in memory on
SQLite (one process), over PostgreSQL LISTEN/NOTIFY otherwise, so a change made on one
instance reaches browsers connected to another.

A stream carries *hints*, never content: ``payment-5`` ("payment 5 or one of its refunds
changed"), ``refund-7``, ``refunds`` / ``payments`` (a row on this list changed, or a new
one exists) and ``alerts``. The page answers a hint by fetching the fragments concerned
from the database (``static/app.js``), so what it shows is always rendered whole from
the committed state, never patched from a message. Each stream says what its page shows
and at which *version* (``Watch``); on every (re)connection it compares those versions
with the database and hints at whatever moved in between, so a page that lost its
stream, or changed before its stream opened, catches up by itself.

SSE is a hint, never the truth: a lost message costs a stale page until the next
change or reconnect, never money. On PostgreSQL the listener (``web/live_backend.py``)
keeps one LISTEN connection for the process, reconnects when it drops and then sends
``RESYNC``, on which every open stream hints at everything it watches: what was NOTIFYed
during the gap is lost, the database is not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.db import read_scope
from web.live_backend import ResilientPsycopgBackend
from web.models import (
    Alert,
    AlertNote,
    BulkBatch,
    BulkRow,
    Payment,
    Refund,
    RefundEvent,
    RefundStatus,
)
from web.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "refund_desk"
HEARTBEAT_S = 15.0
# PostgreSQL NOTIFY payloads must stay under 8000 bytes: big batches are split.
MAX_ITEMS_PER_MESSAGE = 40
# Put on the channel by the listener after it reconnects: "re-read the database".
RESYNC = b'{"resync":true}'

Publish = Callable[[bytes], Awaitable[None]]


def psycopg_dsn(database_url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy) → ``postgresql://…`` (libpq)."""
    scheme, sep, rest = database_url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgresql") else database_url


def channels_backend(settings: Settings) -> ChannelsBackend:
    """Memory on SQLite (one process); LISTEN/NOTIFY when several instances share PostgreSQL."""
    if settings.is_sqlite:
        return MemoryChannelsBackend()
    return ResilientPsycopgBackend(psycopg_dsn(settings.database_url), resync_message=RESYNC)


class LiveChannels(ChannelsPlugin):
    """Litestar's ChannelsPlugin, keeping its backend in view so /healthz can report it.

    Litestar looks plugins up by exact type: ``app.plugins.get(LiveChannels)``.
    """

    def __init__(self, backend: ChannelsBackend) -> None:
        super().__init__(
            backend=backend,
            channels=[CHANNEL],
            # A slow browser loses its oldest updates rather than holding up the others.
            subscriber_max_backlog=1000,
            subscriber_backlog_strategy="dropleft",
        )
        self.backend = backend

    def health(self) -> dict[str, str | int | None]:
        """``live``: ``ok`` / ``connecting`` / ``reconnecting`` (PostgreSQL listener), or
        ``memory`` (SQLite: one process, nothing to lose)."""
        if not isinstance(self.backend, ResilientPsycopgBackend):
            return {"live": "memory", "live_since": None, "live_reconnects": 0}
        health = self.backend.health()
        return {
            "live": health.state,
            "live_since": health.since.isoformat(),
            "live_reconnects": health.reconnects,
        }


def channels_plugin(settings: Settings) -> LiveChannels:
    return LiveChannels(channels_backend(settings))


def plugin_publisher(channels: ChannelsPlugin) -> Publish:
    async def publish(data: bytes) -> None:
        # wait_published raises here, where it can be logged; publish() would queue to a
        # worker that dies on the first backend error (litestar#5008).
        await channels.wait_published(data, CHANNEL)

    return publish


def backend_publisher(backend: ChannelsBackend) -> Publish:
    """For processes without the web app (``refund-desk poller``); backend started by caller."""

    async def publish(data: bytes) -> None:
        await backend.publish(data, [CHANNEL])

    return publish


@dataclass(frozen=True, slots=True)
class RefundState:
    id: int
    payment: int
    status: str
    currency: str
    amount_minor: int

    @classmethod
    def of(cls, refund: Refund) -> RefundState:
        return cls(
            refund.id or 0, refund.payment_pk, str(refund.status), refund.currency,
            refund.amount_minor,
        )  # fmt: skip

    @property
    def version(self) -> str:
        return refund_version(self)


@dataclass(frozen=True, slots=True)
class PaymentState:
    id: int
    currency: str
    captured_minor: int
    refunded_minor: int
    reserved_minor: int
    dispute_open: bool
    status: str = ""
    refund_count: int = 0

    @classmethod
    def of(cls, payment: Payment) -> PaymentState:
        return cls(
            payment.id or 0,
            payment.currency,
            payment.captured_minor,
            payment.refunded_minor,
            payment.reserved_minor,
            payment.dispute_open,
            payment.status,
            payment.refund_count,
        )

    @property
    def refundable_minor(self) -> int:
        return max(0, self.captured_minor - self.refunded_minor - self.reserved_minor)

    @property
    def version(self) -> str:
        return payment_version(self)


def payment_version(payment: Payment | PaymentState) -> str:
    """A short digest of everything a page shows about a payment itself.

    A new refund, a settled one and an external one all move money or the refund count,
    so they change it too; a refund's own status has ``refund_version``.
    """
    raw = "|".join(
        str(v)
        for v in (
            payment.status,
            payment.captured_minor,
            payment.refunded_minor,
            payment.reserved_minor,
            payment.refund_count,
            payment.dispute_open,
        )
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def refund_version(refund: Refund | RefundState) -> str:
    return str(refund.status)


_PAYMENT_STATE = (
    col(Payment.id),
    col(Payment.currency),
    col(Payment.captured_minor),
    col(Payment.refunded_minor),
    col(Payment.reserved_minor),
    col(Payment.dispute_open),
    col(Payment.status),
    col(Payment.refund_count),
)
_REFUND_STATE = (
    col(Refund.id),
    col(Refund.payment_pk),
    col(Refund.status),
    col(Refund.currency),
    col(Refund.amount_minor),
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    refunds: list[RefundState]
    payments: list[PaymentState]
    batches: list[int]  # the bulk batches the refunds belong to


async def snapshot(
    session: AsyncSession, refund_pks: Iterable[int], payment_pks: Iterable[int]
) -> Snapshot:
    """Committed state of these refunds and payments; a refund brings its payment and its
    bulk batch. One statement (a second only for payments no refund brought): it runs
    after every commit that touches a refund."""
    refund_ids, payment_ids = sorted(set(refund_pks)), set(payment_pks)
    refunds: list[RefundState] = []
    payments: dict[int, PaymentState] = {}
    batches: set[int] = set()
    if refund_ids:
        # Plain rows (no ORM objects to build): only what a version is made of.
        together: Any = (
            sa.select(*_REFUND_STATE, *_PAYMENT_STATE, col(BulkRow.batch_pk))
            .join(Payment, col(Payment.id) == col(Refund.payment_pk))
            .outerjoin(BulkRow, col(BulkRow.refund_pk) == col(Refund.id))
            .where(col(Refund.id).in_(refund_ids))
        )
        rows = await session.exec(together)
        cut = len(_REFUND_STATE)
        for row in rows.all():
            refund_id, payment_pk, status, currency, amount_minor = row[:cut]
            refunds.append(RefundState(refund_id, payment_pk, str(status), currency, amount_minor))
            payments[payment_pk] = PaymentState(*row[cut:-1])
            if row[-1] is not None:
                batches.add(int(row[-1]))
    if missing := sorted(payment_ids - payments.keys()):
        alone: Any = sa.select(*_PAYMENT_STATE).where(col(Payment.id).in_(missing))
        found = await session.exec(alone)
        payments |= {row[0]: PaymentState(*row) for row in found.all()}
    return Snapshot(refunds, list(payments.values()), sorted(batches))


@dataclass(frozen=True, slots=True)
class Change:
    """What one commit changed, as a stream receives it."""

    refunds: list[RefundState]
    payments: list[PaymentState]
    alerts: bool = False
    approvals: bool = False  # only from since_seen: a commit's refunds say it themselves
    batches: list[int] = dataclasses.field(default_factory=list)  # bulk batches that moved


def encode(
    refunds: list[RefundState],
    payments: list[PaymentState],
    *,
    alerts: bool = False,
    batches: Iterable[int] = (),
) -> list[bytes]:
    items: list[tuple[str, dict[str, Any]]] = [("r", _asdict(r)) for r in refunds]
    items += [("p", _asdict(p)) for p in payments]
    messages = []
    for start in range(0, max(len(items), 1), MAX_ITEMS_PER_MESSAGE):
        chunk = items[start : start + MAX_ITEMS_PER_MESSAGE]
        message: dict[str, Any] = {
            "refunds": [d for kind, d in chunk if kind == "r"],
            "payments": [d for kind, d in chunk if kind == "p"],
        }
        if alerts and start == 0:
            message["alerts"] = True
        if start == 0 and (moved := sorted(set(batches))[:MAX_ITEMS_PER_MESSAGE]):
            message["batches"] = moved
        messages.append(json.dumps(message, separators=(",", ":")).encode())
    return messages


def is_resync(data: bytes) -> bool:
    return data == RESYNC


def decode(data: bytes) -> Change:
    message = json.loads(data)
    return Change(
        [RefundState(**d) for d in message.get("refunds", [])],
        [PaymentState(**d) for d in message.get("payments", [])],
        bool(message.get("alerts")),
        batches=[int(b) for b in message.get("batches", []) if isinstance(b, int)],
    )


def _asdict(state: RefundState | PaymentState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in state.__slots__}


# ---------------------------------------------------------------- what a page watches

MAX_WATCHED = 200


@dataclass(frozen=True, slots=True)
class Watch:
    """What one page shows, each with the version it was rendered at (None: unknown).

    ``refunds_since`` / ``payments_since``: the page lists refunds / payments and had seen
    every row up to that id (a newer row is news for the list).
    """

    payments: dict[int, str | None]
    refunds: dict[int, str | None]
    refunds_since: int | None = None
    payments_since: int | None = None
    # The worklists (the navigation's count, the worklist pages), at ``worklist_version``.
    alerts: bool = False
    alerts_seen: str | None = None
    # The approvals count in the navigation, like the alerts one.
    approvals: bool = False
    approvals_seen: int | None = None
    # Bulk batches on show (their progress), each at the version the page shows.
    batches: dict[int, str | None] = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (
            self.batches
            or self.payments
            or self.refunds
            or self.refunds_since is not None
            or self.payments_since is not None
            or self.alerts
            or self.approvals
        )


def _versioned(values: Iterable[str]) -> dict[int, str | None]:
    """``["5.ab12", "7"]`` → ``{5: "ab12", 7: None}``; malformed values are ignored."""
    found: dict[int, str | None] = {}
    for value in values:
        pk, _, version = value.partition(".")
        if pk.isascii() and pk.isdigit() and len(pk) <= 18 and len(found) < MAX_WATCHED:
            found[int(pk)] = version[:64] or None
    return found


def _count(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _version(value: str | None) -> str | None:
    text = (value or "").strip()
    return text if text and len(text) <= 64 and re.fullmatch(r"[0-9.]+", text) else None


def parse_watch(
    payment: Iterable[str] = (),
    refund: Iterable[str] = (),
    refunds: str | None = None,
    payments: str | None = None,
    alerts: str | None = None,
    approvals: str | None = None,
    bulk: Iterable[str] = (),
) -> Watch:
    """A stream's query string (``payment=5.ab12&refund=7.processing&refunds=90&alerts=3``)."""
    return Watch(
        payments=_versioned(payment),
        refunds=_versioned(refund),
        refunds_since=_count(refunds),
        payments_since=_count(payments),
        alerts=alerts is not None,
        alerts_seen=_version(alerts),
        approvals=approvals is not None,
        approvals_seen=_count(approvals),
        batches=_versioned(bulk),
    )


# A refund in one of these may just have entered or left the approvals queue.
_APPROVAL_MOVES = frozenset(
    {RefundStatus.AWAITING_APPROVAL, RefundStatus.PENDING, RefundStatus.REJECTED}
)


def hints(watch: Watch, change: Change) -> list[tuple[str, str]]:
    """The hints ``change`` means for a page that watches ``watch``: (name, data) pairs,
    the data being the new version where there is one (a refund's status)."""
    found: dict[str, str] = {}
    for r in change.refunds:
        if r.id in watch.refunds:
            found[f"refund-{r.id}"] = r.version
        if r.payment in watch.payments:
            found.setdefault(f"payment-{r.payment}", "")
        since = watch.refunds_since
        if since is not None and (r.id in watch.refunds or r.id > since):
            found["refunds"] = ""
        if watch.approvals and r.status in _APPROVAL_MOVES:
            found["approvals"] = ""
    if watch.approvals and change.approvals:
        found["approvals"] = ""
    for p in change.payments:
        if p.id in watch.payments:
            found[f"payment-{p.id}"] = p.version
        since = watch.payments_since
        if since is not None and (p.id in watch.payments or p.id > since):
            found["payments"] = ""
    if change.alerts and watch.alerts:
        found["alerts"] = ""
    for b in change.batches:
        if b in watch.batches:
            found[f"bulk-{b}"] = ""
    return list(found.items())


def unseen(watch: Watch) -> Watch:
    """The same watch with every version forgotten: after a gap in which changes were lost,
    everything watched is compared with the database again."""
    return dataclasses.replace(
        watch,
        payments=dict.fromkeys(watch.payments),
        refunds=dict.fromkeys(watch.refunds),
        batches=dict.fromkeys(watch.batches),
        alerts_seen=None,
        approvals_seen=None,
    )


async def open_alert_count(session: AsyncSession) -> int:
    """Open worklist items (the navigation's count)."""
    counted = select(sa.func.count()).select_from(Alert).where(col(Alert.resolved_at).is_(None))
    return int((await session.exec(counted)).one())


async def worklist_version(session: AsyncSession) -> str:
    """What the worklists show, as one version: open items, the newest item and the
    newest thread entry. Raising an item moves the second; every change people make
    (assign, comment, close, reopen) adds a thread entry and moves the third."""
    newest = (
        await session.exec(
            select(
                sa.select(sa.func.count())
                .select_from(Alert)
                .where(col(Alert.resolved_at).is_(None))
                .scalar_subquery(),
                sa.select(sa.func.max(Alert.id)).scalar_subquery(),
                sa.select(sa.func.max(AlertNote.id)).scalar_subquery(),
            )
        )
    ).one()
    return ".".join(str(int(v or 0)) for v in newest)


async def since_seen(session: AsyncSession, watch: Watch) -> Change:
    """What moved between the versions the page was rendered at and the database now."""
    seen = await snapshot(session, watch.refunds, watch.payments)
    moved_refunds = [
        r for r in seen.refunds if r.id in watch.refunds and watch.refunds[r.id] != r.version
    ]
    moved_payments = [
        p for p in seen.payments if p.id in watch.payments and watch.payments[p.id] != p.version
    ]
    # A row newer than any the list had seen is news for the list.
    if watch.refunds_since is not None:
        newer = select(Refund).where(col(Refund.id) > watch.refunds_since).limit(1)
        moved_refunds += [RefundState.of(r) for r in (await session.exec(newer)).all()]
    if watch.payments_since is not None:
        newer_p = select(Payment).where(col(Payment.id) > watch.payments_since).limit(1)
        moved_payments += [PaymentState.of(p) for p in (await session.exec(newer_p)).all()]
    # An unknown count (the page has not read it yet, or a gap) is news too.
    alerts = watch.alerts and (
        watch.alerts_seen is None or await worklist_version(session) != watch.alerts_seen
    )
    approvals = watch.approvals and (
        watch.approvals_seen is None or await awaiting_count(session) != watch.approvals_seen
    )
    moved_batches = [
        pk for pk in watch.batches if watch.batches[pk] != await batch_version(session, pk)
    ]
    return Change(moved_refunds, moved_payments, alerts, approvals, moved_batches)


async def batch_version(session: AsyncSession, batch_pk: int) -> str:
    """What a bulk batch's page shows moved: its own row, or any of its rows' refunds."""
    batch = await session.get(BulkBatch, batch_pk, populate_existing=True)
    if batch is None:
        return "none"
    sent, latest = (
        await session.exec(
            select(sa.func.count(col(Refund.id)), sa.func.max(col(Refund.updated_at)))
            .select_from(BulkRow)
            .join(Refund, col(Refund.id) == col(BulkRow.refund_pk))
            .where(col(BulkRow.batch_pk) == batch_pk)
        )
    ).one()
    raw = f"{batch.status}|{batch.revision}|{batch.progress_at}|{batch.updated_at}|{sent}|{latest}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


async def awaiting_count(session: AsyncSession) -> int:
    """Refund requests waiting for approval (the navigation's count)."""
    counted = (
        select(sa.func.count())
        .select_from(Refund)
        .where(col(Refund.status) == RefundStatus.AWAITING_APPROVAL)
    )
    return int((await session.exec(counted)).one())


async def publish_changes(
    publish: Publish | None,
    engine: AsyncEngine,
    refund_pks: Iterable[int] = (),
    payment_pks: Iterable[int] = (),
    *,
    alerts: bool = False,
    batches: Iterable[int] = (),
) -> None:
    """Tell every open page about committed changes. Never raises: SSE is only a hint."""
    refund_pks, payment_pks, batch_pks = list(refund_pks), list(payment_pks), list(batches)
    if publish is None or not (refund_pks or payment_pks or alerts or batch_pks):
        return
    try:
        async with read_scope(engine) as session:
            now = await snapshot(session, refund_pks, payment_pks)
        batch_pks += now.batches
        for message in encode(now.refunds, now.payments, alerts=alerts, batches=batch_pks):
            await publish(message)
    except Exception:
        log.exception("live update not published refunds=%s payments=%s", refund_pks, payment_pks)


# ---------------------------------------------------------------- after every commit
#
# Every change of a refund's state writes a RefundEvent (apply_antom_status, the submit
# path, imports), and payments change as ORM objects. A session hook notes which refunds
# and payments a transaction touched and, once it has committed, publishes them from the
# event loop that committed it. So no writer has to remember to tell the pages, and
# nothing is announced that was rolled back.

_PUBLISHERS: dict[asyncio.AbstractEventLoop, tuple[Publish, AsyncEngine]] = {}
_PENDING: set[asyncio.Task[None]] = set()
_KEY = "live_changes"


@dataclass(slots=True)
class _Touched:
    refunds: set[int]
    payments: set[int]
    alerts: bool = False
    batches: set[int] = dataclasses.field(default_factory=set)


def _collect(session: Session, _flush_context: Any) -> None:
    touched: _Touched = session.info.setdefault(_KEY, _Touched(set(), set()))
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, RefundEvent):
            touched.refunds.add(obj.refund_pk)
        elif isinstance(obj, Refund) and obj.id is not None:
            touched.refunds.add(obj.id)
        elif isinstance(obj, Payment) and obj.id is not None:
            touched.payments.add(obj.id)
        elif isinstance(obj, Alert | AlertNote):
            # Raised, or worked on by someone (every such change adds a note): the
            # worklists and their counts may have moved.
            touched.alerts = True
        elif isinstance(obj, BulkBatch) and obj.id is not None:
            touched.batches.add(obj.id)


def _announce(session: Session) -> None:
    touched: _Touched | None = session.info.pop(_KEY, None)
    if touched is None or not (
        touched.refunds or touched.payments or touched.alerts or touched.batches
    ):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # a sync session outside any loop (CLI, migrations): nobody to tell
    registered = _PUBLISHERS.get(loop)
    if registered is None:
        return
    publish, engine = registered
    task = loop.create_task(
        publish_changes(
            publish,
            engine,
            sorted(touched.refunds),
            sorted(touched.payments),
            alerts=touched.alerts,
            batches=sorted(touched.batches),
        )
    )
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)


def _forget(session: Session) -> None:
    session.info.pop(_KEY, None)


def announce_commits(publish: Publish, engine: AsyncEngine) -> Callable[[], None]:
    """Publish what each commit on this event loop changed; returns the undo."""
    if not sa.event.contains(Session, "after_flush", _collect):
        sa.event.listen(Session, "after_flush", _collect)
        sa.event.listen(Session, "after_commit", _announce)
        sa.event.listen(Session, "after_soft_rollback", lambda s, _t: _forget(s))
    loop = asyncio.get_running_loop()
    _PUBLISHERS[loop] = (publish, engine)
    return lambda: _PUBLISHERS.pop(loop, None) and None


def live_lifespan(app: Litestar) -> AbstractAsyncContextManager[None]:
    """Announce this app's commits on its channels while it runs."""

    @asynccontextmanager
    async def live() -> AsyncIterator[None]:
        engine: AsyncEngine = app.state.engine
        undo = announce_commits(plugin_publisher(app.plugins.get(LiveChannels)), engine)
        try:
            yield
        finally:
            undo()

    return live()
