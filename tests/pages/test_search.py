"""The payments search box: any fragment of an id, order reference, email or name, with the
match highlighted; on PostgreSQL answered by the trigram indexes, at a realistic size."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.pages.factories import add_payment
from tests.support.fixtures_app import only_postgres
from web.db import session_scope
from web.models import TRIGRAM_INDEXES, Payment, User
from web.services.listing import PAGE_SIZE, payment_search_clause
from web.settings import Settings

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
async def agent_desk(signed_in: SignedIn, engine: AsyncEngine) -> httpx.AsyncClient:
    async with session_scope(engine) as session:
        await add_payment(
            session,
            payment_id="202611250000MEI0001",
            payment_request_id="PR-MEI-7781",
            reference_order_id="ORD-10231",
            buyer_email="mei.chen@example.com",
            buyer_name="Mei Chen",
        )
        await add_payment(
            session,
            payment_id="202611250000SAM0002",
            payment_request_id="PR-SAM-9902",
            reference_order_id="ORD-20555",
            buyer_email="sam.porter@example.org",
            buyer_name="Sam <b>Porter</b>",
        )
    client, _ = await signed_in(role="agent")
    return client


async def results(client: httpx.AsyncClient, q: str) -> str:
    page = await client.get("/payments", params={"q": q}, headers={"HX-Request": "true"})
    assert page.status_code == 200, page.text
    return page.text


def marks(html: str) -> list[str]:
    return re.findall(r"<mark>(.*?)</mark>", html)


@pytest.mark.parametrize(
    ("q", "found", "marked"),
    [
        ("chen@exa", "ORD-10231", ["chen@exa"]),  # the middle of an email
        ("EI CH", "ORD-10231", ["ei Ch"]),  # the middle of a name, any case
        ("10231", "ORD-10231", ["10231"]),  # the middle of an order reference
        ("MEI0001", "ORD-10231", ["MEI0001"]),  # the middle of a paymentId
        ("SAM-99", "ORD-20555", ["SAM-99"]),  # the middle of a paymentRequestId
        ("example", "", ["example", "example"]),  # in both: every payment that has it
    ],
)
async def test_a_middle_fragment_finds_the_payment_and_is_highlighted(
    agent_desk: httpx.AsyncClient, q: str, found: str, marked: list[str]
) -> None:
    html = await results(agent_desk, q)

    unmarked = html.replace("<mark>", "").replace("</mark>", "")
    assert html.count('href="/payments/') == (1 if found else 2)
    assert found in unmarked
    assert marks(html) == marked


async def test_highlighting_escapes_what_it_wraps(agent_desk: httpx.AsyncClient) -> None:
    html = await results(agent_desk, "<b>Port")

    assert "<b>Porter</b>" not in html
    assert "Sam <mark>&lt;b&gt;Port</mark>er&lt;/b&gt;" in html


async def test_a_fragment_with_like_wildcards_matches_them_literally(
    agent_desk: httpx.AsyncClient,
) -> None:
    assert 'href="/payments/' not in await results(agent_desk, "ORD_1")
    assert 'href="/payments/' not in await results(agent_desk, "m%n")


async def test_one_or_two_characters_match_from_the_start(agent_desk: httpx.AsyncClient) -> None:
    html = await results(agent_desk, "me")
    assert html.count('href="/payments/') == 1 and marks(html) == ["Me", "me"]
    assert 'href="/payments/' not in await results(agent_desk, "en")


# ---------------------------------------------------------------- PostgreSQL's plan


REALISTIC_ROWS = 100_000


async def fill(engine: AsyncEngine, rows: int) -> None:
    """``rows`` payments with distinct ids, orders, emails and names (one INSERT), analysed."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                """INSERT INTO payments (payment_id, payment_request_id, reference_order_id,
                       buyer_email, buyer_name, method, currency, amount_minor, captured_minor,
                       refunded_minor, reserved_minor, refund_count, status, dispute_open,
                       created_at, updated_at)
                   SELECT '2026' || lpad(g::text, 12, '0') || 'PAY', 'PR-' || md5(g::text),
                          'ORD-' || g, 'buyer' || g || '@example.com',
                          'Buyer ' || md5(g::text), 'ALIPAY_CN', 'USD', 1000, 1000, 0, 0, 0,
                          'SUCCESS', false,
                          timestamptz '2025-01-01' + g * interval '1 minute', now()
                   FROM generate_series(1, :rows) g"""
            ),
            {"rows": rows},
        )
        await conn.execute(sa.text("ANALYZE payments"))


def page_query(q: str) -> sa.Select[tuple[Payment]]:
    """The rows of the payments page for a search (listing.list_payments' first page)."""
    clause = payment_search_clause(q)
    assert clause is not None
    stmt: sa.Select[tuple[Payment]] = (
        sa.select(Payment)
        .where(clause)
        .order_by(col(Payment.created_at).desc(), col(Payment.id).desc())
        .limit(PAGE_SIZE + 1)
    )
    return stmt


async def plan_of(engine: AsyncEngine, stmt: sa.Select[tuple[Payment]], *settings: str) -> str:
    """PostgreSQL's plan for ``stmt``, sent with its bound parameters as the app sends it."""
    compiled = stmt.compile(dialect=engine.dialect)
    async with engine.begin() as conn:
        for setting in settings:
            await conn.exec_driver_sql(setting)
        rows = await conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params)
        return "\n".join(row[0] for row in rows.all())


SEARCH_INDEX = "ix_payments_search_trgm"


@only_postgres
async def test_the_migration_builds_the_trigram_index(engine: AsyncEngine, db_url: str) -> None:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'payments'")
        )
        indexes = {name: definition for name, definition in rows.all()}
    assert [index.name for index in TRIGRAM_INDEXES] == [SEARCH_INDEX]
    assert "USING gin" in indexes[SEARCH_INDEX] and "gin_trgm_ops" in indexes[SEARCH_INDEX]


@only_postgres
async def test_a_fragment_search_uses_the_trigram_index_at_a_realistic_size(
    engine: AsyncEngine, db_url: str
) -> None:
    await fill(engine, REALISTIC_ROWS)

    for q in ("er4242@exa", "RD-4242", "0004242PA", "uyer 9f6"):
        plan = await plan_of(engine, page_query(q))
        assert f"Bitmap Index Scan on {SEARCH_INDEX}" in plan, plan
        assert "Seq Scan" not in plan, plan

    async with session_scope(engine) as session:
        found = await session.exec(select(Payment).where(payment_search_clause("er4242@exa")))
        assert {p.buyer_email for p in found.all()} == {"buyer4242@example.com"}


@only_postgres
async def test_the_planner_can_answer_a_fragment_from_the_index_alone(
    engine: AsyncEngine, db_url: str
) -> None:
    """On a small table the planner rightly prefers reading it; with scans off it must
    still be able to answer the search from the trigram index."""
    async with session_scope(engine) as session:
        for n in range(50):
            await add_payment(session, buyer_email=f"b{n}@example.com", buyer_name=f"B {n}")
    plan = await plan_of(
        engine,
        page_query("mple.c"),
        "SET LOCAL enable_seqscan = off",
        "SET LOCAL enable_indexscan = off",
    )
    assert f"Bitmap Index Scan on {SEARCH_INDEX}" in plan, plan
