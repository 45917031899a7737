"""A bulk batch's page hears its progress over the one event stream (``bulk-<id>``):
from the driver touching the batch row, and from any commit that moves one of its
rows' refunds (the poller, a webhook), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.status.conftest import make_payment, settle
from web.db import session_scope
from web.live import (
    Change,
    Watch,
    batch_version,
    decode,
    hints,
    parse_watch,
    publish_changes,
    since_seen,
)
from web.models import (
    BulkBatch,
    BulkExpect,
    BulkRow,
    BulkStatus,
    EventSource,
    Refund,
    RefundStatus,
    User,
)
from web.services import ledger


def test_a_batch_hint_reaches_only_the_page_that_watches_that_batch() -> None:
    watch = parse_watch(bulk=["3.abc"])
    assert watch.batches == {3: "abc"} and not watch.empty
    assert hints(watch, Change([], [], batches=[3, 4])) == [("bulk-3", "")]
    assert hints(parse_watch(bulk=["4"]), Change([], [], batches=[3])) == []
    assert hints(Watch({}, {}), Change([], [], batches=[3])) == []


async def test_a_refund_of_a_batch_announces_the_batch_and_moves_its_version(
    engine: AsyncEngine,
) -> None:
    payment = await make_payment(engine)
    async with session_scope(engine) as session:
        lead = User(email="l@b.test", name="L", role="lead", password_hash="x")
        session.add(lead)
        await session.flush()
        batch = BulkBatch(status=BulkStatus.RUNNING, source="csv", created_by=lead.id or 0)
        session.add(batch)
        await session.flush()
        refund = Refund(
            refund_request_id="rd_live_bulk",
            payment_pk=payment.id or 0,
            currency="USD",
            amount_minor=500,
            status=RefundStatus.PENDING,
            reason="customer_request",
            reason_text="Customer request",
        )
        opened = await ledger.open_refund(
            session,
            payment,
            amount_minor=500,
            expected=None,
            max_refunds=None,
            refund=refund,
            cause=ledger.Cause(EventSource.AGENT),
            summary="test",
        )
        assert opened is not None
        session.add(
            BulkRow(batch_pk=batch.id or 0, line=2, key=payment.payment_id, amount_text="5.00",
                    reason="customer_request", expect=BulkExpect.OK, refund_pk=opened.id)
        )  # fmt: skip
    assert batch.id is not None
    async with session_scope(engine) as session:
        before = await batch_version(session, batch.id)
    sent: list[bytes] = []

    async def publish(data: bytes) -> None:
        sent.append(data)

    await settle(engine, opened)  # the poller's answer: SUCCEEDED
    await publish_changes(publish, engine, [opened.id or 0])
    assert sent and decode(sent[0]).batches == [batch.id]
    async with session_scope(engine) as session:
        assert await batch_version(session, batch.id) != before
        # A page rendered at the old version catches up on (re)connecting.
        moved = await since_seen(session, parse_watch(bulk=[f"{batch.id}.{before}"]))
    assert moved.batches == [batch.id]
