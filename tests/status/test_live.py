"""Live pages over SSE: a change ingested anywhere reaches open streams as a hint within a
second, and the fragments a page fetches on a hint say what the database says."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.status.conftest import make_payment, make_refund, refund_result, signed
from tests.support.fixtures_app import ServerThread, login, only_postgres
from tests.support.waiting import DEADLINE_S
from web.app import create_app
from web.db import session_scope
from web.live import payment_version
from web.models import Payment, User
from web.settings import Settings


class EventStream:
    """Reads ``event:``/``data:`` blocks from an open SSE response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, within: float = DEADLINE_S) -> tuple[str | None, str]:
        event: str | None = None
        data: list[str] = []
        async with asyncio.timeout(within):
            async for line in self.lines:
                if not line:
                    if event is not None or data:
                        return event, "\n".join(data)
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
        raise EOFError("stream closed")

    async def until(self, name: str, within: float = DEADLINE_S) -> str:
        deadline = time.monotonic() + within
        while True:
            event, data = await self.next(max(0.01, deadline - time.monotonic()))
            if event == name:
                return data


@contextlib.asynccontextmanager
async def sse(client: httpx.AsyncClient, query: str) -> AsyncIterator[EventStream]:
    async with client.stream("GET", f"/events?{query}", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


async def test_stream_starts_with_current_state_then_follows_changes(
    client: httpx.AsyncClient, engine: AsyncEngine, agent: User, new_client: Any
) -> None:
    payment = await make_payment(engine, amount_minor=10_000)
    refund = await make_refund(engine, payment, amount_minor=2_500)
    await login(client, agent)

    # Watched without versions: the stream says where each one stands at once.
    async with sse(client, f"refund={refund.id}&payment={payment.id}") as stream:
        assert await stream.until("ready") == "ready"
        assert await stream.until(f"refund-{refund.id}") == "processing"
        await stream.until(f"payment-{payment.id}")

        webhook_sender = await new_client()
        response = await webhook_sender.post(
            "/webhooks/antom", content=(s := signed(refund_result(refund)))[0], headers=s[1]
        )
        assert response.status_code == 200
        # Pushed, not polled for: the badge's news comes before anything else is asked.
        assert await stream.until(f"refund-{refund.id}") == "succeeded"
        await stream.until(f"payment-{payment.id}")
    # A hint carries no content: the page fetches its parts, rendered from the database.
    live = await client.post(f"/payments/{payment.id}/live", headers={"HX-Request": "true"})
    assert 'data-testid="refunded">$25.00<' in live.text
    assert 'data-testid="refundable">$75.00<' in live.text
    assert 'id="payment-refunds"' in live.text and 'data-status="succeeded"' in live.text


async def test_a_page_rendered_at_the_current_versions_gets_no_hint_until_a_change(
    client: httpx.AsyncClient, engine: AsyncEngine, agent: User, new_client: Any
) -> None:
    payment = await make_payment(engine, amount_minor=10_000)
    refund = await make_refund(engine, payment, amount_minor=2_500)
    await login(client, agent)
    page = await client.get(f"/payments/{payment.id}")
    watch = re.search(r'id="payment-refunds" data-watch="([^"]+)"', page.text)
    assert watch, "the payment page says what it shows"
    query = html.unescape(watch.group(1))
    assert f"refund={refund.id}.processing" in query

    async with sse(client, query) as stream:
        assert await stream.until("ready") == "ready"
        sender = await new_client()
        body, headers = signed(refund_result(refund))
        assert (await sender.post("/webhooks/antom", content=body, headers=headers)).is_success
        # The first thing after "ready" is the change, not a catch-up of what was seen.
        event, data = await stream.next()
        assert (event, data) in (
            (f"refund-{refund.id}", "succeeded"),
            (f"payment-{payment.id}", data),
        )


async def test_stream_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/events")
    assert response.status_code in (302, 303, 401)


@only_postgres  # instances share changes through PostgreSQL LISTEN/NOTIFY
async def test_change_ingested_by_another_instance_reaches_this_one(
    engine: AsyncEngine,
    agent: User,
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
    settings: Settings,
) -> None:
    """Two app instances on one PostgreSQL database: A streams, B ingests the webhook."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    other_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    instance_b = ServerThread(create_app(settings.replace(public_base_url=other_url)), sock)
    instance_b.start()
    try:
        payment = await make_payment(engine)
        refund = await make_refund(engine, payment)
        viewer = await new_client()  # instance A (the live_server fixture)
        await login(viewer, agent)
        async with (
            sse(viewer, f"refund={refund.id}") as stream,
            httpx.AsyncClient(base_url=other_url) as to_b,
        ):
            assert await stream.until(f"refund-{refund.id}") == "processing"
            body, headers = signed(refund_result(refund))
            assert (
                await to_b.post("/webhooks/antom", content=body, headers=headers)
            ).status_code == 200
            assert await stream.until(f"refund-{refund.id}", within=1.0) == "succeeded"
    finally:
        instance_b.stop()
        sock.close()


async def test_health_and_metrics_report_status_work(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)
    body, headers = signed(refund_result(refund))
    await client.post("/webhooks/antom", content=body, headers=headers)
    await client.post("/webhooks/antom", content=body, headers=headers | {"client-id": "x"})

    health = (await client.get("/healthz")).json()
    metrics = (await client.get("/metrics")).text

    assert health["status"] == "ok"
    assert health["poller"] == "disabled"  # REFUND_DESK_POLLER=off in these tests
    assert health["live"] == ("memory" if settings.is_sqlite else "ok")
    assert 'refund_desk_webhooks_accepted_total{outcome="applied"}' in metrics
    assert 'refund_desk_webhooks_refused_total{reason="wrong_client_id"}' in metrics
    assert "refund_desk_poller_rate_limit_hits_total" in metrics


async def test_a_payment_stream_hints_at_its_refunds_new_ones_included(
    client: httpx.AsyncClient, engine: AsyncEngine, agent: User, new_client: Any
) -> None:
    payment = await make_payment(engine, amount_minor=10_000)
    await make_refund(engine, payment, amount_minor=1_000)
    await login(client, agent)
    version = payment_version(await reload_payment(engine, payment.id or 0))

    async with sse(client, f"payment={payment.id}.{version}") as stream:
        assert await stream.until("ready") == "ready"
        sender = await new_client()
        body, headers = signed(
            refund_result(
                None,
                paymentId=payment.payment_id,
                refundRequestId="made-in-dashboard",
                refundId="antom-dash",
                refundAmount={"currency": "USD", "value": "500"},
            )
        )
        assert (await sender.post("/webhooks/antom", content=body, headers=headers)).is_success
        assert await stream.until(f"payment-{payment.id}") != version
    answer = await client.post(f"/payments/{payment.id}/live", headers={"HX-Request": "true"})
    live = answer.text
    # The external refund is a new row, with its badge, beside the existing one.
    assert live.count('id="refund-row-') == 2 and "External" in live
    assert 'data-testid="refundable">$85.00<' in live


async def test_a_list_stream_hints_at_new_rows_and_changed_shown_ones(
    client: httpx.AsyncClient, engine: AsyncEngine, agent: User, new_client: Any
) -> None:
    payment = await make_payment(engine, amount_minor=10_000)
    shown = await make_refund(engine, payment, amount_minor=1_000)
    other = await make_refund(engine, payment, amount_minor=1_000)  # not on the page
    await login(client, agent)
    sender = await new_client()
    query = f"refunds={other.id}&refund={shown.id}.processing"
    async with sse(client, query) as stream:
        assert await stream.until("ready") == "ready"
        body, headers = signed(refund_result(other))
        assert (await sender.post("/webhooks/antom", content=body, headers=headers)).is_success
        body, headers = signed(refund_result(shown))
        assert (await sender.post("/webhooks/antom", content=body, headers=headers)).is_success
        # The row not on show says nothing to the list; the shown one does.
        seen = dict([await stream.next(), await stream.next()])
        assert seen == {f"refund-{shown.id}": "succeeded", "refunds": "refunds"}


async def reload_payment(engine: AsyncEngine, pk: int) -> Payment:
    async with session_scope(engine) as session:
        found = await session.get(Payment, pk)
        assert found is not None
        return found
