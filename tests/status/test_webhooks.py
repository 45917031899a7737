"""POST /webhooks/antom over real HTTP: verify, store, apply, acknowledge (SQLite and PG)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.status.conftest import (
    CLIENT_ID,
    count,
    events_of,
    inbox,
    make_payment,
    make_refund,
    refund_result,
    reload,
    settle,
    signed,
)
from tests.support import keys
from tests.support.fixtures_app import only_sqlite
from web.antom.messages import Answer
from web.antom.notifications import Rejected, verify
from web.db import session_scope
from web.integration import webhook_config
from web.models import (
    Alert,
    AlertKind,
    EventSource,
    Payment,
    Refund,
    RefundStatus,
    RejectedWebhook,
    WebhookEvent,
    utcnow,
)

ACK = b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'


@pytest.fixture
def in_process() -> bool:
    return True  # the test posts the notifications itself: no socket needed


async def post(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/webhooks/antom", content=body, headers=headers)


async def test_success_notification_settles_refund(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, amount_minor=2_500)

    response = await post(client, *signed(refund_result(refund)))

    assert response.status_code == 200
    assert response.content == ACK
    assert response.headers["content-type"].startswith("application/json")
    stored = await reload(engine, Refund, refund.id)
    assert stored.status == RefundStatus.SUCCEEDED
    assert stored.refund_id == f"antom-{refund.refund_request_id}"
    paid = await reload(engine, Payment, payment.id)
    assert (paid.refunded_minor, paid.reserved_minor) == (2_500, 0)
    [event] = [e for e in await events_of(engine, refund) if e.to_status]
    assert event.source == EventSource.WEBHOOK
    assert event.to_status == RefundStatus.SUCCEEDED
    [row] = await inbox(engine)
    assert row.outcome == "applied" and row.processed_at is not None
    assert row.refund_request_id == refund.refund_request_id


async def test_fail_notification_holds_the_money_until_an_inquiry_confirms(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Unknown is never failed: a FAIL notification releases nothing by itself; it asks
    for an inquiry at once (reliability notes §2.2 step 6), and that releases the money."""
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, amount_minor=4_000)

    response = await post(client, *signed(refund_result(refund, status="FAIL")))

    assert response.status_code == 200
    held = await reload(engine, Refund, refund.id)
    assert held.status == RefundStatus.PROCESSING
    assert held.next_check_at is not None and held.next_check_at <= utcnow()
    paid = await reload(engine, Payment, payment.id)
    assert (paid.refunded_minor, paid.reserved_minor, paid.refund_count) == (0, 4_000, 1)
    [row] = await inbox(engine)
    assert row.outcome == "confirming"

    verdict = await settle(engine, refund, Answer.FAIL)
    assert verdict.to == RefundStatus.FAILED
    paid = await reload(engine, Payment, payment.id)
    assert (paid.refunded_minor, paid.reserved_minor, paid.refund_count) == (0, 0, 0)


async def test_notification_before_the_refund_call_returned(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The refund is still PENDING (the desk's own call has not answered yet)."""
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, status=RefundStatus.PENDING)

    assert (await post(client, *signed(refund_result(refund)))).status_code == 200

    assert (await reload(engine, Refund, refund.id)).status == RefundStatus.SUCCEEDED
    assert (await reload(engine, Payment, payment.id)).refunded_minor == refund.amount_minor


async def test_replays_change_nothing(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)
    body, headers = signed(refund_result(refund))

    sequential = [await post(client, body, headers) for _ in range(3)]
    together = await asyncio.gather(*(post(client, body, headers) for _ in range(5)))

    assert [r.status_code for r in [*sequential, *together]] == [200] * 8
    assert all(r.content == ACK for r in [*sequential, *together])
    transitions = [e for e in await events_of(engine, refund) if e.to_status]
    assert len(transitions) == 1
    assert await count(engine, WebhookEvent) == 1
    paid = await reload(engine, Payment, payment.id)
    assert (paid.refunded_minor, paid.reserved_minor) == (refund.amount_minor, 0)


async def test_reordered_fail_after_success_never_downgrades(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)

    await post(client, *signed(refund_result(refund, status="SUCCESS")))
    late = await post(client, *signed(refund_result(refund, status="FAIL")))

    assert late.status_code == 200
    assert (await reload(engine, Refund, refund.id)).status == RefundStatus.SUCCEEDED
    paid = await reload(engine, Payment, payment.id)
    assert (paid.refunded_minor, paid.reserved_minor) == (refund.amount_minor, 0)
    assert (
        await count(
            engine,
            Alert,
            col(Alert.kind) == AlertKind.CONTRADICTION,
            col(Alert.refund_pk) == refund.id,
        )
        == 1
    )


async def test_amount_mismatch_is_not_applied(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, amount_minor=1_000)
    body = refund_result(refund, refundAmount={"currency": "USD", "value": "9999"})

    assert (await post(client, *signed(body))).status_code == 200

    assert (await reload(engine, Refund, refund.id)).status == RefundStatus.PROCESSING
    assert await count(engine, Alert, col(Alert.kind) == AlertKind.MISMATCH) == 1


async def test_external_refund_is_booked_and_flagged(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine, amount_minor=10_000)
    await make_refund(engine, payment, amount_minor=3_000)
    body = refund_result(
        None,
        paymentId=payment.payment_id,
        refundRequestId="dashboard-refund-1",
        refundId="antom-dashboard-1",
        refundAmount={"currency": "USD", "value": "2000"},
    )

    assert (await post(client, *signed(body))).status_code == 200

    [external] = [
        r for r in await _refunds_of(engine, payment) if r.refund_request_id == "dashboard-refund-1"
    ]
    assert external.external is True
    assert external.status == RefundStatus.SUCCEEDED
    paid = await reload(engine, Payment, payment.id)
    # Refundable = 10,000 captured - 2,000 refunded outside - 3,000 still in flight.
    assert (paid.refunded_minor, paid.reserved_minor) == (2_000, 3_000)
    assert await count(engine, Alert, col(Alert.kind) == AlertKind.EXTERNAL_REFUND) == 1
    # Delivered again: still one refund, one alert.
    assert (await post(client, *signed(body))).status_code == 200
    assert len(await _refunds_of(engine, payment)) == 2


async def test_refund_of_an_unknown_payment_is_kept_and_flagged(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    body = refund_result(
        None,
        refundRequestId="nobody-knows",
        refundId="antom-x",
        refundAmount={"currency": "USD", "value": "100"},
    )

    response = await post(client, *signed(body))

    assert response.status_code == 200 and response.content == ACK
    [row] = await inbox(engine)
    assert row.outcome == "orphan"
    assert await count(engine, Alert, col(Alert.kind) == AlertKind.ORPHAN_NOTIFICATION) == 1
    assert await count(engine, Refund) == 0


async def _refunds_of(engine: AsyncEngine, payment: Payment) -> list[Refund]:
    from sqlmodel import select

    from web.db import session_scope

    async with session_scope(engine) as session:
        rows = await session.exec(select(Refund).where(Refund.payment_pk == payment.id))
        return list(rows.all())


# ---------------------------------------------------------------- refusals


async def _assert_untouched(engine: AsyncEngine, refund: Refund, payment: Payment) -> None:
    assert (await reload(engine, Refund, refund.id)).status == RefundStatus.PROCESSING
    paid = await reload(engine, Payment, payment.id)
    assert (paid.refunded_minor, paid.reserved_minor) == (0, refund.amount_minor)
    assert await count(engine, WebhookEvent) == 0


@only_sqlite  # verification does not depend on the database
async def test_every_single_byte_tamper_is_refused(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)
    body, headers = signed(refund_result(refund))
    path = "/webhooks/antom"

    def flip(text: bytes, i: int) -> bytes:
        return text[:i] + bytes([text[i] ^ 0x01]) + text[i + 1 :]

    attempts: list[tuple[bytes, dict[str, str]]] = []
    # The body: every byte.
    attempts += [(flip(body, i), headers) for i in range(len(body))]
    # request-time and client-id headers: every byte (the signature is unchanged).
    for name in ("request-time", "client-id"):
        value = headers[name].encode()
        attempts += [
            (body, headers | {name: flip(value, i).decode("latin-1")}) for i in range(len(value))
        ]
    # The path Antom signed: every byte (signed for another path, sent to ours).
    for i in range(len(path)):
        tampered = flip(path.encode(), i).decode("latin-1")
        attempts.append(signed(body, path=tampered, request_time=headers["request-time"]))

    responses = []
    for chunk in range(0, len(attempts), 25):
        responses += await asyncio.gather(
            *(post(client, b, h) for b, h in attempts[chunk : chunk + 25])
        )

    assert {r.status_code for r in responses} == {401}
    assert all(r.content == b"" for r in responses)
    await _assert_untouched(engine, refund, payment)
    # Refused attempts are kept for diagnosis, capped.
    assert 0 < await count(engine, RejectedWebhook) <= 500


UNAUTHENTICATED = [
    "unsigned",
    "no_request_time",
    "no_client_id",
    "garbage_signature",
    "wrong_key",
    "wrong_client_id",
    "bad_algorithm",
]


async def test_unauthenticated_notifications_are_refused(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)
    for case in UNAUTHENTICATED:
        body, headers = signed(refund_result(refund))
        match case:
            case "unsigned":
                headers.pop("signature")
            case "no_request_time":
                headers.pop("request-time")
            case "no_client_id":
                headers.pop("client-id")
            case "garbage_signature":
                headers["signature"] = "algorithm=RSA256,keyVersion=1,signature=%%%not-base64"
            case "wrong_key":
                body, headers = signed(refund_result(refund), private_pem=keys.STRANGER_PRIVATE_PEM)
            case "wrong_client_id":
                body, headers = signed(refund_result(refund), client_id="SOMEONE_ELSE")
            case "bad_algorithm":
                headers["signature"] = headers["signature"].replace("RSA256", "ECC224")

        response = await post(client, body, headers)

        assert response.status_code == 401, case
    await _assert_untouched(engine, refund, payment)
    reasons = [r.reason for r in await _rejections(engine)]
    assert reasons == [
        "missing_header",
        "missing_header",
        "missing_header",
        "bad_signature_header",
        "bad_signature",
        "wrong_client_id",
        "bad_signature_header",
    ]


async def _rejections(engine: AsyncEngine) -> list[RejectedWebhook]:
    async with session_scope(engine) as session:
        return list((await session.exec(select(RejectedWebhook))).all())


async def _alerts(engine: AsyncEngine) -> list[Alert]:
    async with session_scope(engine) as session:
        return list((await session.exec(select(Alert).order_by(col(Alert.id)))).all())


MALFORMED = [
    b"not json",
    b"[1,2]",
    b'{"result":{}}',
    b'{"notifyType":"REFUND_RESULT"}',
    b'{"notifyType":"REFUND_RESULT","refundRequestId":"x","refundStatus":"MAYBE"}',
    b'{"notifyType":"REFUND_RESULT","refundRequestId":"x","refundStatus":"SUCCESS",'
    b'"refundAmount":{"currency":"USD","value":"1.5"}}',
]


async def test_signed_but_unusable_is_acknowledged_kept_and_raised(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A verified body the desk cannot use is Antom's word all the same: refusing it would
    only make Antom re-send it for a day. It is stored, acknowledged and raised."""
    for body in MALFORMED:
        response = await post(client, *signed(body))
        assert response.status_code == 200, body
        assert response.content == ACK
        again = await post(client, *signed(body))  # a re-delivery changes nothing
        assert again.status_code == 200, body

    kept = await inbox(engine)
    assert len(kept) == len(MALFORMED)
    assert {row.outcome for row in kept} == {"unusable"}
    assert sorted(row.body.encode() for row in kept) == sorted(MALFORMED)
    alerts = await _alerts(engine)
    assert [a.kind for a in alerts] == [AlertKind.UNAPPLIED_NOTIFICATION] * len(MALFORMED)
    assert await _rejections(engine) == []


async def test_signed_processing_refund_result_is_acknowledged(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment, amount_minor=4_000)

    response = await post(client, *signed(refund_result(refund, status="PROCESSING")))

    assert response.status_code == 200
    assert response.content == ACK
    assert (await reload(engine, Refund, refund.id)).status == RefundStatus.PROCESSING
    [row] = await inbox(engine)
    assert row.processed_at is not None


async def test_body_over_64_kib_is_refused_before_verification(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    big = json.dumps({"notifyType": "REFUND_RESULT", "pad": "x" * 70_000}).encode()

    response = await post(client, *signed(big))

    assert response.status_code == 413
    assert await count(engine, WebhookEvent) == 0


@only_sqlite  # no database involved
async def test_rotation_accepts_either_configured_key(make_settings, db_url: str) -> None:
    """ANTOM_PUBLIC_KEY and ANTOM_PUBLIC_KEY_NEXT both verify; a third key does not."""
    settings = make_settings(
        database_url=db_url,
        antom_gateway_url="http://127.0.0.1:9",
        antom_client_id=CLIENT_ID,
        antom_merchant_private_key=keys.MERCHANT_PRIVATE_PEM,
        antom_public_keys=(keys.ANTOM_PUBLIC_PEM, keys.STRANGER_PUBLIC_PEM),
    )
    config = webhook_config(settings)
    for pem in (keys.ANTOM_PRIVATE_PEM, keys.STRANGER_PRIVATE_PEM):
        body, headers = signed(b'{"notifyType":"X"}', private_pem=pem)
        assert verify(config, headers, body) == (CLIENT_ID, headers["request-time"])
    body, headers = signed(b'{"notifyType":"X"}', private_pem=keys.MERCHANT_PRIVATE_PEM)
    with pytest.raises(Rejected):
        verify(config, headers, body)


async def test_payment_and_capture_notifications_create_and_update_payments(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    from sqlmodel import select

    from web.db import session_scope

    card = {
        "notifyType": "PAYMENT_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "paymentId": "pay-card-1",
        "paymentRequestId": "order-1",
        "paymentAmount": {"currency": "USD", "value": "5000"},
        "paymentMethodType": "CARD",
        "paymentCreateTime": "2026-11-25T10:00:00+00:00",
        "paymentTime": "2026-11-25T10:00:05+00:00",
    }
    capture = {
        "notifyType": "CAPTURE_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "paymentId": "pay-card-1",
        "captureId": "cap-1",
        "captureRequestId": "capreq-1",
        "captureAmount": {"currency": "USD", "value": "5000"},
    }
    late_pending = card | {"notifyType": "PAYMENT_PENDING"}

    for body in (card, capture, capture, late_pending):
        assert (await post(client, *signed(body))).status_code == 200

    async with session_scope(engine) as session:
        [payment] = (await session.exec(select(Payment))).all()
    assert (payment.payment_id, payment.method, payment.status) == ("pay-card-1", "CARD", "SUCCESS")
    # A card is captured by CAPTURE_RESULT, once, however often it is delivered.
    assert (payment.amount_minor, payment.captured_minor) == (5_000, 5_000)
    assert payment.paid_at is not None


async def test_dispute_notifications_in_any_order(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    payment = await make_payment(engine)

    def dispute(kind: str, dispute_id: str = "d-1") -> dict[str, str]:
        return {
            "paymentId": payment.payment_id,
            "paymentRequestId": payment.payment_request_id,
            "disputeId": dispute_id,
            "disputeNotificationType": kind,
        }

    await post(client, *signed(dispute("DISPUTE_CREATED")))
    assert (await reload(engine, Payment, payment.id)).dispute_open is True
    await post(client, *signed(dispute("DISPUTE_JUDGED")))
    assert (await reload(engine, Payment, payment.id)).dispute_open is False
    # A second dispute arrives out of order: its close first, then its creation.
    await post(client, *signed(dispute("DISPUTE_CANCELLED", "d-2")))
    await post(client, *signed(dispute("DISPUTE_CREATED", "d-2")))
    assert (await reload(engine, Payment, payment.id)).dispute_open is False


async def test_leads_see_and_close_an_orphan_on_the_external_worklist(
    client: httpx.AsyncClient, engine: AsyncEngine, signed_in: Any
) -> None:
    body = refund_result(
        None,
        refundRequestId="nobody-knows",
        refundId="antom-x",
        refundAmount={"currency": "USD", "value": "100"},
    )
    await post(client, *signed(body))
    lead, _ = await signed_in(role="lead")
    agent, _ = await signed_in(role="agent")

    assert (await agent.get("/worklists?queue=external")).status_code == 403
    page = await lead.get("/worklists?queue=external")
    assert page.status_code == 200
    assert "nobody-knows" in page.text
    [alert_id] = re.findall(r'id="item-(\d+)"', page.text)
    htmx = {"HX-Request": "true"}
    bare = await lead.post(f"/worklists/{alert_id}/close", headers=htmx)
    assert bare.status_code == 422 and "Say what was done before closing it" in bare.text
    assert "nobody-knows" in (await lead.get("/worklists?queue=external")).text  # unchanged
    note = {"note": "Booked by hand after a call with Antom"}
    closed = await lead.post(f"/worklists/{alert_id}/close", data=note, headers=htmx)
    assert closed.status_code == 200 and 'data-state="closed"' in closed.text
    assert "nobody-knows" not in (await lead.get("/worklists?queue=external")).text
