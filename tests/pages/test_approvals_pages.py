"""Four eyes through HTTP: who may see, edit and decide a request (object-level rules),
as the routes enforce them, not only the services."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from html import unescape

import httpx
from sqlmodel import select

from tests.pages.conftest import Desk
from tests.support.fixtures_app import csrf_token_of
from tests.support.simulator import SimHandle
from web.models import Refund, RefundStatus, User

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


async def post(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
    """A plain browser form POST (CSRF token in the form), following the redirect."""
    body = data | {"_csrf_token": csrf_token_of(client)}
    return await client.post(url, data=body, follow_redirects=True)


async def request_over_limit(
    client: httpx.AsyncClient, sim: SimHandle, amount: str = "60.00"
) -> int:
    created = sim.create_payment(currency="USD", amount_minor=10000)
    found = await post(client, "/payments/find", {"ref": created["paymentId"]})
    pk = int(re.search(r"/payments/(\d+)", str(found.url)).group(1))  # type: ignore[union-attr]
    page = (await client.get(f"/payments/{pk}")).text
    tokens = dict(re.findall(r'name="(form_token|refundable_token)" value="([^"]*)"', page))
    answer = await post(
        client,
        f"/payments/{pk}/refunds",
        {"amount": amount, "currency": "USD", "reason": "customer_request", **tokens},
    )
    assert answer.status_code == 200, answer.text
    assert "waiting for a team lead" in text(answer.text)
    return pk


async def the_refund(desk: Desk, payment_pk: int) -> Refund:
    async with desk.session() as s:
        return (await s.exec(select(Refund).where(Refund.payment_pk == payment_pk))).one()


async def test_requests_are_their_requester_s_and_the_approvers_business(
    desk: Desk, signed_in: SignedIn, simulator: SimHandle
) -> None:
    ana, _ = await signed_in(role="agent", limits={"USD": 5000}, name="Ana")
    bo, _ = await signed_in(role="agent", limits={"USD": 5000}, name="Bo")
    lead, _ = await signed_in(role="lead", name="Lee")
    payment_pk = await request_over_limit(ana, simulator)
    refund = await the_refund(desk, payment_pk)
    assert refund.status == RefundStatus.AWAITING_APPROVAL
    why = "$60.00 is over your $50.00 limit per refund"

    # The requester sees why, and her edit form; no decision buttons.
    own = (await ana.get(f"/refunds/{refund.id}")).text
    assert why in text(own) and "Change the request" in own and "approve-button" not in own
    # Another agent sees that it waits, not why, and can neither edit nor list it.
    other = (await bo.get(f"/refunds/{refund.id}")).text
    assert "Waiting for approval" in text(other)
    assert why not in text(other) and "Change the request" not in other
    assert why not in text((await bo.get("/approvals")).text)
    edit = {"revision": str(refund.revision), "amount": "1.00", "reason": "customer_request"}
    refused = await post(bo, f"/approvals/{refund.id}/edit", edit)
    assert "Only the person who asked can edit a request" in text(refused.text)
    # Agents hold no APPROVE: the route refuses before any lookup.
    approve = {"revision": str(refund.revision), "comment": ""}
    assert (await post(ana, f"/approvals/{refund.id}/approve", approve)).status_code == 403
    unchanged = await the_refund(desk, payment_pk)
    assert (unchanged.status, unchanged.amount_minor) == (RefundStatus.AWAITING_APPROVAL, 6000)

    # The lead sees it in the queue and in the navigation's count, and approves it.
    queue = text((await lead.get("/approvals")).text)
    assert why in queue and "Review" in queue
    count = (await lead.get("/approvals/count", headers={"HX-Request": "true"})).text
    assert 'data-watch="approvals=1"' in count
    done = await post(lead, f"/approvals/{refund.id}/approve", approve | {"comment": "ok"})
    assert "Approved." in text(done.text)
    sent = await the_refund(desk, payment_pk)
    assert sent.status == RefundStatus.SUCCEEDED and sent.decision_note == "ok"


async def test_an_approver_cannot_approve_their_own_request_over_http(
    desk: Desk, signed_in: SignedIn, simulator: SimHandle
) -> None:
    lead, _ = await signed_in(role="lead", limits={"USD": 1000}, name="Lee")
    payment_pk = await request_over_limit(lead, simulator, amount="20.00")
    refund = await the_refund(desk, payment_pk)
    page = (await lead.get(f"/refunds/{refund.id}")).text
    assert "approve-button" not in page  # not offered
    answer = await post(
        lead, f"/approvals/{refund.id}/approve", {"revision": str(refund.revision), "comment": ""}
    )
    assert "You cannot approve or reject your own request" in text(answer.text)
    assert (await the_refund(desk, payment_pk)).status == RefundStatus.AWAITING_APPROVAL


async def test_an_edit_that_breaks_a_rule_keeps_the_input_and_says_why_by_the_field(
    desk: Desk, signed_in: SignedIn, simulator: SimHandle
) -> None:
    ana, _ = await signed_in(role="agent", limits={"USD": 5000}, name="Ana")
    payment_pk = await request_over_limit(ana, simulator)
    refund = await the_refund(desk, payment_pk)
    edit = {"revision": str(refund.revision), "amount": "100.01", "reason": "customer_request"}
    body = edit | {"_csrf_token": csrf_token_of(ana)}
    answer = await ana.post(f"/approvals/{refund.id}/edit", data=body)
    assert answer.status_code == 422
    errors = re.search(r'id="edit-amount-errors"[^>]*>(.*?)</div>', answer.text, re.S)
    assert errors and "Only $100.00 is still refundable" in text(errors.group(1))
    assert 'value="100.01"' in answer.text  # what she typed is kept
    assert (await the_refund(desk, payment_pk)).amount_minor == 6000
