"""Request ids: the id a response carries (and its log line shows) is the one on the
timeline entries that request caused: Antom's notification, an agent's refund, "check now"."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.status.conftest import (
    desk_payment,
    events_of,
    make_payment,
    make_refund,
    refund_result,
    signed,
)
from tests.support.simulator import SimHandle
from web.db import session_scope
from web.models import EventSource, Refund, RefundStatus
from web.settings import Settings

FRESH_ID = re.compile(r"[0-9a-f]{32}")


async def test_a_webhook_event_carries_the_request_id_of_its_delivery(
    client: httpx.AsyncClient, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="web.services.webhooks")
    payment = await make_payment(engine)
    refunds = [await make_refund(engine, payment, amount_minor=1_000) for _ in range(3)]
    # No id from a router; a router's id; something that must not reach logs or the database.
    given = [None, "router-7f3a.2026:edge-1", 'x" outcome=forged ' + "a" * 70]

    seen: list[str] = []
    for refund, router_id in zip(refunds, given, strict=True):
        body, headers = signed(refund_result(refund))
        if router_id is not None:
            headers["x-request-id"] = router_id
        response = await client.post("/webhooks/antom", content=body, headers=headers)
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        [event] = [e for e in await events_of(engine, refund) if e.to_status]
        assert event.source == EventSource.WEBHOOK
        assert event.request_id == request_id
        assert event.detail and event.detail["request_id"] == request_id
        logged = [r.getMessage() for r in caplog.records if "webhook accepted" in r.getMessage()]
        assert logged[-1].endswith(f"request_id={request_id}")
        seen.append(request_id)

    assert FRESH_ID.fullmatch(seen[0])
    assert seen[1] == "router-7f3a.2026:edge-1"
    assert FRESH_ID.fullmatch(seen[2])  # replaced, not cleaned up: it was not a plain token
    assert len(set(seen)) == 3


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/payments", "/no-such-page"):
        response = await client.get(path, headers={"x-request-id": "probe-1"})
        assert response.headers["x-request-id"] == "probe-1", path
    assert FRESH_ID.fullmatch((await client.get("/login")).headers["x-request-id"])


class TestAgentRequests:
    @pytest.fixture
    def simulator_config(self) -> dict[str, Any]:
        return {"time_scale": 1.0}  # GCASH refunds stay PROCESSING for the whole test

    @pytest.fixture
    def settings(
        self, make_settings: Callable[..., Settings], db_url: str, simulator: SimHandle
    ) -> Settings:
        return make_settings(database_url=db_url, simulator=simulator, poller_enabled=False)

    async def test_submit_and_check_now_put_their_request_ids_on_the_timeline(
        self,
        signed_in: Any,
        engine: AsyncEngine,
        simulator: SimHandle,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="web.services.refunds")
        payment = await desk_payment(engine, simulator, method="GCASH")
        agent, user = await signed_in(role="agent", limits={"USD": 100_000})
        page = (await agent.get(f"/payments/{payment.id}")).text
        tokens = dict(re.findall(r'name="(form_token|refundable_token)" value="([^"]+)"', page))

        submitted = await agent.post(
            f"/payments/{payment.id}/refunds",
            data={"amount": "30.00", "currency": "USD", "reason": "customer_request", **tokens},
            headers={"HX-Request": "true"},
        )

        assert submitted.status_code == 200
        submit_id = submitted.headers["x-request-id"]
        [at_antom] = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
        refund = await _refund_by_request_id(engine, at_antom["refundRequestId"])
        assert refund.status == RefundStatus.PROCESSING
        events = await events_of(engine, refund)
        assert [e.source for e in events] == [EventSource.AGENT, EventSource.ANTOM_RESPONSE]
        assert {e.request_id for e in events} == {submit_id}
        logged = [r.getMessage() for r in caplog.records if "submitted by" in r.getMessage()]
        assert logged == [
            f"refund {refund.refund_request_id} submitted by user={user.id} "
            f"status=processing request_id={submit_id}"
        ]

        # "Check now" on a refund Antom never received: it is re-sent, on the timeline.
        unsent = await make_refund(engine, payment, amount_minor=2_500)
        checked = await agent.post(f"/refunds/{unsent.id}/check", headers={"HX-Request": "true"})

        assert checked.status_code == 200
        assert "sent again with the same id" in checked.text
        check_id = checked.headers["x-request-id"]
        assert check_id != submit_id
        # The inquiry's answer ("no record"), then the re-sent call's: both this request's.
        asked, resent = await events_of(engine, unsent)
        assert "no record" in asked.summary
        assert {asked.source, resent.source} == {EventSource.POLLER}
        assert {asked.request_id, resent.request_id} == {check_id}


async def _refund_by_request_id(engine: AsyncEngine, refund_request_id: str) -> Refund:
    async with session_scope(engine) as session:
        found = (
            await session.exec(select(Refund).where(Refund.refund_request_id == refund_request_id))
        ).one()
        return found
