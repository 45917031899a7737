"""The review page's numbers against a hand-computed fixture: two currencies, an
external refund, an approval, days in the lead's zone across the 2026-03-29 DST change
in Paris, an empty range; and the page itself (links, charts, permission)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.pages.conftest import Desk
from tests.pages.factories import add_payment, add_refund, add_user, scratch_engine
from web.models import RefundStatus, User
from web.services import review
from web.services.listing import RefundFilters


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture(
    name="scratch", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def fx_engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    async with scratch_engine(request.param) as engine:
        yield engine


async def fill(s: AsyncSession) -> tuple[User, User]:
    one, two = await add_user(s, name="Ann"), await add_user(s, name="Bo")
    card = await add_payment(s, method="CARD", currency="USD", amount_minor=5_000)
    yen = await add_payment(s, method="ALIPAY_CN", currency="JPY", amount_minor=3_000)
    a_at = utc(2026, 3, 28, 23, 30)  # 00:30 on the 29th in Paris (CET)
    await add_refund(
        s,
        card,
        amount_minor=1_000,
        agent_id=one.id,
        created_at=a_at,
        refunded_at=a_at + timedelta(seconds=60),
    )
    b_at = utc(2026, 3, 29, 22, 30)  # 00:30 on the 30th in Paris (CEST, after the change)
    await add_refund(
        s,
        card,
        amount_minor=500,
        agent_id=one.id,
        status=RefundStatus.FAILED,
        created_at=b_at,
        updated_at=b_at + timedelta(seconds=300),
    )
    c_at = utc(2026, 3, 29, 12)
    await add_refund(
        s,
        yen,
        amount_minor=3_000,
        agent_id=two.id,
        created_at=c_at,
        refunded_at=c_at + timedelta(seconds=120),
        reason="goodwill",
        reason_text="Goodwill",
    )
    d_at = utc(2026, 3, 28, 10)
    await add_refund(
        s,
        yen,
        amount_minor=100,
        agent_id=two.id,
        status=RefundStatus.REJECTED,
        approval_reason="over the cap",
        decided_by=one.id,
        decided_at=d_at + timedelta(seconds=600),
        created_at=d_at,
    )
    await add_refund(
        s,
        card,
        amount_minor=200,
        external=True,
        status=RefundStatus.PROCESSING,
        created_at=utc(2026, 3, 29, 10),
    )
    # 23:59 on the 27th in Paris: outside the range there, inside none of it.
    await add_refund(s, card, amount_minor=7, agent_id=one.id, created_at=utc(2026, 3, 27, 22, 59))
    await s.commit()
    return one, two


RANGE = {"date_from": date(2026, 3, 28), "date_to": date(2026, 3, 30)}


async def test_numbers_match_the_hand_computed_fixture(scratch: AsyncEngine) -> None:
    async with AsyncSession(scratch, expire_on_commit=False) as s:
        await fill(s)
        r = await review.build(s, RefundFilters(zone="Europe/Paris", **RANGE))  # type: ignore[arg-type]
    assert r.count == 5
    usd, jpy = (next(c for c in r.currencies if c.currency == k) for k in ("USD", "JPY"))
    assert (usd.count, usd.amount_minor, usd.succeeded_minor, usd.failed) == (3, 1_700, 1_000, 1)
    assert (usd.in_flight, usd.in_flight_minor) == (1, 200)
    assert (jpy.count, jpy.amount_minor, jpy.succeeded_minor) == (2, 3_100, 3_000)
    assert [c.currency for c in r.currencies] == ["JPY", "USD"]
    assert r.success_rate == pytest.approx(2 / 3)  # 2 succeeded of 2 + 1 failed
    timings = {t.method: (t.count, t.median_s, t.p90_s) for t in r.timings}
    assert timings == {"CARD": (2, 180.0, 300.0), "ALIPAY_CN": (1, 120.0, 120.0)}
    assert (r.full, r.partial) == (1, 4)
    assert [(a.name, a.count) for a in r.agents] == [("Ann", 2), ("Bo", 2), ("External", 1)]
    assert dict(r.agents[0].amounts) == {"USD": [2, 1_500]}
    assert r.reasons == [("duplicate", "Duplicate charge", 4), ("goodwill", "Goodwill", 1)]
    ap = r.approvals
    assert (ap.needed, ap.approved, ap.rejected, ap.waiting, ap.median_s) == (1, 0, 1, 0, 600.0)
    assert r.days == [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30)]
    assert r.per_day == {
        date(2026, 3, 28): Counter({"JPY": 1}),
        date(2026, 3, 29): Counter({"USD": 2, "JPY": 1}),
        date(2026, 3, 30): Counter({"USD": 1}),
    }
    # Buckets are [from, to): 60 s and 120 s in "1–5 min", 300 s in "5–30 min"; the
    # rejection is not in it (never sent).
    assert [n for _label, n in r.buckets] == [0, 2, 1, 0, 0, 0, 0]


async def test_days_are_the_viewers_own(scratch: AsyncEngine) -> None:
    async with AsyncSession(scratch, expire_on_commit=False) as s:
        await fill(s)
        r = await review.build(s, RefundFilters(zone="UTC", **RANGE))  # type: ignore[arg-type]
    # In UTC the 23:30 refund is on the 28th and the 22:30 one on the 29th; the 22:59 one
    # of the 27th stays out.
    assert r.count == 5
    assert r.per_day[date(2026, 3, 28)] == Counter({"USD": 1, "JPY": 1})
    assert r.per_day[date(2026, 3, 29)] == Counter({"USD": 2, "JPY": 1})
    assert r.per_day[date(2026, 3, 30)] == Counter()


async def test_an_empty_range(scratch: AsyncEngine) -> None:
    async with AsyncSession(scratch, expire_on_commit=False) as s:
        await fill(s)
        f = RefundFilters(zone="Europe/Paris", date_from=date(2030, 1, 1), date_to=date(2030, 1, 2))
        r = await review.build(s, f)
    assert (r.count, r.currencies, r.success_rate, r.timings, r.agents) == (0, [], None, [], [])
    assert r.days == [date(2030, 1, 1), date(2030, 1, 2)]
    assert all(n == 0 for _label, n in r.buckets)


async def test_the_review_page_links_every_number(
    desk: Desk, signed_in: Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
) -> None:
    async with desk.session() as s:
        one, _two = await fill(s)
    client, _lead = await signed_in(role="lead")
    assert (await desk.client.get("/review")).status_code == 403  # agents do not review
    page = await client.get("/review?date_from=2026-03-28&date_to=2026-03-30")
    assert page.status_code == 200
    html = page.text
    for chart in ("chart-per-day", "chart-reasons", "chart-agents", "chart-time-to-final"):
        assert re.search(rf'<svg class="chart" id="{chart}" role="img"', html)
        assert f'<title id="{chart}-title">' in html
    assert f"/refunds?agent={one.id}&amp;date_from=2026-03-28&amp;date_to=2026-03-30" in html
    assert "/refunds?date_from=2026-03-28&amp;date_to=2026-03-30&amp;kind=full" in html
    assert "style=" not in html
    drill = await client.get(f"/refunds?agent={one.id}&date_from=2026-03-28&date_to=2026-03-30")
    assert drill.text.count('id="refund-row-') == 2  # Ann's two in the UTC range
    assert "Review" in (await client.get("/refunds")).text  # in the nav for leads
