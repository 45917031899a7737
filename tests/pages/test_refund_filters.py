"""The refunds list's reason, method, approval and full/partial filters, and its exact
totals per currency, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.pages.factories import add_payment, add_refund, add_user, scratch_engine
from web.models import RefundStatus
from web.services import listing
from web.services.listing import CurrencyTotal, RefundFilters

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


async def _fixture(session: AsyncSession) -> dict[str, int]:
    """Five refunds by hand: amounts and currencies chosen so each total is checkable."""
    agent = await add_user(session)
    card = await add_payment(session, method="CARD", currency="USD", amount_minor=5_000)
    wallet = await add_payment(session, method="GCASH", currency="PHP", amount_minor=90_000)
    yen = await add_payment(session, method="ALIPAY_CN", currency="JPY", amount_minor=3_000)
    ids = {
        "usd_full": await add_refund(session, card, amount_minor=5_000, agent_id=agent.id),
        "php_part": await add_refund(
            session,
            wallet,
            amount_minor=1_250,
            reason="goodwill",
            reason_text="Goodwill",
            approval_reason="over your limit",
            status=RefundStatus.FAILED,
        ),
        "php_part2": await add_refund(session, wallet, amount_minor=750, reason="goodwill"),
        "jpy_full": await add_refund(session, yen, amount_minor=3_000, created_at=T0),
        "jpy_small": await add_refund(session, yen, amount_minor=1, status=RefundStatus.SUCCEEDED),
    }
    await session.commit()
    return {k: r.id or 0 for k, r in ids.items()}


async def _ids(session: AsyncSession, f: RefundFilters) -> set[int]:
    page = await listing.list_refunds(session, f, page_size=100)
    return {row.refund.id or 0 for row in page.rows}


async def test_new_filters_narrow_the_refunds(session: AsyncSession) -> None:
    ids = await _fixture(session)
    by = lambda **kw: _ids(session, listing.refund_filters(**kw))  # noqa: E731
    assert await by(reason="goodwill") == {ids["php_part"], ids["php_part2"]}
    assert await by(method="card") == {ids["usd_full"]}
    assert await by(approval="yes") == {ids["php_part"]}
    assert ids["php_part"] not in await by(approval="no")
    assert await by(kind="full") == {ids["usd_full"], ids["jpy_full"]}
    assert await by(kind="partial") == {ids["php_part"], ids["php_part2"], ids["jpy_small"]}
    assert await by(kind="partial", reason="goodwill", approval="no") == {ids["php_part2"]}
    # Nonsense values fall back to "any", never an error.
    assert len(await by(kind="half", approval="maybe")) == 5


async def test_totals_per_currency_are_exact_and_never_mixed(session: AsyncSession) -> None:
    await _fixture(session)
    everything = await listing.refund_totals(session, RefundFilters())
    assert everything == [
        CurrencyTotal("JPY", 2, 3_001),
        CurrencyTotal("PHP", 2, 2_000),
        CurrencyTotal("USD", 1, 5_000),
    ]
    goodwill = await listing.refund_totals(session, listing.refund_filters(reason="goodwill"))
    assert goodwill == [CurrencyTotal("PHP", 2, 2_000)]
    failed = await listing.refund_totals(session, listing.refund_filters(status="failed"))
    assert failed == [CurrencyTotal("PHP", 1, 1_250)]
    none = await listing.refund_totals(
        session, RefundFilters(date_from=date(2030, 1, 1), date_to=date(2030, 1, 2))
    )
    assert none == []


async def test_the_reversed_status_is_a_filter_value(session: AsyncSession) -> None:
    await _fixture(session)
    f = listing.refund_filters(status="reversed")
    assert f.status == "reversed"
    assert await _ids(session, f) == set()
    assert "reversed" in (await listing.refund_choices(session, f)).statuses


def test_filters_round_trip_through_query_params() -> None:
    f = listing.refund_filters(reason="goodwill", method="CARD", approval="yes", kind="partial")
    assert f.active
    params = f.query_params()
    assert params == {"reason": "goodwill", "method": "CARD", "approval": "yes", "kind": "partial"}
    assert listing.refund_filters(**params) == f
