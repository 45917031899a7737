"""The refund page's message for the customer follows the refund's status, and the
refunds list shows its totals per currency with links that keep the filters."""

from __future__ import annotations

import re
from html import unescape

from tests.pages.conftest import Desk
from tests.pages.factories import add_payment, add_refund
from web.models import Refund, RefundStatus


def _message(html: str) -> str:
    found = re.search(r'<textarea id="customer-message"[^>]*>(.*?)</textarea>', html, re.S)
    assert found, "no customer message on the page"
    return unescape(found.group(1))


async def test_the_message_follows_the_status(desk: Desk) -> None:
    async with desk.session() as s:
        payment = await add_payment(s, method="GCASH", currency="PHP", amount_minor=90_000)
        refund = await add_refund(
            s, payment, amount_minor=12_345, status=RefundStatus.PROCESSING, refund_id="2026R1"
        )
        await s.commit()
    page = await desk.client.get(f"/refunds/{refund.id}")
    assert page.status_code == 200
    text = _message(page.text)
    assert "started a refund of ₱123.45 to your GCash wallet" in text
    assert "1 to 3 business days" in text and "2026R1" in text
    assert 'data-copy="customer-message"' in page.text

    async with desk.session() as s:
        row = await s.get(Refund, refund.id)
        assert row is not None
        row.status = RefundStatus.SUCCEEDED
        row.acquirer_reference_no = "7412345"
        await s.commit()
    again = await desk.client.get(f"/refunds/{refund.id}", headers={"HX-Request": "true"})
    text = _message(again.text)
    assert text.startswith("Your refund of ₱123.45 is complete")
    assert "7412345" in text  # the acquirer's reference wins over Antom's refund id


async def test_refunds_list_totals_per_currency(desk: Desk) -> None:
    async with desk.session() as s:
        usd = await add_payment(s, currency="USD", amount_minor=10_000)
        jpy = await add_payment(s, currency="JPY", amount_minor=10_000)
        await add_refund(s, usd, amount_minor=1_050, reason="goodwill", reason_text="Goodwill")
        await add_refund(s, usd, amount_minor=2_000, reason="goodwill", reason_text="Goodwill")
        await add_refund(s, jpy, amount_minor=700)
        await s.commit()
    page = await desk.client.get("/refunds?reason=goodwill")
    assert page.status_code == 200
    # The page asks for its totals (with its filters) once it is shown.
    later = re.search(r'id="refunds-totals"[^>]*hx-get="([^"]+)"', page.text)
    assert later and "reason=goodwill" in later.group(1) and "part=totals" in later.group(1)
    page = await desk.client.get(unescape(later.group(1)))
    assert page.status_code == 200
    totals = re.search(r'<dl class="currency-totals".*?</dl>', page.text, re.S)
    assert totals
    block = unescape(totals.group(0))
    assert "$30.50" in block and "2 refunds" in block and "¥" not in block
    assert "currency=USD&amp;reason=goodwill" in totals.group(0)
    everything = unescape(
        re.search(
            r'<dl class="currency-totals".*?</dl>',
            (await desk.client.get("/refunds?part=totals")).text,
            re.S,
        ).group(0)  # type: ignore[union-attr]
    )
    assert "¥700" in everything and "$30.50" in everything
