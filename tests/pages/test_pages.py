"""The pages through HTTP: lists, filters, pagination, fragments, detail pages, the refund form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import select

from tests.pages.conftest import Desk
from tests.pages.factories import add_event, add_payment, add_refund
from tests.support.simulator import SimHandle
from web.models import EventSource, Payment, Refund, RefundStatus

NOW = datetime.now(UTC).replace(microsecond=0)


def _fragment(html: str) -> bool:
    return "<html" not in html


def _text(html: str) -> str:
    """Visible text, whitespace collapsed (assertions on what an agent reads)."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def _next_href(html: str) -> str | None:
    found = re.search(r'<a class="btn btn-small" href="([^"]+)" rel="next"', html)
    return unescape(found.group(1)) if found else None


async def _payments(desk: Desk, n: int, **kw: Any) -> list[Payment]:
    async with desk.session() as s:
        made = [
            await add_payment(s, created_at=NOW - timedelta(minutes=i // 3), **kw) for i in range(n)
        ]
        await s.commit()
    return made


# ---------------------------------------------------------------- lists


async def test_payments_list_is_a_page_or_a_fragment(desk: Desk) -> None:
    await _payments(desk, 1, payment_id="2026PAYFRAG")
    url = "/payments?q=2026PAYFRAG"

    full = await desk.client.get(url)
    assert full.status_code == 200
    assert not _fragment(full.text) and 'id="payment-filters"' in full.text
    assert "2026PAYFRAG" in full.text and full.headers["vary"] == "HX-Request"

    swap = await desk.client.get(url, headers={"HX-Request": "true"})
    assert _fragment(swap.text) and "2026PAYFRAG" in swap.text
    assert 'id="payment-filters"' not in swap.text

    # The back button after pushed URLs, and boosted links, must get whole pages.
    for extra in ({"HX-History-Restore-Request": "true"}, {"HX-Boosted": "true"}):
        page = await desk.client.get(url, headers={"HX-Request": "true", **extra})
        assert not _fragment(page.text) and "2026PAYFRAG" in page.text, extra


async def test_filters_keep_their_values_in_the_form(desk: Desk) -> None:
    await _payments(desk, 2, currency="JPY", method="GCASH")
    page = await desk.client.get(
        "/payments?currency=JPY&method=GCASH&has_refunds=no&date_from=2026-01-01&sort=amount"
    )
    assert page.status_code == 200
    assert re.search(r"<option selected>JPY</option>", page.text)
    assert re.search(r'<option value="no" selected>No refunds</option>', page.text)
    assert 'value="2026-01-01"' in page.text
    assert re.search(r'<option value="amount" selected>Amount</option>', page.text)


async def test_bad_filter_values_are_ignored_not_errors(desk: Desk) -> None:
    await _payments(desk, 1)
    page = await desk.client.get(
        "/payments?date_from=yesterday&sort=drop+table&direction=sideways&cursor=%%%"
    )
    assert page.status_code == 200
    assert "1 payment" in _text(page.text)


async def test_search_and_filters_through_http(desk: Desk) -> None:
    await _payments(desk, 3, currency="USD")
    async with desk.session() as s:
        await add_payment(
            s, buyer_email="mei.chen@example.com", buyer_name="Mei Chen", currency="JPY"
        )
        await s.commit()
    for query, expected in (
        ("q=mei", 1),
        ("q=MEI.CHEN%40EXAMPLE.COM", 1),
        ("q=chen", 1),
        ("currency=USD", 3),
        ("currency=JPY&q=Mei", 1),
    ):
        page = await desk.client.get(f"/payments?{query}", headers={"HX-Request": "true"})
        assert page.text.count('href="/payments/') == expected, query
    empty = await desk.client.get("/payments?q=nobody", headers={"HX-Request": "true"})
    assert "No payment matches these filters" in empty.text


async def test_next_links_walk_the_whole_list_and_keep_filters(desk: Desk) -> None:
    made = await _payments(desk, 60, currency="USD")
    await _payments(desk, 5, currency="JPY")
    expected = [
        p.payment_id for p in sorted(made, key=lambda p: (p.created_at, p.id), reverse=True)
    ]
    seen: list[str] = []
    url: str | None = "/payments?currency=USD"
    pages = 0
    while url:
        page = await desk.client.get(url, headers={"HX-Request": "true"})
        assert page.status_code == 200
        seen += re.findall(r'class="mono">(2026PAY\d+)</a>', page.text)
        nxt = _next_href(page.text)
        if nxt:
            assert parse_qs(urlsplit(nxt).query)["currency"] == ["USD"]
            assert 'hx-push-url="true"' in page.text
        url = nxt
        pages += 1
    assert pages == 3 and seen == expected


async def test_totals_are_shown_capped_not_counted(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.services import listing

    monkeypatch.setattr(listing, "COUNT_CAP", 10)
    await _payments(desk, 12)
    page = await desk.client.get("/payments")
    assert "10+ payments" in _text(page.text)


async def test_refunds_list_filters_and_links(desk: Desk) -> None:
    async with desk.session() as s:
        payment = await add_payment(s, payment_id="2026PAYREFUNDS")
        mine = await add_refund(s, payment, agent_id=desk.agent.id, amount_minor=1200)
        external = await add_refund(
            s, payment, external=True, status=RefundStatus.PROCESSING, amount_minor=300
        )
        await s.commit()
    page = await desk.client.get("/refunds")
    assert page.status_code == 200
    text = _text(page.text)
    assert "$12.00" in text and "$3.00" in text and desk.agent.name in text
    assert f'href="/refunds/{mine.id}"' in page.text
    assert 'href="/payments/' in page.text

    only_external = await desk.client.get("/refunds?external=yes", headers={"HX-Request": "true"})
    assert _fragment(only_external.text)
    assert f"/refunds/{external.id}" in only_external.text
    assert f'/refunds/{mine.id}"' not in only_external.text
    by_agent = await desk.client.get(f"/refunds?agent={desk.agent.id}&status=succeeded")
    assert f'/refunds/{mine.id}"' in by_agent.text
    assert f'/refunds/{external.id}"' not in by_agent.text


async def test_refund_detail_shows_the_timeline(desk: Desk) -> None:
    async with desk.session() as s:
        payment = await add_payment(s)
        refund = await add_refund(s, payment, agent_id=desk.agent.id, status=RefundStatus.SUCCEEDED)
        await add_event(
            s,
            refund,
            source=EventSource.AGENT,
            actor_id=desk.agent.id,
            to_status="pending",
            summary="Refund of $1.00 requested",
            at=NOW,
        )
        await add_event(
            s,
            refund,
            source=EventSource.WEBHOOK,
            from_status="processing",
            to_status="succeeded",
            summary="notifyRefund SUCCESS",
            detail={"request": {"body": {"refundStatus": "SUCCESS"}}},
            request_id="req-77",
            at=NOW + timedelta(seconds=5),
        )
        await s.commit()
    page = await desk.client.get(f"/refunds/{refund.id}")
    assert page.status_code == 200
    text = _text(page.text)
    assert text.index("Refund of $1.00 requested") < text.index("notifyRefund SUCCESS")
    assert "Webhook" in text and "processing → succeeded" in text and desk.agent.name in text
    assert "<details>" in page.text and '"refundStatus": "SUCCESS"' in page.text
    missing = await desk.client.get("/refunds/999999")
    assert missing.status_code == 404


# ---------------------------------------------------------------- payment page and refund form


async def _import(desk: Desk, sim: SimHandle, **kw: Any) -> tuple[str, int]:
    """Create a payment at the simulator and bring it in with "Find a payment in Antom"."""
    created = sim.create_payment(**kw)
    answer = await desk.post_form("/payments/find", {"ref": created["paymentId"]})
    assert answer.status_code == 200, answer.text  # followed the 303 to the payment page
    found = re.search(r"/payments/(\d+)", str(answer.url))
    assert found, answer.url
    return created["paymentId"], int(found.group(1))


async def test_find_in_antom_imports_and_redirects(desk: Desk, simulator: SimHandle) -> None:
    payment_id, pk = await _import(desk, simulator, amount_minor=4500, buyer_email="x@y.z")
    page = await desk.client.get(f"/payments/{pk}")
    assert payment_id in page.text
    # A second find for the same payment goes straight to it (no new row).
    again = await desk.post_form("/payments/find", {"ref": payment_id})
    assert str(again.url).endswith(f"/payments/{pk}")
    async with desk.session() as s:
        rows = (await s.exec(select(Payment).where(Payment.payment_id == payment_id))).all()
    assert len(rows) == 1


async def test_find_in_antom_explains_an_unknown_payment(desk: Desk) -> None:
    answer = await desk.post_form("/payments/find", {"ref": "2026NOSUCHPAYMENT"})
    assert answer.status_code == 422
    assert 'id="find-error"' in answer.text
    assert 'value="2026NOSUCHPAYMENT"' in answer.text


async def test_payment_page_shows_amounts_rules_window_and_refunds(
    desk: Desk, simulator: SimHandle
) -> None:
    _, pk = await _import(
        desk,
        simulator,
        method="GCASH",
        currency="USD",
        amount_minor=20000,
        paid_at=NOW - timedelta(days=30),
    )
    async with desk.session() as s:
        payment = await s.get(Payment, pk)
        assert payment is not None
        await add_refund(s, payment, amount_minor=5000, status=RefundStatus.SUCCEEDED)
        payment.refunded_minor, payment.reserved_minor, payment.refund_count = 5000, 2500, 2
        await add_refund(s, payment, amount_minor=2500, status=RefundStatus.PROCESSING)
        await s.commit()
    page = await desk.client.get(f"/payments/{pk}")
    assert page.status_code == 200
    text = _text(page.text)
    for fact in (
        "Paid $200.00",
        "Refunded $50.00",
        "In flight $25.00",
        "Still refundable $125.00",
        "GCash refund rules",
        "180 days from payment",
        "(150 days left)",
    ):
        assert fact in text, fact
    assert 'data-status="processing"' in page.text and 'data-status="succeeded"' in page.text
    # The form starts with what is still refundable, in the payment's currency.
    assert re.search(r'name="amount" value="125.00"', page.text)
    assert re.search(r'name="currency" value="USD" readonly', page.text)


def _form_fields(html: str) -> dict[str, str]:
    fields = dict(re.findall(r'name="(form_token|refundable_token)" value="([^"]*)"', html))
    assert set(fields) == {"form_token", "refundable_token"}, "hidden tokens missing"
    return fields


async def _filled_form(
    desk: Desk, pk: int, *, amount: str, reason: str, currency: str = "USD"
) -> tuple[str, dict[str, str]]:
    """The payment page and its refund form filled in as an agent would post it."""
    page = await desk.client.get(f"/payments/{pk}")
    body = {"amount": amount, "currency": currency, "reason": reason, "note": ""}
    return page.text, body | _form_fields(page.text)


async def test_live_validation_messages_beside_each_field(desk: Desk, simulator: SimHandle) -> None:
    _, pk = await _import(desk, simulator, currency="JPY", amount_minor=1200)
    page = await desk.client.get(f"/payments/{pk}")
    tokens = _form_fields(page.text)
    url = f"/payments/{pk}/refunds/validate"

    async def check(**fields: str) -> str:
        body = {"amount": "1200", "currency": "JPY", "reason": "", "note": "", **tokens, **fields}
        answer = await desk.post_form(url, body, htmx=True)
        assert answer.status_code == 200
        return answer.text

    too_much = await check(amount="5000", reason="customer_request")
    amount_box = re.search(r'id="refund-amount-errors"[^>]*>(.*?)</div>', too_much, re.S)
    assert amount_box and "refundable" in amount_box.group(1)
    assert re.search(r'<button id="refund-submit"[^>]*disabled', too_much)

    decimals = await check(amount="12.5", reason="customer_request")
    assert "JPY has no minor unit" in decimals

    other = await check(reason="other", note="")
    note_box = re.search(r'id="refund-note-errors"[^>]*>(.*?)</div>', other, re.S)
    assert note_box and "note" in note_box.group(1).lower()

    # No reason yet: nothing to complain about while typing, but nothing to submit either.
    no_reason = await check()
    assert re.search(r'id="refund-reason-errors"[^>]*>\s*</div>', no_reason)
    assert re.search(r'<button id="refund-submit"[^>]*aria-disabled="true"', no_reason)
    submitted = await desk.post_form(
        f"/payments/{pk}/refunds",
        {"amount": "1200", "currency": "JPY", "reason": "", "note": ""} | tokens,
        htmx=True,
    )
    assert re.search(r'id="refund-reason-errors"[^>]*>\s*<p class="field-error">', submitted.text)

    wrong_currency = await check(currency="USD", reason="customer_request")
    assert re.search(r'id="refund-currency-errors"[^>]*>\s*<p class="field-error">', wrong_currency)

    good = await check(amount="1,000", reason="customer_request")
    assert re.search(r'<button id="refund-submit"[^>]*>Refund ¥1,000 to ALIPAY_CN</button>', good)
    assert not re.search(r'<button id="refund-submit"[^>]*disabled', good)
    assert 'class="field-error"' not in good
    # Every message area and the button come back as out-of-band swaps.
    # Five fields' messages, the payment's, the button and the approval notice.
    assert good.count('hx-swap-oob="true"') == 8


async def test_payment_level_problems_show_at_the_top(desk: Desk, simulator: SimHandle) -> None:
    _, pk = await _import(desk, simulator)
    async with desk.session() as s:
        payment = await s.get(Payment, pk)
        assert payment is not None
        payment.dispute_open = True
        await s.commit()
    page = await desk.client.get(f"/payments/{pk}")
    top = re.search(r'id="refund-payment-errors"[^>]*>(.*?)</div>\s*</div>', page.text, re.S)
    assert top and "chargeback" in top.group(1).lower()
    assert "This payment cannot be refunded" in page.text
    assert re.search(r'<button id="refund-submit"[^>]*disabled', page.text)


async def test_htmx_submit_swaps_the_result_and_updates_amounts(
    desk: Desk, simulator: SimHandle
) -> None:
    payment_id, pk = await _import(desk, simulator, currency="USD", amount_minor=10000)
    _, body = await _filled_form(desk, pk, amount="12.00", reason="customer_request")
    answer = await desk.post_form(f"/payments/{pk}/refunds", body, htmx=True)
    assert answer.status_code == 200, answer.text
    assert _fragment(answer.text)
    assert re.search(r'id="refund-result"', answer.text)
    assert 'data-status="succeeded"' in answer.text  # ALIPAY_CN answers at once
    assert "Refund of $12.00 succeeded" in _text(answer.text)
    amounts = re.search(
        r'id="payment-amounts" hx-swap-oob="true">(.*?)</section>', answer.text, re.S
    )
    assert amounts and "Still refundable $88.00" in _text(amounts.group(1))
    assert re.search(r'id="payment-refunds"[^>]*hx-swap-oob="true"', answer.text)
    # A fresh form (new token) for the next refund, pre-filled with the rest.
    assert _form_fields(answer.text)["form_token"] != body["form_token"]
    assert re.search(r'name="amount" value="88.00"', answer.text)
    refunds = simulator.admin_get(f"payments/{payment_id}")
    assert refunds  # the simulator saw the payment; the refund itself is checked below
    async with desk.session() as s:
        stored = (await s.exec(select(Refund).where(Refund.payment_pk == pk))).all()
    assert [(r.amount_minor, r.status) for r in stored] == [(1200, RefundStatus.SUCCEEDED)]

    # The same form sent twice (double click that got through): still one refund.
    again = await desk.post_form(f"/payments/{pk}/refunds", body, htmx=True)
    assert again.status_code in (200, 422)
    async with desk.session() as s:
        stored = (await s.exec(select(Refund).where(Refund.payment_pk == pk))).all()
    assert len(stored) == 1


async def test_refused_htmx_submit_answers_with_the_messages_and_422(
    desk: Desk, simulator: SimHandle
) -> None:
    _, pk = await _import(desk, simulator, currency="USD", amount_minor=10000)
    _, body = await _filled_form(desk, pk, amount="500.00", reason="other")
    answer = await desk.post_form(f"/payments/{pk}/refunds", body, htmx=True)
    assert answer.status_code == 422
    # Only the messages and the button's state come back, swapped by id: the form, what
    # the agent typed and the button she pressed stay where they are.
    assert answer.headers["hx-reswap"] == "none"
    assert _fragment(answer.text) and 'id="refund-form"' not in answer.text
    assert 'name="amount"' not in answer.text
    assert re.search(r'id="refund-amount-errors"[^>]*>\s*<p class="field-error">', answer.text)
    assert re.search(r'id="refund-note-errors"[^>]*>\s*<p class="field-error">', answer.text)
    assert re.search(r'<button id="refund-submit"[^>]*aria-disabled="true"', answer.text)
    async with desk.session() as s:
        assert (await s.exec(select(Refund))).all() == []


async def test_no_js_submit_redirects_with_a_flash(desk: Desk, simulator: SimHandle) -> None:
    _, pk = await _import(desk, simulator, currency="USD", amount_minor=10000)
    _, body = await _filled_form(desk, pk, amount="30", reason="duplicate_charge")
    answer = await desk.post_form(f"/payments/{pk}/refunds", body)
    assert answer.status_code == 200 and str(answer.url).endswith(f"/payments/{pk}")
    assert answer.history and answer.history[0].status_code == 303
    text = _text(answer.text)
    assert "Refund of $30.00 succeeded" in text and "Still refundable $70.00" in text

    refused = await desk.post_form(
        f"/payments/{pk}/refunds", {**body, "amount": "abc", **_form_fields(answer.text)}
    )
    assert refused.status_code == 422 and not _fragment(refused.text)
    assert (
        "&#39;abc&#39; is not a number" in refused.text or "'abc' is not a number" in refused.text
    )


async def test_refund_form_needs_the_csrf_token(desk: Desk, simulator: SimHandle) -> None:
    _, pk = await _import(desk, simulator)
    page, body = await _filled_form(desk, pk, amount="1", reason="customer_request")
    for url in (f"/payments/{pk}/refunds", f"/payments/{pk}/refunds/validate"):
        answer = await desk.post_form(url, body, csrf=False)
        assert answer.status_code == 403, url
    async with desk.session() as s:
        assert (await s.exec(select(Refund))).all() == []
    # The token on the page is what htmx sends as a header.
    token = re.search(r'"x-csrftoken": "([^"]+)"', page)
    assert token
    ok = await desk.client.post(
        f"/payments/{pk}/refunds/validate",
        data=body,
        headers={"HX-Request": "true", "x-csrftoken": token.group(1)},
    )
    assert ok.status_code == 200


async def test_pages_need_a_signed_in_user(desk: Desk) -> None:
    await desk.client.post("/logout")
    for url in ("/payments", "/refunds", "/payments/1", "/refunds/1"):
        answer = await desk.client.get(url, follow_redirects=False)
        assert answer.status_code in (302, 303) and "/login" in answer.headers["location"], url


async def test_a_form_left_open_while_the_payment_changed_is_rearmed(
    desk: Desk, simulator: SimHandle
) -> None:
    _, pk = await _import(desk, simulator, currency="USD", amount_minor=10000)
    page = await desk.client.get(f"/payments/{pk}")
    tokens = _form_fields(page.text)
    # Meanwhile another agent's $40 refund went through.
    async with desk.session() as s:
        payment = await s.get(Payment, pk)
        assert payment is not None
        await add_refund(s, payment, amount_minor=4000)
        payment.refunded_minor, payment.refund_count = 4000, 1
        await s.commit()
    body = {"amount": "50", "currency": "USD", "reason": "customer_request", "note": "", **tokens}
    url = f"/payments/{pk}/refunds/validate"
    stale = await desk.post_form(url, body | {"amount_default": "100.00"}, htmx=True)
    # Not refused: re-armed with the payment as it is now, and the agent is told.
    notice = re.search(r'id="refund-form-notice"[^>]*>(.*?)</div>\s*</div>', stale.text, re.S)
    assert notice
    assert "changed while you were editing: $60.00 is now refundable" in _text(notice.group(1))
    assert "Your amount was kept" in _text(notice.group(1))
    fresh = re.search(
        r'id="refund-refundable-token" name="refundable_token" value="([^"]+)" hx-swap-oob',
        stale.text,
    )
    assert fresh and fresh.group(1) != tokens["refundable_token"]
    assert "Still refundable $60.00" in _text(stale.text)
    assert "Up to $60.00" in _text(stale.text)
    # The amount she typed ($50) fits what is refundable now: the button is ready.
    assert not re.search(r'<button id="refund-submit"[^>]*disabled', stale.text)
    assert "Refund $50.00 to ALIPAY_CN" in stale.text
    # A stale form is refused only when submitted as it was.
    refused = await desk.post_form(f"/payments/{pk}/refunds", body, htmx=True)
    assert refused.status_code == 422
    top = re.search(r'id="refund-payment-errors"[^>]*>(.*?)</div>\s*</div>', refused.text, re.S)
    assert top and "changed while you were editing" in top.group(1)


async def test_an_untouched_amount_follows_the_payment(desk: Desk, simulator: SimHandle) -> None:
    _, pk = await _import(desk, simulator, currency="USD", amount_minor=10000)
    page = await desk.client.get(f"/payments/{pk}")
    tokens = _form_fields(page.text)
    assert 'id="refund-amount-default" name="amount_default" value="100.00"' in page.text
    async with desk.session() as s:
        payment = await s.get(Payment, pk)
        assert payment is not None
        await add_refund(s, payment, amount_minor=2500)
        payment.refunded_minor, payment.refund_count = 2500, 1
        await s.commit()
    body = {"amount": "100.00", "amount_default": "100.00", "currency": "USD", "reason": ""}
    answer = await desk.post_form(
        f"/payments/{pk}/refunds/validate", body | {"note": ""} | tokens, htmx=True
    )
    # The offered amount moves to what is refundable now (static/app.js puts it in the
    # field unless the agent typed meanwhile), and it is judged as such.
    offered = 'id="refund-amount-default" name="amount_default" value="75.00" hx-swap-oob'
    assert offered in answer.text
    assert "The amount was updated to match" in _text(answer.text)
    assert not re.search(r'id="refund-amount-errors"[^>]*>\s*<p', answer.text)


async def test_refund_again_prefills_a_new_form_from_a_failed_refund(
    desk: Desk, simulator: SimHandle
) -> None:
    _, pk = await _import(desk, simulator, currency="USD", amount_minor=10000)
    async with desk.session() as s:
        payment = await s.get(Payment, pk)
        assert payment is not None
        failed = await add_refund(
            s,
            payment,
            amount_minor=3000,
            status=RefundStatus.FAILED,
            reason="item_returned",
            note="box came back",
            result_code="MERCHANT_BALANCE_NOT_ENOUGH",
        )
        await s.commit()
    page = await desk.client.get(f"/payments/{pk}")
    text = _text(page.text)
    assert "top it up" in text and "Ask finance to top up the Antom balance" in text
    again_link = f"/payments/{pk}?again={failed.id}#refund-form"
    assert again_link in unescape(page.text)
    again = await desk.client.get(again_link.split("#")[0])
    assert re.search(r'name="amount" value="30.00"', again.text)
    assert re.search(r'<option value="item_returned" selected>', again.text)
    assert 'value="box came back"' in again.text
    assert f"Refunding again after the failed refund {failed.refund_request_id}" in again.text
    # A new form: its own token; the refund it makes gets a new refundRequestId.
    assert _form_fields(again.text)["form_token"] != _form_fields(page.text)["form_token"]
    # Never for a refund that did not fail.
    async with desk.session() as s:
        payment = await s.get(Payment, pk)
        assert payment is not None
        ok = await add_refund(s, payment, amount_minor=1000, status=RefundStatus.SUCCEEDED)
        await s.commit()
    plain = await desk.client.get(f"/payments/{pk}?again={ok.id}")
    assert "Refunding again" not in plain.text and 'name="amount" value="100.00"' in plain.text


async def test_the_reason_filter_lists_only_refunds_for_that_reason(desk: Desk) -> None:
    """Seen (issue 10): ``/refunds?reason=`` was ignored and listed every refund."""
    async with desk.session() as s:
        payment = await add_payment(s, amount_minor=10_000)
        await add_refund(s, payment, reason="goodwill", amount_minor=111)
        await add_refund(s, payment, reason="duplicate_charge", amount_minor=222)
        await s.commit()
    page = _text((await desk.client.get("/refunds?reason=goodwill")).text)
    assert "$1.11" in page
    assert "$2.22" not in page
