"""Live badges: refund changes pushed to every open page over SSE.

When a transaction that changed refunds or payments commits, a session hook
(``announce_commits``, installed per app by ``live_lifespan``) calls ``publish_changes``:
it reads the committed rows and publishes one small JSON message on the ``refund_desk``
channel. No writer has to remember to announce anything. Every instance's ``/events``
streams (``web/routes/live.py``) receive it through Litestar Channels — in memory on
SQLite (one process), over PostgreSQL LISTEN/NOTIFY otherwise, so a change made on one
instance reaches browsers connected to another — and turn it into named SSE events
(``refund-<id>``, ``payment-<id>-refundable``, ...) that htmx's SSE extension swaps in.

SSE is a hint, never the truth: a lost message costs a stale badge until the next
change or reconnect (each connection starts with the current state), never money. On
PostgreSQL the listener (``web/live_backend.py``) keeps one LISTEN connection for the
process, reconnects when it drops and then sends ``RESYNC``, on which every open stream
re-reads its state: what was NOTIFYed during the gap is lost, the database is not.
"""

from __future__ import annotations

import asyncio
import json
import logging
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

from web.live_backend import ResilientPsycopgBackend
from web.models import Payment, Refund, RefundEvent
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


@dataclass(frozen=True, slots=True)
class PaymentState:
    id: int
    currency: str
    captured_minor: int
    refunded_minor: int
    reserved_minor: int
    dispute_open: bool

    @property
    def refundable_minor(self) -> int:
        return max(0, self.captured_minor - self.refunded_minor - self.reserved_minor)


async def snapshot(
    session: AsyncSession,
    refund_pks: Iterable[int],
    payment_pks: Iterable[int],
    *,
    refunds_of_payments: bool = False,
) -> tuple[list[RefundState], list[PaymentState]]:
    """Committed state of these refunds and payments (a refund brings its payment; with
    ``refunds_of_payments``, a payment brings all its refunds)."""
    refund_ids = sorted(set(refund_pks))
    wanted: sa.ColumnElement[bool] = col(Refund.id).in_(refund_ids)
    if refunds_of_payments and payment_pks:
        wanted = sa.or_(wanted, col(Refund.payment_pk).in_(sorted(set(payment_pks))))
    refunds = (
        list((await session.exec(select(Refund).where(wanted))).all())
        if refund_ids or refunds_of_payments
        else []
    )
    payment_ids = sorted(set(payment_pks) | {r.payment_pk for r in refunds})
    payments = (
        list((await session.exec(select(Payment).where(col(Payment.id).in_(payment_ids)))).all())
        if payment_ids
        else []
    )
    return (
        [
            RefundState(r.id or 0, r.payment_pk, str(r.status), r.currency, r.amount_minor)
            for r in refunds
        ],
        [
            PaymentState(
                p.id or 0,
                p.currency,
                p.captured_minor,
                p.refunded_minor,
                p.reserved_minor,
                p.dispute_open,
            )
            for p in payments
        ],
    )


def encode(refunds: list[RefundState], payments: list[PaymentState]) -> list[bytes]:
    items: list[tuple[str, dict[str, Any]]] = [("r", _asdict(r)) for r in refunds]
    items += [("p", _asdict(p)) for p in payments]
    messages = []
    for start in range(0, len(items), MAX_ITEMS_PER_MESSAGE):
        chunk = items[start : start + MAX_ITEMS_PER_MESSAGE]
        message = {
            "refunds": [d for kind, d in chunk if kind == "r"],
            "payments": [d for kind, d in chunk if kind == "p"],
        }
        messages.append(json.dumps(message, separators=(",", ":")).encode())
    return messages


def is_resync(data: bytes) -> bool:
    return data == RESYNC


def decode(data: bytes) -> tuple[list[RefundState], list[PaymentState]]:
    message = json.loads(data)
    return (
        [RefundState(**d) for d in message.get("refunds", [])],
        [PaymentState(**d) for d in message.get("payments", [])],
    )


def _asdict(state: RefundState | PaymentState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in state.__slots__}


async def publish_changes(
    publish: Publish | None,
    engine: AsyncEngine,
    refund_pks: Iterable[int] = (),
    payment_pks: Iterable[int] = (),
) -> None:
    """Tell every open page about committed changes. Never raises: SSE is only a hint."""
    refund_pks, payment_pks = list(refund_pks), list(payment_pks)
    if publish is None or not (refund_pks or payment_pks):
        return
    try:
        async with AsyncSession(engine) as session:
            refunds, payments = await snapshot(session, refund_pks, payment_pks)
        for message in encode(refunds, payments):
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


def _collect(session: Session, _flush_context: Any) -> None:
    refunds, payments = session.info.setdefault(_KEY, (set(), set()))
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, RefundEvent):
            refunds.add(obj.refund_pk)
        elif isinstance(obj, Refund) and obj.id is not None:
            refunds.add(obj.id)
        elif isinstance(obj, Payment) and obj.id is not None:
            payments.add(obj.id)


def _announce(session: Session) -> None:
    changes = session.info.pop(_KEY, None)
    if not changes or not (changes[0] or changes[1]):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # a sync session outside any loop (CLI, migrations): nobody to tell
    registered = _PUBLISHERS.get(loop)
    if registered is None:
        return
    publish, engine = registered
    task = loop.create_task(publish_changes(publish, engine, *map(sorted, changes)))
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
