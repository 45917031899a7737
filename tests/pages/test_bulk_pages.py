"""Bulk refunds over HTTP: upload, preview with a duplicate caught, four eyes, the run,
the result file (the real app in-process, the real simulator over HTTP)."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.status.conftest import desk_payment
from tests.support.simulator import SimHandle
from web.db import session_scope
from web.models import BulkBatch, BulkStatus, Refund, RefundStatus, User

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]


async def upload(client: httpx.AsyncClient, text: str) -> httpx.Response:
    files = {"file": ("batch.csv", ("\ufeff" + text).encode(), "text/csv")}
    return await client.post("/bulk/", files=files, follow_redirects=True)


async def test_upload_preview_approve_by_another_lead_run_and_result_file(
    signed_in: SignedIn, engine: AsyncEngine, simulator: SimHandle
) -> None:
    lead, lee = await signed_in(role="lead", name="Lee Lead")
    other, _ = await signed_in(role="lead", name="Olu Other")
    a = await desk_payment(engine, simulator, amount_minor=4_000)
    b = await desk_payment(engine, simulator, amount_minor=2_500)
    text = (
        "reason,amount,paymentId\r\n"
        f"customer_request,full,{a.payment_id}\r\n"
        "\r\n"
        f"customer_request,full,{a.payment_id}\r\n"
        f"duplicate_charge,10.00,{b.payment_id}\r\n"
    )
    page = await upload(lead, text)
    assert page.status_code == 200, page.text
    assert "Preview: nothing has been sent" in page.text
    assert "Line 2 refunds this payment too" in page.text  # the duplicate is caught
    assert page.text.count('data-expect="ok"') == 2  # the copy is never sent
    batch_url = str(page.url.path)
    batch_pk = int(batch_url.rstrip("/").rsplit("/", 1)[1])

    # The requester cannot approve: the button is not there, and the server refuses.
    assert "approve-button" not in page.text
    refused = await lead.post(
        f"/bulk/{batch_pk}/approve", data={"revision": "0"}, follow_redirects=True
    )
    assert "cannot approve or reject your own batch" in refused.text
    async with session_scope(engine) as session:
        batch = await session.get(BulkBatch, batch_pk)
        assert batch is not None and batch.status == BulkStatus.AWAITING

    seen = await other.get(batch_url)
    assert "approve-button" in seen.text and "Line 2 refunds this payment too" in seen.text
    done = await other.post(
        f"/bulk/{batch_pk}/approve", data={"revision": "0"}, follow_redirects=True
    )
    assert done.status_code == 200
    async with session_scope(engine) as session:
        batch = await session.get(BulkBatch, batch_pk)
        refunds = (await session.exec(select(Refund))).all()
    assert batch is not None and batch.status == BulkStatus.FINISHED
    assert sorted((r.payment_pk, r.amount_minor) for r in refunds) == [(a.id, 4_000), (b.id, 1_000)]
    assert all(r.agent_id == lee.id and r.status == RefundStatus.SUCCEEDED for r in refunds)
    for payment, refund in ((a, 1), (b, 1)):
        at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
        assert len(at_antom) == refund

    result = await lead.get(f"/bulk/{batch_pk}/results.csv")
    assert result.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(result.text)))
    assert [(r["line"], r["outcome"]) for r in lines] == [
        ("2", "succeeded"),
        ("4", "refused"),
        ("5", "succeeded"),
    ]
    state = await lead.get(f"/bulk/{batch_pk}/state", headers={"HX-Request": "true"})
    assert 'data-status="finished"' in state.text and 'data-count="done">2<' in state.text


async def test_a_file_that_cannot_be_read_is_refused_whole(signed_in: SignedIn) -> None:
    lead, _ = await signed_in(role="lead")
    page = await upload(lead, "amount,reason\r\n1.00,other\r\n")
    assert page.status_code == 422
    assert "Nothing was stored" in page.text and "paymentId" in page.text


async def test_a_batch_from_ticked_payments_or_all_matching_the_filters(
    signed_in: SignedIn, engine: AsyncEngine, simulator: SimHandle
) -> None:
    lead, _ = await signed_in(role="lead")
    usd = [await desk_payment(engine, simulator, amount_minor=1_000 + i) for i in range(3)]
    eur = [
        await desk_payment(engine, simulator, currency="EUR", amount_minor=900 + i)
        for i in range(2)
    ]
    listing_page = await lead.get("/payments")
    assert 'form="bulk-select"' in listing_page.text and "All 5 payments" in listing_page.text

    ticked = await lead.post(
        "/bulk/selection",
        data={"payment": [str(usd[0].id), str(eur[1].id)], "reason": "duplicate_charge"},
        follow_redirects=True,
    )
    assert ticked.status_code == 200 and "Ticked payments · 2 rows" in ticked.text
    assert ticked.text.count('data-expect="ok"') == 2

    filtered = await lead.get("/payments", params={"currency": "EUR"})
    assert "All 2 payments" in filtered.text
    everything = await lead.post(
        "/bulk/selection",
        data={"all": "1", "f_currency": "EUR", "reason": "customer_request"},
        follow_redirects=True,
    )
    assert "Ticked payments · 2 rows" in everything.text
    for p in eur:
        assert p.payment_id in everything.text
    assert usd[1].payment_id not in everything.text
    async with session_scope(engine) as session:
        assert (await session.exec(select(Refund))).all() == []  # nothing sent

    nothing = await lead.post("/bulk/selection", data={"reason": "customer_request"})
    assert nothing.status_code == 422 and "Tick at least one payment" in nothing.text
