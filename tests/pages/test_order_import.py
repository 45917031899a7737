"""Importing orders from a CSV file: upload over real HTTP, progress, the per-line report."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.support.waiting import wait_until
from web.db import session_scope
from web.models import Order, OrderImport, Payment, User
from web.services import ledger
from web.settings import Settings

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]

# A spreadsheet export: BOM, CRLF, columns in their own order and words, blank lines,
# one column the desk does not use, and three lines with problems.
MESSY_CSV = (
    "\ufeffE-mail,Name,order_total,Currency,Payment Request ID,Order Ref,Notes\r\n"
    "mei.chen@example.com,Mei Chen,129.00,USD,PR-1,ORD-1,VIP\r\n"
    "\r\n"
    "sam@example.com,Sam Porter,12.5,usd,PR-2,ORD-2,\r\n"
    "not-an-email,<b>Bad</b>,1.234,USD,PR-3,ORD-3,\r\n"
    ",Nobody,,,,ORD-4,\r\n"
    "\r\n"
    "ada@example.com,Ada,10,USD,PR-5,ORD-5,,surplus\r\n"
    ",,,,,,\r\n"
    "haruto@example.com,Haruto Sato,5000,JPY,PR-6,ORD-6,\r\n"
).encode()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
async def lead(signed_in: SignedIn) -> httpx.AsyncClient:
    client, _ = await signed_in(role="lead")
    return client


async def upload(
    client: httpx.AsyncClient, data: bytes, *, htmx: bool = True, name: str = "orders.csv"
) -> httpx.Response:
    return await client.post(
        "/orders/import",
        files={"file": (name, data, "text/csv")},
        headers={"HX-Request": "true"} if htmx else {},
    )


async def finished(client: httpx.AsyncClient, answer: httpx.Response) -> str:
    """Follow the import the way the page does (polling its fragment) until it is done."""
    match = re.search(r'id="import-(\d+)"', answer.text)
    assert match, answer.text
    url = f"/orders/imports/{match[1]}"

    async def done() -> str | None:
        fragment = await client.get(url, headers={"HX-Request": "true"})
        assert fragment.status_code == 200
        if 'data-status="done"' not in fragment.text:
            return None
        return " ".join(fragment.text.split())  # as it reads, whatever the line breaks

    return await wait_until(done, what="the import to finish")


def report_rows(html: str) -> list[tuple[str, str, str]]:
    body = html.split('class="table import-report"', 1)[1]
    rows = re.findall(
        r'<tr><td class="num">(\d+)</td><td class="mono">(.*?)</td><td>(.*?)</td></tr>', body
    )
    return [(line, column, message) for line, column, message in rows]


async def stored(engine: AsyncEngine) -> list[Order]:
    async with session_scope(engine) as session:
        return list((await session.exec(select(Order).order_by(col(Order.id)))).all())


async def test_a_messy_csv_imports_its_good_lines_and_reports_the_rest_by_line(
    lead: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    answer = await upload(lead, MESSY_CSV)

    assert answer.status_code == 200, answer.text
    assert '<progress class="import-progress"' in answer.text
    assert "Columns not used: Notes." in answer.text
    page = await finished(lead, answer)
    assert "6 of 6 lines: 3 new, 0 updated, 0 unchanged, 3 rejected." in page
    assert report_rows(page) == [
        ("5", "E-mail", "“not-an-email” is not an email address"),
        ("5", "order_total", "orderTotal: USD allows at most 2 decimal places"),
        (
            "6",
            "Payment Request ID",  # in the file's own words
            "Give paymentRequestId or paymentId: the Antom payment this order belongs to",
        ),
        ("8", "–", "8 values, but the header has 7 columns"),
    ]
    orders = await stored(engine)
    assert [(o.payment_request_id, o.buyer_name, o.total_minor) for o in orders] == [
        ("PR-1", "Mei Chen", 12900),
        ("PR-2", "Sam Porter", 1250),
        ("PR-6", "Haruto Sato", 5000),
    ]
    assert {o.source for o in orders} == {"csv"}


async def test_what_a_bad_line_contained_is_shown_escaped(
    lead: httpx.AsyncClient,
) -> None:
    data = b"paymentId,buyerEmail\nP1,<script>alert(1)</script>\n"
    page = await finished(lead, await upload(lead, data))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_uploading_the_same_file_again_changes_nothing(
    lead: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await finished(lead, await upload(lead, MESSY_CSV))
    before = [(o.id, o.updated_at) for o in await stored(engine)]

    page = await finished(lead, await upload(lead, MESSY_CSV))

    assert "6 of 6 lines: 0 new, 0 updated, 3 unchanged, 3 rejected." in page
    assert [(o.id, o.updated_at) for o in await stored(engine)] == before


async def test_a_file_with_fewer_columns_keeps_what_it_does_not_mention(
    lead: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await finished(lead, await upload(lead, MESSY_CSV))

    page = await finished(
        lead, await upload(lead, b"paymentRequestId,email\nPR-1,mei@example.org\n")
    )

    assert "1 of 1 lines: 0 new, 1 updated, 0 unchanged, 0 rejected." in page
    mei = next(o for o in await stored(engine) if o.payment_request_id == "PR-1")
    assert (mei.buyer_email, mei.buyer_name, mei.total_minor) == (
        "mei@example.org",
        "Mei Chen",
        12900,
    )


async def test_imported_orders_join_payments_already_at_the_desk(
    lead: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    async with session_scope(engine) as session:
        payment = await ledger.create_payment(
            session,
            Payment(
                payment_id="2026PAY0001",
                payment_request_id="PR-1",
                method="ALIPAY_CN",
                currency="USD",
                amount_minor=12900,
                status="SUCCESS",
            ),
        )

    await finished(lead, await upload(lead, MESSY_CSV))

    async with session_scope(engine) as session:
        joined = await session.get(Payment, payment.id)
    assert joined is not None
    assert (joined.buyer_name, joined.reference_order_id) == ("Mei Chen", "ORD-1")


async def test_without_javascript_the_upload_leads_to_the_imports_page(
    lead: httpx.AsyncClient,
) -> None:
    answer = await upload(lead, MESSY_CSV, htmx=False)

    assert answer.status_code == 303
    assert re.fullmatch(r"/orders/imports/\d+", answer.headers["location"])
    page = await lead.get(answer.headers["location"])
    assert page.status_code == 200
    assert "<h1>Import of orders.csv</h1>" in page.text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"name,email\nMei,mei@example.com\n", "The header needs a paymentRequestId or paymentId"),
        (b"", "The file is empty"),
        ("paymentId,buyerName\nP1,Jos\xe9\n".encode("latin-1"), "The file is not UTF-8 text"),
    ],
)
async def test_a_file_that_cannot_be_read_imports_nothing(
    lead: httpx.AsyncClient, engine: AsyncEngine, data: bytes, message: str
) -> None:
    answer = await upload(lead, data)

    assert answer.status_code == 422
    assert "Nothing was imported." in answer.text and message in answer.text
    async with session_scope(engine) as session:
        assert (await session.exec(select(OrderImport))).all() == []


async def test_the_upload_page_lists_columns_and_recent_imports(lead: httpx.AsyncClient) -> None:
    await finished(lead, await upload(lead, MESSY_CSV, name="march.csv"))

    page = await lead.get("/orders/import")

    assert page.status_code == 200
    assert 'id="upload-progress"' in page.text and 'hx-encoding="multipart/form-data"' in page.text
    assert '<td class="mono">buyerEmail</td>' in page.text
    assert ">march.csv</a>" in page.text
    assert "3 orders waiting for their payment." in page.text


@pytest.mark.parametrize("role", ["agent"])
async def test_agents_cannot_import_orders(signed_in: SignedIn, role: str) -> None:
    client, _ = await signed_in(role=role)

    assert (await client.get("/orders/import")).status_code == 403
    assert (await upload(client, MESSY_CSV)).status_code == 403


async def test_admins_can_import_orders(signed_in: SignedIn, engine: AsyncEngine) -> None:
    client, admin = await signed_in(role="admin")

    await finished(client, await upload(client, MESSY_CSV))

    orders = await stored(engine)
    assert orders and {o.uploaded_by for o in orders} == {admin.id}


async def test_the_upload_needs_the_csrf_token(lead: httpx.AsyncClient) -> None:
    token: Any = lead.headers.pop("x-csrftoken")
    try:
        answer = await upload(lead, MESSY_CSV)
    finally:
        lead.headers["x-csrftoken"] = token
    assert answer.status_code == 403


async def test_recent_imports_are_timed_in_the_readers_time_zone(
    signed_in: SignedIn, engine: AsyncEngine
) -> None:
    client, lead = await signed_in(role="lead")
    async with session_scope(engine) as session:
        row = await session.get(User, lead.id)
        assert row is not None
        row.time_zone = "Asia/Tokyo"
    await finished(client, await upload(client, MESSY_CSV, name="march.csv"))

    page = (await client.get("/orders/import")).text

    started = re.search(r'<td><time datetime="[^"]+" title="([^"]+)"', page)
    assert started is not None, page
    assert "(Asia/Tokyo)" in started.group(1)
