"""The list query layer: search, filters, sort and keyset pagination, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.pages.factories import add_payment, add_refund, add_user, scratch_engine
from web.models import Payment, RefundStatus
from web.services import listing
from web.services.listing import (
    Cursor,
    Page,
    PaymentFilters,
    RefundFilters,
    list_payments,
    list_refunds,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(
    name="engine", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def fx_engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    async with scratch_engine(request.param) as engine:
        yield engine


@pytest.fixture(name="session")
async def fx_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


async def _tied_payments(session: AsyncSession, n: int = 47) -> list[Payment]:
    """Payments whose time and amount collide in groups of up to four (ties everywhere)."""
    return [
        await add_payment(
            session,
            created_at=T0 + timedelta(minutes=i // 4),
            amount_minor=1000 * (1 + (i * 7) % 5),
        )
        for i in range(n)
    ]


def _ids(page: Page[Payment]) -> list[int]:
    return [p.id or 0 for p in page.rows]


@pytest.mark.parametrize("sort", ["time", "amount"])
@pytest.mark.parametrize("direction", ["desc", "asc"])
async def test_keyset_pages_cover_every_row_once_in_both_directions(
    session: AsyncSession, sort: str, direction: str
) -> None:
    payments = await _tied_payments(session)
    column = "created_at" if sort == "time" else "amount_minor"
    expected = [
        p.id
        for p in sorted(
            payments, key=lambda p: (getattr(p, column), p.id), reverse=direction == "desc"
        )
    ]
    f = PaymentFilters(sort=sort, direction=direction)  # type: ignore[arg-type]

    forward: list[list[int]] = []
    page = await list_payments(session, f, page_size=10)
    assert page.prev_cursor is None
    forward.append(_ids(page))
    while page.next_cursor:
        page = await list_payments(session, replace(f, cursor=page.next_cursor), page_size=10)
        forward.append(_ids(page))
    assert [i for chunk in forward for i in chunk] == expected
    assert [len(c) for c in forward] == [10, 10, 10, 10, 7]

    backward = [_ids(page)]
    while page.prev_cursor:
        page = await list_payments(session, replace(f, cursor=page.prev_cursor), page_size=10)
        backward.append(_ids(page))
    assert backward[::-1] == forward
    assert page.next_cursor is not None  # the first page reached backwards links forward


async def test_a_page_is_stable_when_rows_are_added_before_it(session: AsyncSession) -> None:
    await _tied_payments(session, 20)
    first = await list_payments(session, PaymentFilters(), page_size=10)
    second = await list_payments(
        session, PaymentFilters(cursor=first.next_cursor or ""), page_size=10
    )
    # A newer payment arrives while the agent reads page one (OFFSET would shift page two).
    await add_payment(session, created_at=T0 + timedelta(days=1))
    again = await list_payments(
        session, PaymentFilters(cursor=first.next_cursor or ""), page_size=10
    )
    assert _ids(again) == _ids(second)


async def test_a_malformed_or_foreign_cursor_falls_back_to_the_first_page(
    session: AsyncSession,
) -> None:
    await _tied_payments(session, 12)
    first = await list_payments(session, PaymentFilters(), page_size=5)
    amount_cursor = Cursor("amount", 3000, 1).encode()
    for cursor in ("garbage!!", "W10", amount_cursor, Cursor("time", "x", 1).encode()):
        page = await list_payments(session, PaymentFilters(cursor=cursor), page_size=5)
        assert _ids(page) == _ids(first), cursor


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("2026PAY-ALPHA", ["alpha"]),
        ("REQ-BETA", ["beta"]),
        ("ORDER-42", ["alpha"]),
        ("  ORDER-42  ", ["alpha"]),
        ("Ada.Lovelace@Example.com", ["alpha"]),  # a whole email, any case
        ("ada.lovelace@", ["alpha"]),  # typing an email: prefix
        ("ada.l", ["alpha"]),  # email prefix
        ("grace", ["beta"]),  # name prefix, case-insensitive
        ("hopper", ["beta"]),  # any fragment of a name (three characters or more)
        ("LOVELACE@EX", ["alpha"]),  # the middle of an email, any case
        ("pay-al", ["alpha"]),  # the middle of a paymentId
        ("DER-4", ["alpha"]),  # the middle of an order reference
        ("q-be", ["beta"]),  # the middle of a paymentRequestId
        ("2026PAY", ["beta", "alpha"]),  # a fragment several payments share
        ("gr", ["beta"]),  # one or two characters: from the start only
        ("ra", []),
        ("%", []),  # LIKE wildcards are taken literally
        ("_race", []),
        ("a%e", []),
    ],
)
async def test_search_box(session: AsyncSession, q: str, expected: list[str]) -> None:
    alpha = await add_payment(
        session,
        payment_id="2026PAY-ALPHA",
        reference_order_id="ORDER-42",
        buyer_email="ada.lovelace@example.com",
        buyer_name="Ada Lovelace",
    )
    beta = await add_payment(
        session,
        payment_id="2026PAY-BETA",
        payment_request_id="REQ-BETA",
        reference_order_id="ORDER-B",  # a fixed one: ORDER-42 is a fragment of ORDER-420
        buyer_email="gh@navy.mil",
        buyer_name="Grace Hopper",
    )
    names = {alpha.id: "alpha", beta.id: "beta"}
    page = await list_payments(session, PaymentFilters(q=q))
    assert [names[i] for i in _ids(page)] == expected


async def test_filters_narrow_the_payments(session: AsyncSession) -> None:
    old = await add_payment(session, created_at=T0 - timedelta(days=10), currency="JPY")
    refunded = await add_payment(session, created_at=T0, method="GCASH", currency="PHP")
    failed = await add_payment(
        session, created_at=T0 + timedelta(days=1), status="FAIL", paid_at=None
    )
    late_paid = await add_payment(
        session, created_at=T0 - timedelta(days=3), paid_at=T0 + timedelta(days=2)
    )
    await add_refund(session, refunded, status=RefundStatus.FAILED)

    async def ids(**kw: object) -> set[int]:
        return set(_ids(await list_payments(session, PaymentFilters(**kw))))  # type: ignore[arg-type]

    assert await ids(status="FAIL") == {failed.id}
    assert await ids(method="GCASH") == {refunded.id}
    assert await ids(currency="JPY") == {old.id}
    assert await ids(has_refunds="yes") == {refunded.id}
    assert await ids(has_refunds="no") == {old.id, failed.id, late_paid.id}
    day = T0.date()
    assert await ids(date_from=day, date_to=day) == {refunded.id}
    assert await ids(date_from=day) == {refunded.id, failed.id}
    assert await ids(date_to=day - timedelta(days=1)) == {old.id, late_paid.id}
    assert await ids(date_field="paid", date_from=day + timedelta(days=2)) == {late_paid.id}
    assert await ids(date_field="paid", date_to=day - timedelta(days=5)) == {old.id}


async def test_totals_are_capped(session: AsyncSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "COUNT_CAP", 5)
    await _tied_payments(session, 7)
    page = await list_payments(session, PaymentFilters(), page_size=3)
    assert (page.total, page.total_capped, page.total_label) == (5, True, "5+")
    narrow = await list_payments(session, PaymentFilters(q="ORDER-nothing"), page_size=3)
    assert (narrow.total, narrow.total_capped, narrow.total_label) == (0, False, "0")


async def test_refund_filters_and_joined_rows(session: AsyncSession) -> None:
    ann = await add_user(session, name="Ann")
    bob = await add_user(session, name="Bob")
    usd = await add_payment(session, payment_id="2026PAY-USD", payment_request_id="REQ-USD")
    jpy = await add_payment(session, currency="JPY")
    r1 = await add_refund(session, usd, agent_id=ann.id, created_at=T0)
    r2 = await add_refund(
        session, usd, agent_id=bob.id, status=RefundStatus.PROCESSING, created_at=T0
    )
    r3 = await add_refund(session, jpy, external=True, created_at=T0 + timedelta(days=2))

    async def ids(**kw: object) -> list[int]:
        page = await list_refunds(session, RefundFilters(**kw))  # type: ignore[arg-type]
        return [row.refund.id or 0 for row in page.rows]

    assert await ids() == [r3.id, r2.id, r1.id]
    assert await ids(status="processing") == [r2.id]
    assert await ids(agent_id=ann.id) == [r1.id]
    assert await ids(currency="JPY") == [r3.id]
    assert await ids(external="yes") == [r3.id]
    assert await ids(external="no") == [r2.id, r1.id]
    assert await ids(payment="2026PAY-USD") == [r2.id, r1.id]
    assert await ids(payment="REQ-USD") == [r2.id, r1.id]
    assert await ids(date_from=date(2026, 3, 2)) == [r3.id]
    assert await ids(sort="amount", direction="asc") == [r1.id, r2.id, r3.id]

    rows = (await list_refunds(session, RefundFilters())).rows
    assert [(r.payment.payment_id, r.agent.name if r.agent else None) for r in rows] == [
        (jpy.payment_id, None),
        ("2026PAY-USD", "Bob"),
        ("2026PAY-USD", "Ann"),
    ]


async def test_refund_pages_walk_through_ties(session: AsyncSession) -> None:
    payment = await add_payment(session)
    made = [
        await add_refund(session, payment, created_at=T0 + timedelta(seconds=i // 3))
        for i in range(23)
    ]
    expected = [r.id for r in sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)]
    seen: list[int] = []
    cursor = ""
    while True:
        page = await list_refunds(session, RefundFilters(cursor=cursor), page_size=4)
        seen.extend(row.refund.id or 0 for row in page.rows)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == expected
