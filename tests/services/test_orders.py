"""The order feed's service: record checks, CSV reading, storing, joining, races."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.fixtures_app import only_postgres
from tests.support.waiting import wait_until
from web.db import session_scope
from web.models import Order, Payment
from web.services import ledger, orders
from web.services.orders import OrderRecord, Problem, parse_csv, validate
from web.settings import Settings


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


def record(**fields: object) -> OrderRecord:
    checked = validate({"paymentRequestId": "PR-1", **fields})
    assert isinstance(checked, OrderRecord), checked
    return checked


# ---------------------------------------------------------------- one record


def test_a_record_is_cleaned_field_by_field() -> None:
    checked = validate(
        {
            "paymentRequestId": "  PR-1 ",
            "buyerName": " Mei Chen ",
            "buyerEmail": "",
            "customerId": 4711,
            "orderTotal": 1234.5,
            "currency": "usd",
        }
    )
    assert isinstance(checked, OrderRecord)
    assert checked.values["payment_request_id"] == "PR-1"
    assert checked.values["buyer_name"] == "Mei Chen"
    assert checked.values["buyer_email"] is None  # empty means "not given"
    assert checked.values["customer_id"] == "4711"
    assert (checked.values["total_minor"], checked.values["total_currency"]) == (123450, "USD")


LONG_NAME = "buyerName is 121 characters long; at most 120 are allowed"
PHONE = "buyerPhone: use digits, spaces and + ( ) . - only (5+ digits)"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"buyerName": "x" * 121}, "buyerName", LONG_NAME),
        ({"buyerEmail": "mei@"}, "buyerEmail", "“mei@” is not an email address"),
        ({"buyerName": ["Mei"]}, "buyerName", "buyerName must be text, not list"),
        ({"buyerName": True}, "buyerName", "buyerName must be text, not bool"),
        (
            {"referenceOrderId": "ORD\n1"},
            "referenceOrderId",
            "referenceOrderId contains a control character",
        ),
        ({"orderTotal": "12.00"}, "currency", "Give the currency of orderTotal, e.g. USD"),
        (
            {"orderTotal": "1.5", "currency": "JPY"},
            "orderTotal",
            "orderTotal: JPY has no minor unit: enter a whole number",
        ),
        (
            {"orderTotal": "-3", "currency": "USD"},
            "orderTotal",
            "orderTotal: The amount cannot be negative",
        ),
        ({"currency": "XYZ"}, "currency", "“XYZ” is not a currency code Antom uses"),
        ({"buyerPhone": "12"}, "buyerPhone", PHONE),
        ({"email": "a@b.co"}, "email", "Unknown field “email” (did you mean buyerEmail?)"),
        ({"paymentid": "P1"}, "paymentid", "Unknown field “paymentid” (did you mean paymentId?)"),
    ],
)
def test_each_problem_names_its_field(fields: dict[str, object], field: str, message: str) -> None:
    checked = validate({"paymentRequestId": "PR-1", **fields})
    assert checked == [Problem(field, message)]


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    checked = validate({"paymentId": "A B", "buyerEmail": "no", "colour": "red"})
    assert isinstance(checked, list)
    assert [p.field for p in checked] == ["colour", "paymentId", "buyerEmail"]


def test_a_record_needs_one_of_the_payment_ids() -> None:
    assert validate({"buyerName": "Mei"}) == [
        Problem(
            "paymentRequestId",
            "Give paymentRequestId or paymentId: the Antom payment this order belongs to",
        )
    ]
    assert isinstance(validate({"paymentId": "P1"}), OrderRecord)


# ---------------------------------------------------------------- CSV files

HEADER = "paymentRequestId,referenceOrderId,buyerName,buyerEmail,orderTotal,currency"


def test_csv_with_bom_crlf_shuffled_columns_and_blank_lines() -> None:
    text = (
        "\ufeffBuyer Email;order_total;Currency;PAYMENT_REQUEST_ID;Name;Notes\r\n"
        "\r\n"
        "mei.chen@example.com;129.00;USD;PR-1;Mei Chen;VIP\r\n"
        ";;;;;\r\n"
        '"sam@example.com";12.5;usd;PR-2;"Porter; Sam";\r\n'
    )
    parsed = parse_csv(text.encode())
    assert parsed.errors == []
    assert parsed.ignored_columns == ["Notes"]
    assert [line.line for line in parsed.lines] == [3, 5]
    assert parsed.lines[0].record == {
        "buyerEmail": "mei.chen@example.com",
        "orderTotal": "129.00",
        "currency": "USD",
        "paymentRequestId": "PR-1",
        "buyerName": "Mei Chen",
    }
    assert parsed.lines[1].record["buyerName"] == "Porter; Sam"
    assert all(isinstance(validate(line.record), OrderRecord) for line in parsed.lines)


def test_csv_lines_are_numbered_where_they_start_in_the_file() -> None:
    text = f'{HEADER}\n"PR-1",ORD-1,"Mei\nChen",,,\n\nPR-2,ORD-2,Sam,,,\n'
    parsed = parse_csv(text.encode())
    assert [(line.line, line.record["paymentRequestId"]) for line in parsed.lines] == [
        (2, "PR-1"),
        (5, "PR-2"),
    ]


def test_a_line_with_more_values_than_columns_is_a_problem_of_that_line() -> None:
    parsed = parse_csv(f"{HEADER}\nPR-1,ORD-1,Mei,,,,extra\nPR-2,ORD-2\n".encode())
    assert parsed.errors == []
    assert parsed.lines[0].problem == "7 values, but the header has 6 columns"
    # Fewer values than columns: the rest are empty (spreadsheets drop trailing blanks).
    assert parsed.lines[1].problem is None
    assert parsed.lines[1].record["referenceOrderId"] == "ORD-2"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty"),
        (b"\n\n", "The file is empty"),
        (b"name,email\nMei,m@x.co\n", "The header needs a paymentRequestId or paymentId column"),
        (
            b"paymentId,payment_id\nP1,P1\n",
            "Columns “paymentId” and “payment_id” are both paymentId",
        ),
        ("paymentId,buyerName\nP1,Jos\xe9\n".encode("latin-1"), "The file is not UTF-8 text"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole(data: bytes, message: str) -> None:
    parsed = parse_csv(data)
    assert parsed.lines == [] or parsed.errors
    assert any(message in e for e in parsed.errors), parsed.errors


def test_utf16_from_excel_is_read() -> None:
    parsed = parse_csv("paymentId\tbuyerName\r\nP1\tJosé\r\n".encode("utf-16"))
    assert parsed.errors == []
    assert parsed.lines[0].record == {"paymentId": "P1", "buyerName": "José"}


def test_problems_are_reported_under_the_files_own_column_names() -> None:
    parsed = parse_csv(b"Payment Request ID,E-mail\nPR-1,nope\n")
    line = parsed.lines[0]
    checked = validate(line.record)
    assert isinstance(checked, list)
    report = orders._line_problems(parsed, line, checked)
    assert report == {
        "line": 2,
        "errors": [{"field": "E-mail", "message": "“nope” is not an email address"}],
    }


# ---------------------------------------------------------------- storing and joining


async def test_an_order_waiting_for_its_payment_is_attached_by_create_payment(
    engine: AsyncEngine,
) -> None:
    async with session_scope(engine) as session:
        saved = await orders.save_record(
            session, record(buyerName="Mei Chen", referenceOrderId="ORD-1"), source="api"
        )
        assert (saved.outcome, saved.payment_pk) == ("created", None)

    async with session_scope(engine) as session:
        payment = await ledger.create_payment(
            session,
            Payment(
                payment_id="PAY-1",
                payment_request_id="PR-1",
                method="ALIPAY_CN",
                currency="USD",
                amount_minor=1000,
                status="SUCCESS",
            ),
        )
    assert (payment.buyer_name, payment.reference_order_id) == ("Mei Chen", "ORD-1")
    async with session_scope(engine) as session:
        order = (await session.exec(select(Order))).one()
        assert order.payment_pk == payment.id
        assert order.joined_at is not None
        shown = await orders.order_for_payment(session, payment)
        assert shown is not None and shown.id == order.id


async def test_a_payment_without_an_order_is_stored_as_before(engine: AsyncEngine) -> None:
    async with session_scope(engine) as session:
        payment = await ledger.create_payment(
            session,
            Payment(
                payment_id="PAY-9",
                payment_request_id="PR-9",
                method="CARD",
                currency="USD",
                amount_minor=1000,
                status="SUCCESS",
            ),
        )
        assert payment.buyer_email is None
        assert await orders.order_for_payment(session, payment) is None
        assert await orders.waiting_count(session) == 0


@only_postgres
async def test_two_requests_creating_the_same_order_at_once_leave_one_order(
    engine: AsyncEngine, db_url: str
) -> None:
    """The second insert waits on the unique index for the first transaction; when that
    commits, the second's savepoint alone rolls back and it finds the order the first one
    made. Neither request fails, and there is one order."""
    first = AsyncSession(engine, expire_on_commit=False)
    made = await orders.save_record(first, record(buyerName="Mei Chen"), source="api")

    async def second() -> orders.Saved:
        async with session_scope(engine) as session:
            return await orders.save_record(session, record(buyerName="Mei Chen"), source="api")

    racing = asyncio.create_task(second())

    async def waiting_on_the_first() -> bool:
        async with engine.connect() as conn:
            waiting = await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
            return bool(waiting.scalar_one())

    await wait_until(waiting_on_the_first, what="the second insert to wait for the first")
    await first.commit()
    await first.close()
    raced = await racing

    assert (made.outcome, raced.outcome) == ("created", "unchanged")
    async with session_scope(engine) as session:
        stored = (await session.exec(select(Order).order_by(col(Order.id)))).all()
    assert [(o.payment_request_id, o.buyer_name) for o in stored] == [("PR-1", "Mei Chen")]
