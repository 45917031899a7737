"""Notifications signed by the real simulator and by Antom's official SDK are accepted."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.oracle.oracle import run_oracle, sdk_private_key
from tests.status.conftest import (
    CLIENT_ID,
    desk_payment,
    make_payment,
    make_refund,
    refund_result,
    reload,
)
from tests.support import keys
from tests.support.simulator import SimHandle
from tests.support.waiting import wait_until
from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.antom.messages import RefundRequest
from web.antom.money import Money
from web.models import Payment, Refund, RefundStatus
from web.settings import Settings


class TestFromTheSimulator:
    @pytest.fixture
    def simulator_config(self, server_base_url: str) -> dict[str, Any]:
        # The Dashboard notification address (disputes) is this desk's webhook.
        return {"notify_url": f"{server_base_url}/webhooks/antom"}

    @pytest.fixture
    def settings(
        self,
        make_settings: Callable[..., Settings],
        db_url: str,
        simulator: SimHandle,
    ) -> Settings:
        return make_settings(database_url=db_url, simulator=simulator, poller_enabled=False)

    async def test_refund_notification_from_the_simulator_settles_the_refund(
        self, settings: Settings, live_server: str, engine: AsyncEngine, simulator: SimHandle
    ) -> None:
        payment = await desk_payment(engine, simulator, method="GCASH")
        refund = await make_refund(engine, payment, amount_minor=1_500)
        antom = AntomClient(
            gateway_url=simulator.base_url,
            client_id=simulator.client_id,
            merchant_private_key=load_private_key(simulator.merchant_private_key_pem),
            antom_public_keys=[load_public_key(simulator.antom_public_key_pem)],
        )
        answer = await antom.refund(
            RefundRequest(
                refund.refund_request_id,
                payment.payment_id,
                Money(1_500, "USD"),
                notify_url=settings.refund_notify_url,
            )
        )
        await antom.aclose()
        assert answer.result_code == "REFUND_IN_PROCESS"

        async def settled() -> bool:
            row = await reload(engine, Refund, refund.id)
            return bool(row.status == RefundStatus.SUCCEEDED)

        await wait_until(settled)

        # The simulator records the delivery once it has read the desk's answer, which
        # can be a moment after the desk committed the refund's new status.
        async def delivered() -> dict[str, Any] | None:
            sent = [n for n in simulator.notifications() if n["notifyType"] == "REFUND_RESULT"]
            assert len(sent) == 1, sent
            return sent[0] if sent[0]["status"] != "pending" else None

        sent = await wait_until(delivered)
        assert sent["status"] == "acknowledged"
        last = sent["deliveries"][-1]
        assert (last["httpStatus"], last["acknowledged"]) == (200, True)
        paid = await reload(engine, Payment, payment.id)
        assert (paid.refunded_minor, paid.reserved_minor) == (1_500, 0)

    async def test_dispute_notifications_block_and_clear_the_payment(
        self, live_server: str, engine: AsyncEngine, simulator: SimHandle
    ) -> None:
        payment = await desk_payment(engine, simulator)

        async def dispute_open(expected: bool) -> Callable[[], Any]:
            async def probe() -> bool:
                return bool((await reload(engine, Payment, payment.id)).dispute_open is expected)

            return probe

        simulator.admin_post(f"payments/{payment.payment_id}/chargeback")
        await wait_until(await dispute_open(True))
        simulator.admin_post(
            f"payments/{payment.payment_id}/chargeback/close", {"result": "ACCEPT_BY_MERCHANT"}
        )
        await wait_until(await dispute_open(False))

    async def test_check_now_asks_antom_at_once(
        self,
        agent_client: httpx.AsyncClient,
        engine: AsyncEngine,
        simulator: SimHandle,
    ) -> None:
        payment = await desk_payment(engine, simulator, method="GCASH")
        refund = await make_refund(engine, payment, amount_minor=900)
        # Antom never saw it: "check now" re-sends it with the same id, and it settles.
        response = await agent_client.post(
            f"/refunds/{refund.id}/check", headers={"HX-Request": "true"}
        )

        assert response.status_code == 200
        assert "sent again with the same id" in response.text
        # The page re-reads the refund's parts from the database (static/app.js).
        assert response.headers["HX-Trigger"] == "desk:stale"
        stored = await reload(engine, Refund, refund.id)
        assert stored.status in (RefundStatus.SUCCEEDED, RefundStatus.PROCESSING)
        at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
        assert [r["refundRequestId"] for r in at_antom] == [refund.refund_request_id]

        again = await agent_client.post(f"/refunds/{refund.id}/check")
        assert again.status_code == 200


@pytest.mark.oracle
async def test_notifications_signed_by_the_official_sdk(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The SDK signs (ISO request-time, pretty-printed body as its client sends); we verify."""
    payment = await make_payment(engine)
    refunds = [await make_refund(engine, payment, amount_minor=1_000) for _ in range(2)]
    bodies = [
        json.dumps(refund_result(refunds[0]), indent=3),
        json.dumps(refund_result(refunds[1]), separators=(",", ":"), ensure_ascii=False),
    ]
    when = datetime.now(UTC).replace(microsecond=0).isoformat()
    key = sdk_private_key(load_private_key(keys.ANTOM_PRIVATE_PEM))
    checks = [
        {
            "op": "sign",
            "path": path,
            "client_id": CLIENT_ID,
            "time": when,
            "body": body,
            "private_key": key,
        }
        for body in bodies
        for path in ("/webhooks/antom", "/webhooks/antom2")
    ]
    values = [r["value"] for r in run_oracle(checks)]

    answers = []
    for check, value in zip(checks, values, strict=True):
        answers.append(
            await client.post(
                "/webhooks/antom",
                content=check["body"].encode(),
                headers={
                    "client-id": CLIENT_ID,
                    "request-time": when,
                    "signature": f"algorithm=RSA256,keyVersion=1,signature={value}",
                    "content-type": "application/json",
                },
            )
        )

    # Signed for our path: accepted. Signed for another path: refused.
    assert [a.status_code for a in answers] == [200, 401, 200, 401]
    for refund in refunds:
        assert (await reload(engine, Refund, refund.id)).status == RefundStatus.SUCCEEDED
