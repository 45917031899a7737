"""CSV exports over HTTP: the list's filters, finance's columns (major units with the
currency, UTC and the lead's own zone), one audit row each, and only with EXPORT."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from sqlmodel import col, select

from tests.pages.conftest import Desk
from tests.pages.factories import add_payment, add_refund
from web.models import AuditEvent, RefundStatus, User
from web.services.exports import PAYMENT_COLUMNS, REFUND_COLUMNS

T = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 in Paris, just before DST starts


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_a_lead_exports_the_filtered_refunds(
    desk: Desk, signed_in: Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
) -> None:
    lead_client, lead = await signed_in(role="lead")
    async with desk.session() as s:
        row = await s.get(User, lead.id)
        assert row is not None
        row.time_zone = "Europe/Paris"
        payment = await add_payment(s, method="CARD", currency="JPY", amount_minor=5_000)
        usd = await add_payment(s, currency="USD", amount_minor=5_000)
        mine = await add_refund(
            s,
            payment,
            amount_minor=1_200,
            reason="goodwill",
            reason_text="Goodwill",
            agent_id=desk.agent.id,
            decided_by=lead.id,
            approval_reason="over the cap",
            created_at=T,
            refunded_at=datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # 03:30 CEST
            acquirer_reference_no="74123",
        )
        await add_refund(s, usd, amount_minor=250, status=RefundStatus.FAILED, created_at=T)
        await s.commit()

    answer = await lead_client.get("/refunds/export.csv?reason=goodwill")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = _rows(answer.text)
    assert list(rows[0]) == list(REFUND_COLUMNS)
    assert len(rows) == 1
    (got,) = rows
    assert got["refund_request_id"] == mine.refund_request_id
    assert (got["currency"], got["amount"], got["method"]) == ("JPY", "1200", "CARD")
    assert (got["reason_code"], got["reason"], got["status"]) == (
        "goodwill",
        "Goodwill",
        "succeeded",
    )
    assert (got["agent"], got["approver"]) == (desk.agent.email, lead.email)
    assert got["created_utc"] == "2026-03-29T00:30:00Z"
    assert got["created_local"] == "2026-03-29T01:30:00+01:00"
    assert got["final_utc"] == "2026-03-29T01:30:00Z"
    assert got["final_local"] == "2026-03-29T03:30:00+02:00"  # summer time began at 02:00
    assert got["time_zone"] == "Europe/Paris"
    assert got["acquirer_reference_no"] == "74123"

    every = _rows((await lead_client.get("/refunds/export.csv")).text)
    assert {(r["currency"], r["amount"]) for r in every} == {("JPY", "1200"), ("USD", "2.50")}

    async with desk.session() as s:
        audit = (
            await s.exec(
                select(AuditEvent)
                .where(col(AuditEvent.action) == "data.exported")
                .order_by(col(AuditEvent.id))
            )
        ).all()
    assert [(a.object_type, a.actor_id) for a in audit] == [("refunds", lead.id)] * 2
    assert audit[0].detail == {
        "filters": {"reason": "goodwill"},
        "format": "csv",
        "time_zone": "Europe/Paris",
    }


async def test_payments_export_and_who_may_export(
    desk: Desk, signed_in: Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
) -> None:
    async with desk.session() as s:
        await add_payment(s, payment_id="2026PAYEXPORT1", currency="KRW", amount_minor=15_000)
        await add_payment(s, payment_id="2026PAYEXPORT2", currency="USD", amount_minor=15_000)
        await s.commit()
    assert (await desk.client.get("/payments/export.csv")).status_code == 403  # an agent
    assert (await desk.client.get("/refunds/export.csv")).status_code == 403
    assert "payments-export" not in (await desk.client.get("/payments")).text

    lead_client, _lead = await signed_in(role="lead")
    listed = await lead_client.get("/payments?currency=KRW")
    assert 'href="/payments/export.csv?currency=KRW' in listed.text
    rows = _rows((await lead_client.get("/payments/export.csv?currency=KRW")).text)
    assert list(rows[0]) == list(PAYMENT_COLUMNS)
    assert [(r["payment_id"], r["currency"], r["amount"]) for r in rows] == [
        ("2026PAYEXPORT1", "KRW", "15000")
    ]
