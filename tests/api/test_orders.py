"""POST /api/orders: the merchant's order feed, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.support.simulator import SimHandle
from tests.support.waiting import wait_until
from web.db import session_scope
from web.models import Order, Payment
from web.services import api_keys
from web.settings import Settings

MEI = {
    "paymentRequestId": "PR-1001",
    "referenceOrderId": "ORD-1001",
    "buyerName": "Mei Chen",
    "buyerEmail": "mei.chen@example.com",
    "buyerPhone": "+65 6123 4567",
    "customerId": "CUST-77",
    "orderTotal": "129.00",
    "currency": "USD",
    "itemsSummary": "2 × Green tea, 1 × Teapot",
}


async def orders_in(engine: AsyncEngine) -> list[Order]:
    async with session_scope(engine) as session:
        return list((await session.exec(select(Order).order_by(col(Order.id)))).all())


async def payment_by_id(engine: AsyncEngine, payment_id: str) -> Payment | None:
    async with session_scope(engine) as session:
        found = await session.exec(select(Payment).where(col(Payment.payment_id) == payment_id))
        return found.first()


# ---------------------------------------------------------------- accepting orders


async def test_one_order_is_stored_and_waits_for_its_payment(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    answer = await feed.post("/api/orders", json=MEI)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "accepted": 1,
        "rejected": 0,
        "results": [{"index": 0, "status": "created", "key": "PR-1001", "payment": "waiting"}],
    }
    [order] = await orders_in(engine)
    assert (order.payment_request_id, order.reference_order_id) == ("PR-1001", "ORD-1001")
    assert (order.buyer_name, order.buyer_email, order.buyer_phone) == (
        "Mei Chen",
        "mei.chen@example.com",
        "+65 6123 4567",
    )
    assert (order.customer_id, order.total_minor, order.total_currency) == ("CUST-77", 12900, "USD")
    assert order.items_summary == "2 × Green tea, 1 × Teapot"
    assert (order.source, order.payment_pk) == ("api", None)


async def test_each_record_of_a_batch_is_accepted_or_rejected_on_its_own(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    batch: list[Any] = [
        MEI,
        {
            "paymentId": "2026 0001",
            "buyer_mail": "x@example.com",
            "buyerEmail": "not-an-email",
            "orderTotal": "1.234",
            "currency": "USD",
        },
        {"referenceOrderId": "ORD-9"},
        {"paymentId": "PAY-3", "orderTotal": 12, "buyerPhone": "call me"},
        "not an object",
        {"paymentId": "PAY-4", "orderTotal": 5000, "currency": "JPY", "buyerName": "Haruto Sato"},
    ]

    answer = await feed.post("/api/orders", json=batch)

    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 4)
    results = body["results"]
    assert [r["status"] for r in results] == [
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "created",
    ]
    assert results[1]["errors"] == [
        {"field": "buyer_mail", "message": "Unknown field “buyer_mail” (did you mean buyerEmail?)"},
        {"field": "paymentId", "message": "paymentId cannot contain spaces"},
        {"field": "buyerEmail", "message": "“not-an-email” is not an email address"},
        {"field": "orderTotal", "message": "orderTotal: USD allows at most 2 decimal places"},
    ]
    assert results[2]["errors"] == [
        {
            "field": "paymentRequestId",
            "message": "Give paymentRequestId or paymentId: "
            "the Antom payment this order belongs to",
        }
    ]
    assert {e["field"] for e in results[3]["errors"]} == {"buyerPhone", "currency"}
    assert results[4]["errors"][0]["field"] == ""
    # Only the valid records were stored.
    stored = await orders_in(engine)
    assert [(o.payment_request_id, o.payment_id) for o in stored] == [
        ("PR-1001", None),
        (None, "PAY-4"),
    ]
    assert (stored[1].total_minor, stored[1].total_currency) == (5000, "JPY")


async def test_replaying_a_batch_changes_nothing(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    batch = [MEI, {"paymentId": "PAY-2", "buyerName": "Sam Porter"}]
    first = await feed.post("/api/orders", json=batch)
    before = [(o.id, o.updated_at) for o in await orders_in(engine)]

    again = await feed.post("/api/orders", json=batch)

    assert first.status_code == again.status_code == 200
    assert [r["status"] for r in first.json()["results"]] == ["created", "created"]
    assert [r["status"] for r in again.json()["results"]] == ["unchanged", "unchanged"]
    assert [(o.id, o.updated_at) for o in await orders_in(engine)] == before


async def test_a_changed_record_replaces_the_order_details(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await feed.post("/api/orders", json=MEI)
    changed = {**MEI, "buyerEmail": "mei@example.org", "buyerPhone": None}

    answer = await feed.post("/api/orders", json=changed)

    assert answer.json()["results"][0]["status"] == "updated"
    [order] = await orders_in(engine)
    assert (order.buyer_email, order.buyer_phone) == ("mei@example.org", None)


async def test_a_record_changes_only_the_fields_it_carries(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await feed.post("/api/orders", json=MEI)

    answer = await feed.post(
        "/api/orders", json={"paymentRequestId": "PR-1001", "buyerEmail": "mei@example.org"}
    )

    assert answer.json()["results"][0]["status"] == "updated"
    [order] = await orders_in(engine)
    assert order.buyer_email == "mei@example.org"
    assert (order.buyer_name, order.buyer_phone, order.total_minor) == (
        "Mei Chen",
        "+65 6123 4567",
        12900,
    )


async def test_the_payment_id_can_be_added_to_an_order_known_by_request_id(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await feed.post("/api/orders", json=MEI)

    answer = await feed.post("/api/orders", json={**MEI, "paymentId": "PAY-1001"})

    assert answer.json()["results"][0]["status"] == "updated"
    [order] = await orders_in(engine)
    assert (order.payment_request_id, order.payment_id) == ("PR-1001", "PAY-1001")


async def test_ids_that_contradict_a_stored_order_are_refused(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await feed.post("/api/orders", json={**MEI, "paymentId": "PAY-1001"})

    answer = await feed.post(
        "/api/orders", json={"paymentRequestId": "PR-OTHER", "paymentId": "PAY-1001"}
    )

    assert answer.status_code == 422
    assert answer.json()["results"][0]["errors"] == [
        {
            "field": "paymentId",
            "message": "paymentId PAY-1001 belongs to the order with paymentRequestId PR-1001, "
            "not PR-OTHER",
        }
    ]
    assert len(await orders_in(engine)) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "The body is not valid JSON"),
        (b"[]", "The list of orders is empty"),
        (b'"PR-1"', "Send one order as a JSON object, or several as a JSON list"),
        (b"[" + b",".join([b'{"paymentId": "P"}'] * 1001) + b"]", "send at most 1,000 at a time"),
    ],
)
async def test_a_body_that_is_not_orders_is_refused_whole(
    feed: httpx.AsyncClient, engine: AsyncEngine, body: bytes, message: str
) -> None:
    answer = await feed.post(
        "/api/orders", content=body, headers={"content-type": "application/json"}
    )

    assert answer.status_code == 400
    assert message in answer.json()["errors"][0]["message"]
    assert await orders_in(engine) == []


# ---------------------------------------------------------------- the key


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer rdk_not-a-key-we-made",
        "Bearer sk_live_someone_elses_key",
    ],
)
async def test_a_request_without_a_valid_key_is_refused(
    client: httpx.AsyncClient, engine: AsyncEngine, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization else {}

    answer = await client.post("/api/orders", json=MEI, headers=headers)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["errors"][0]["message"]
    assert await orders_in(engine) == []


async def test_a_revoked_key_is_refused_from_the_next_request(
    feed: httpx.AsyncClient, feed_key: str, engine: AsyncEngine
) -> None:
    assert (await feed.post("/api/orders", json=MEI)).status_code == 200
    async with session_scope(engine) as session:
        [key] = await api_keys.list_keys(session)
        await api_keys.revoke_key(session, key.id or 0)

    answer = await feed.post("/api/orders", json={**MEI, "buyerName": "Someone Else"})

    assert answer.status_code == 401
    assert answer.json() == {"errors": [{"message": "This API key has been revoked"}]}
    [order] = await orders_in(engine)
    assert order.buyer_name == "Mei Chen"


async def test_the_key_opens_the_order_feed_and_nothing_else(
    feed: httpx.AsyncClient, feed_key: str
) -> None:
    for path in ("/payments", "/admin/api-keys", "/orders/import"):
        answer = await feed.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login")


async def test_a_signed_in_session_does_not_open_the_api(
    signed_in: Callable[..., Any], engine: AsyncEngine
) -> None:
    admin_client, _ = await signed_in(role="admin")

    answer = await admin_client.post("/api/orders", json=MEI)

    assert answer.status_code == 401
    assert await orders_in(engine) == []


async def test_using_a_key_records_when_it_was_last_used(
    feed: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await feed.post("/api/orders", json=MEI)

    async with session_scope(engine) as session:
        [key] = await api_keys.list_keys(session)
    assert key.last_used_at is not None
    [order] = await orders_in(engine)
    assert order.api_key_pk == key.id


# ---------------------------------------------------------------- joining payments


class TestJoiningPayments:
    """Orders and payments meet whichever arrives first. Payments reach the desk the way
    they do in production: Antom's PAYMENT_RESULT notification, or "Find a payment in
    Antom" (inquiryPayment); neither carries a buyer or an order reference."""

    @pytest.fixture
    def simulator_config(self, server_base_url: str) -> dict[str, Any]:
        return {"notify_url": f"{server_base_url}/webhooks/antom"}

    @pytest.fixture
    def settings(
        self, make_settings: Callable[..., Settings], db_url: str, simulator: SimHandle
    ) -> Settings:
        return make_settings(database_url=db_url, simulator=simulator)

    async def _notified(self, engine: AsyncEngine, payment_id: str) -> Payment:
        async def arrived() -> Payment | None:
            return await payment_by_id(engine, payment_id)

        return await wait_until(arrived, what="the PAYMENT_RESULT notification")

    async def test_an_order_sent_before_its_payment_is_joined_when_the_payment_arrives(
        self, feed: httpx.AsyncClient, engine: AsyncEngine, simulator: SimHandle
    ) -> None:
        answer = await feed.post("/api/orders", json={**MEI, "paymentRequestId": "PR-EARLY"})
        assert answer.json()["results"][0]["payment"] == "waiting"

        made = simulator.create_payment(amount_minor=12_900, payment_request_id="PR-EARLY")
        payment = await self._notified(engine, made["paymentId"])

        assert (payment.reference_order_id, payment.buyer_name, payment.buyer_email) == (
            "ORD-1001",
            "Mei Chen",
            "mei.chen@example.com",
        )
        [order] = await orders_in(engine)
        assert order.payment_pk == payment.id

    async def test_an_order_sent_after_its_payment_is_copied_onto_it_at_once(
        self, feed: httpx.AsyncClient, engine: AsyncEngine, simulator: SimHandle
    ) -> None:
        made = simulator.create_payment(amount_minor=12_900)
        payment = await self._notified(engine, made["paymentId"])
        assert payment.buyer_email is None  # Antom does not say who paid

        answer = await feed.post(
            "/api/orders", json={**MEI, "paymentRequestId": None, "paymentId": made["paymentId"]}
        )

        assert answer.json()["results"][0]["payment"] == "joined"
        joined = await payment_by_id(engine, made["paymentId"])
        assert joined is not None
        assert (joined.reference_order_id, joined.buyer_email) == (
            "ORD-1001",
            "mei.chen@example.com",
        )

    async def test_a_correction_reaches_the_joined_payment(
        self, feed: httpx.AsyncClient, engine: AsyncEngine, simulator: SimHandle
    ) -> None:
        made = simulator.create_payment(amount_minor=12_900, payment_request_id="PR-FIX")
        await self._notified(engine, made["paymentId"])
        await feed.post("/api/orders", json={**MEI, "paymentRequestId": "PR-FIX"})

        await feed.post(
            "/api/orders",
            json={**MEI, "paymentRequestId": "PR-FIX", "buyerEmail": "mei@example.org"},
        )

        payment = await payment_by_id(engine, made["paymentId"])
        assert payment is not None and payment.buyer_email == "mei@example.org"

    async def test_an_order_waiting_for_a_payment_an_agent_finds_in_antom_is_joined(
        self,
        feed: httpx.AsyncClient,
        signed_in: Callable[..., Any],
        engine: AsyncEngine,
        simulator: SimHandle,
    ) -> None:
        # A payment whose notification never reached the desk: the agent fetches it.
        made = simulator.create_payment(amount_minor=12_900, notify_url="http://127.0.0.1:9/x")
        await feed.post("/api/orders", json={**MEI, "paymentRequestId": made["paymentRequestId"]})
        agent, _ = await signed_in(role="agent")

        found = await agent.post("/payments/find", data={"ref": made["paymentId"]})

        assert found.status_code == 303, found.text
        page = await agent.get(found.headers["location"])
        assert "ORD-1001" in page.text and "mei.chen@example.com" in page.text
        # The order's own details, on the payment page.
        assert "+65 6123 4567" in page.text and "CUST-77" in page.text
        assert "2 × Green tea, 1 × Teapot" in page.text and "$129.00" in page.text
