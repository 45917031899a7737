"""What the lists say at a glance (issue 8), and the fragments live pages fetch: through
HTTP, as a browser without JavaScript or as htmx asks for them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

from sqlmodel import select

from tests.pages.conftest import Desk
from tests.pages.factories import add_payment, add_refund
from web.models import Alert, AlertKind, Payment, RefundStatus, User

NOW = datetime.now(UTC).replace(microsecond=0)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def _row(html: str, pk: int, kind: str = "payment") -> str:
    found = re.search(rf'<tr id="{kind}-row-{pk}".*?</tr>', html, re.S)
    assert found, f"no row for {kind} {pk}"
    return found.group(0)


async def test_the_payments_list_says_what_blocks_a_refund(desk: Desk) -> None:
    async with desk.session() as s:
        chargeback = await add_payment(s, dispute_open=True, created_at=NOW)
        uncaptured = await add_payment(s, method="CARD", captured_minor=0, created_at=NOW)
        refunded = await add_payment(s, amount_minor=5000, created_at=NOW)
        refunded.refunded_minor, refunded.refund_count = 5000, 1
        old = await add_payment(s, method="DANA", created_at=NOW, paid_at=NOW - timedelta(days=91))
        fine = await add_payment(s, created_at=NOW)
        await s.commit()
    page = (await desk.client.get("/payments")).text
    expected = {
        chargeback.id: "chargeback",
        uncaptured.id: "not_captured",
        refunded.id: "fully_refunded",
        old.id: "window_closed",
    }
    for pk, blocker in expected.items():
        row = _row(page, pk or 0)
        assert f'data-blocker="{blocker}"' in row, (pk, row)
        assert 'data-status="success"' in row  # beside "Paid"
    assert "data-blocker" not in _row(page, fine.id or 0)
    # The payment page's header says the same.
    detail = (await desk.client.get(f"/payments/{chargeback.id}")).text
    head = re.search(r'id="payment-head".*?</div>', detail, re.S)
    assert head and 'data-blocker="chargeback"' in head.group(0)


async def test_a_failed_refund_says_why_and_what_next_in_the_lists(desk: Desk) -> None:
    async with desk.session() as s:
        payment = await add_payment(s, created_at=NOW)
        failed = await add_refund(
            s, payment, status=RefundStatus.FAILED, result_code="MERCHANT_BALANCE_NOT_ENOUGH"
        )
        await s.commit()
    page = (await desk.client.get("/refunds")).text
    row = _text(_row(page, failed.id or 0, "refund"))
    assert "Antom: The merchant balance at Antom is too low" in row
    assert "Next: Ask finance to top up the Antom balance, then refund again." in row
    assert "Refund again" in row
    detail = _text((await desk.client.get(f"/refunds/{failed.id}")).text)
    assert "Why it failed" in detail and "MERCHANT_BALANCE_NOT_ENOUGH" in detail


async def test_fresh_rows_are_rendered_again_and_new_ones_counted(desk: Desk) -> None:
    async with desk.session() as s:
        payment = await add_payment(s, created_at=NOW)
        shown = await add_refund(s, payment, status=RefundStatus.PROCESSING, created_at=NOW)
        await s.commit()
    page = (await desk.client.get("/refunds?status=processing")).text
    since = re.search(r'name="since" value="(\d+)"', page)
    assert since and 'name="shown" value="' + str(shown.id) in page
    async with desk.session() as s:
        payment_row = await s.get(Payment, payment.id)
        assert payment_row is not None
        await add_refund(s, payment_row, status=RefundStatus.PROCESSING, created_at=NOW)
        await add_refund(s, payment_row, status=RefundStatus.PROCESSING, created_at=NOW)
        row = await s.get(type(shown), shown.id)
        assert row is not None
        row.status = RefundStatus.SUCCEEDED
        await s.commit()
    fresh = await desk.client.get(
        "/refunds/fresh",
        params={"status": "processing", "since": since.group(1), "shown": str(shown.id)},
        headers={"HX-Request": "true"},
        # first_page omitted: a later page counts nothing new
    )
    assert fresh.status_code == 200
    assert "new refund" not in fresh.text
    first = await desk.client.get(
        "/refunds/fresh",
        params={
            "status": "processing",
            "since": since.group(1),
            "shown": str(shown.id),
            "first_page": "1",
        },
        headers={"HX-Request": "true"},
    )
    text = _text(first.text)
    assert "2 new refunds — show" in text
    # The shown row, as it is now: settled, so no longer on a "processing" worklist.
    row_html = _row(first.text, shown.id or 0, "refund")
    assert 'data-status="succeeded"' in row_html and "row-stale" in row_html
    assert "No longer matches the filters" in _text(row_html)
    assert 'id="refunds-table" hx-swap-oob="true"' in first.text


async def test_worklist_items_show_time_both_ways_separate_links_and_need_a_note(
    desk: Desk,
) -> None:
    lead_client = desk.client
    raised = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    async with desk.session() as s:
        payment = await add_payment(s, created_at=NOW)
        refund = await add_refund(s, payment, status=RefundStatus.SUCCEEDED, external=True)
        alert = Alert(
            dedupe_key="external_refund:x",
            kind=AlertKind.EXTERNAL_REFUND,
            refund_pk=refund.id,
            payment_pk=payment.id,
            message="A refund was made outside the desk",
            created_at=raised,
        )
        s.add(alert)
        lead = (await s.exec(select(User).where(User.id == desk.agent.id))).one()
        lead.role = "lead"  # type: ignore[assignment]
        await s.commit()
    page = (await lead_client.get("/worklists?queue=external")).text
    found = re.search(rf'<tr id="item-{alert.id}".*?</tr>', page, re.S)
    assert found
    cells = _text(found.group(0))
    assert f"{raised:%Y-%m-%d %H:%M} UTC · 5 min ago" in cells
    links = re.findall(r"<li><a href=\"([^\"]+)\">([^<]+)</a></li>", found.group(0))
    assert links == [
        (f"/refunds/{refund.id}", f"Refund #{refund.id}"),
        (f"/payments/{payment.id}", f"Payment #{payment.id}"),
    ]
    url = f"/worklists/{alert.id}/close"
    refused = await desk.post_form(url, {"note": " "}, htmx=True)
    assert refused.status_code == 422 and "Say what was done" in refused.text
    count = await lead_client.get("/worklists/count", headers={"HX-Request": "true"})
    assert ">1<" in count.text.replace('<span class="sr-only"> open</span>', "<")
    done = await desk.post_form(url, {"note": "Refund booked by finance"}, htmx=True)
    assert done.status_code == 200 and done.headers["hx-trigger"] == "desk:stale"
    assert "Refund booked by finance" in _text(done.text) and "Closed" in _text(done.text)
    async with desk.session() as s:
        stored = await s.get(Alert, alert.id)
        assert stored is not None and stored.resolved_at is not None
        assert stored.resolved_by == desk.agent.id
    count = await lead_client.get("/worklists/count", headers={"HX-Request": "true"})
    assert "nav-count-zero" in count.text


async def test_times_show_in_the_users_time_zone_in_iso_form(desk: Desk) -> None:
    async with desk.session() as s:
        payment = await add_payment(s, created_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
        await s.commit()
    utc_page = (await desk.client.get("/payments")).text
    assert "2026-03-01 23:30" in _row(utc_page, payment.id or 0)
    # The browser's guess is taken once, and never over a choice.
    guessed = await desk.post_form(
        "/account/time-zone", {"time_zone": "Asia/Singapore", "source": "browser"}, htmx=True
    )
    assert guessed.headers.get("hx-refresh") == "true"
    row = _row((await desk.client.get("/payments")).text, payment.id or 0)
    assert "2026-03-02 07:30" in row  # UTC+8, the next day
    # Date filters mean whole days where the reader is: the day the page shows.
    on_the_2nd = (await desk.client.get("/payments?date_from=2026-03-02&date_to=2026-03-02")).text
    assert f'id="payment-row-{payment.id}"' in on_the_2nd
    on_the_1st = (await desk.client.get("/payments?date_from=2026-03-01&date_to=2026-03-01")).text
    assert f'id="payment-row-{payment.id}"' not in on_the_1st
    chosen = await desk.post_form("/account/time-zone", {"time_zone": "America/New_York"})
    assert "Times are now shown in America/New_York" in _text(chosen.text)
    again = await desk.post_form(
        "/account/time-zone", {"time_zone": "Asia/Tokyo", "source": "browser"}, htmx=True
    )
    assert "hx-refresh" not in again.headers
    row = _row((await desk.client.get("/payments")).text, payment.id or 0)
    assert "2026-03-01 18:30" in row
    bad = await desk.post_form("/account/time-zone", {"time_zone": "Mars/Olympus"})
    assert "is not a time zone the desk knows" in _text(bad.text)
