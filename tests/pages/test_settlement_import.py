"""Importing an Antom settlement report from the page: upload over real HTTP, progress, the
report, a reversed refund on its payment page, and a lead making it refundable again."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.fixtures_app import csrf_token_of
from tests.support.waiting import wait_until
from web.antom.messages import Answer
from web.db import session_scope
from web.models import EventSource, Payment, Refund, RefundStatus, User
from web.rules.outcomes import Kind, Observation
from web.services import ledger
from web.settings import Settings

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
HEAD = (
    "settlementBatchId,transactionType,transactionId,transactionRequestId,"
    "originalTransactionId,transactionAmountValue,transactionCurrency,transactionTime"
)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


async def succeeded_refund(engine: AsyncEngine) -> tuple[Payment, Refund]:
    """A refund of $25.00 Antom confirmed, recorded the way the desk records one."""
    async with session_scope(engine) as session:
        payment = await ledger.create_payment(
            session,
            Payment(
                payment_id="pay_reversed_1",
                payment_request_id="preq_reversed_1",
                method="ALIPAY_CN",
                currency="USD",
                amount_minor=10000,
                captured_minor=10000,
                status="SUCCESS",
            ),
        )
        refund = await ledger.open_refund(
            session,
            payment,
            amount_minor=2500,
            expected=None,
            max_refunds=None,
            refund=Refund(
                refund_request_id="rd_to_reverse",
                payment_pk=payment.id or 0,
                currency="USD",
                amount_minor=2500,
                status=RefundStatus.PENDING,
                reason="other",
                reason_text="Other",
            ),
            cause=ledger.Cause(EventSource.SYSTEM),
            summary="test refund",
        )
        assert refund is not None and refund.id is not None
        seen = Observation(Kind.CALL, Answer.SUCCESS, code="SUCCESS", refund_id="2026R-1")
        await ledger.observe(session, refund.id, seen, cause=ledger.Cause(EventSource.SYSTEM))
    return payment, refund


async def upload(client: httpx.AsyncClient, text: str, *, htmx: bool = True) -> httpx.Response:
    return await client.post(
        "/settlement/import",
        files={"file": ("SIM_settle_20261125_B1.csv", text.encode(), "text/csv")},
        headers={"HX-Request": "true"} if htmx else {},
    )


async def finished(client: httpx.AsyncClient, answer: httpx.Response) -> str:
    match = re.search(r'id="settlement-import-(\d+)"', answer.text)
    assert match, answer.text
    url = f"/settlement/imports/{match[1]}"

    async def done() -> str | None:
        fragment = await client.get(url, headers={"HX-Request": "true"})
        assert fragment.status_code == 200
        if 'data-status="running"' in fragment.text:
            return None
        return " ".join(fragment.text.split())

    return await wait_until(done, what="the settlement import to finish")


async def test_a_lead_imports_a_reversal_and_makes_the_amount_refundable_again(
    signed_in: SignedIn, engine: AsyncEngine
) -> None:
    payment, refund = await succeeded_refund(engine)
    lead, _ = await signed_in(role="lead")
    text = "\r\n".join(
        [
            HEAD,
            "B1,REFUND_REVERSAL,2026R-1R,rd_to_reverse,pay_reversed_1,2500,USD,2026-11-25T20:36:00Z",
            "B1,PAYMENT,pay_x,preq_x,,12.00,USD,",
            "<END>",
        ]
    )
    report = await finished(lead, await upload(lead, text))
    assert 'data-status="done"' in report
    assert (
        "1 new rows, 0 already imported, 1 rejected; 1 refund reversed, 1 worklist item raised"
        in report
    )
    assert "“12.00” is not a whole number of minor units" in report

    page = " ".join((await lead.get(f"/payments/{payment.id}")).text.split())
    assert 'data-status="reversed"' in page
    assert "$25.00 came back to the merchant" in page
    assert "Not refundable again until a team lead decides." in page
    action = f"/refunds/{refund.id}/refundable-again"
    assert f'action="{action}"' in page

    token = csrf_token_of(lead)
    refused = await lead.post(action, data={"note": "no"}, headers={"x-csrftoken": token})
    assert refused.status_code == 303
    assert "Say why" in (await lead.get(refused.headers["location"])).text
    done = await lead.post(
        action,
        data={"note": "Bank account closed; paid by transfer"},
        headers={"x-csrftoken": token},
    )
    assert done.status_code == 303
    page = await lead.get(done.headers["location"])
    assert "Made refundable again" in page.text and "Bank account closed" in page.text
    async with session_scope(engine) as session:
        after = await session.get(Payment, payment.id)
        assert after is not None and (after.refunded_minor, after.refund_count) == (0, 0)


async def test_agents_cannot_upload_or_release(signed_in: SignedIn) -> None:
    agent, _ = await signed_in(role="agent")
    assert (await agent.get("/settlement/import")).status_code == 403
    page = await agent.get("/payments")
    assert "/settlement/import" not in page.text  # no nav entry either


async def test_without_javascript_the_upload_leads_to_the_import_page(
    signed_in: SignedIn,
) -> None:
    lead, _ = await signed_in(role="lead")
    answer = await upload(lead, HEAD + "\n<END>\n", htmx=False)
    assert answer.status_code == 303
    assert re.fullmatch(r"/settlement/imports/\d+", answer.headers["location"])
    page = await lead.get(answer.headers["location"])
    assert "Settlement import of SIM_settle_20261125_B1.csv" in page.text
