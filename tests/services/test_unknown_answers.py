"""Unknown is never failed: answers that might follow a refund Antom executed never
release its money; only ``inquiryRefund`` may (issue 7, defects 1 and 2).

A scripted gateway plays Antom here, answer by answer, where the simulator could not be
made to say exactly these things in this order; the simulator plays it where it can.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlmodel import select

from tests.antom.keypairs import keypair
from tests.antom.scripted_server import (
    Received,
    Scripted,
    ScriptedServer,
    antom_response,
    running_scripted_server,
)
from tests.services.conftest import Desk, filled_form, submit
from web.antom.client import AntomClient
from web.antom.keys import generate_private_key, load_private_key, load_public_key
from web.models import Alert, AlertKind, RefundStatus
from web.services.poller import Poller
from web.settings import PollerConfig

CLIENT_ID = "TEST_CLIENT_1"
EMPTY_SIGNATURE = [("client-id", CLIENT_ID), ("response-time", ""), ("signature", "")]
UNLIMITED = {"USD": 10**9}


@pytest.fixture(name="gateway", scope="module")
def fx_gateway() -> Iterator[ScriptedServer]:
    with running_scripted_server() as server:
        yield server


@pytest.fixture(name="scripted")
def fx_scripted(gateway: ScriptedServer) -> Iterator[ScriptedServer]:
    gateway.reset()
    yield gateway
    gateway.reset()


@pytest.fixture(name="client")
async def fx_client(scripted: ScriptedServer) -> Any:
    client = AntomClient(
        gateway_url=scripted.base_url,
        client_id=CLIENT_ID,
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key()],
        timeout=10.0,
    )
    yield client
    await client.aclose()


def result(code: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"result": {"resultCode": code, "resultStatus": status, "resultMessage": code}} | extra


def script(
    refund_answers: list[Callable[[Received], Scripted]],
    inquiry: Callable[[Received], Scripted] | None = None,
) -> Callable[[Received], Scripted]:
    """Answer refund calls one after another from ``refund_answers`` (the last one
    repeats), inquiries with ``inquiry``."""
    calls = itertools.count()

    def respond(request: Received) -> Scripted:
        if request.uri.endswith("/inquiryRefund"):
            assert inquiry is not None, "no inquiry expected"
            return inquiry(request)
        n = next(calls)
        return refund_answers[min(n, len(refund_answers) - 1)](request)

    return respond


def http_500(_request: Received) -> Scripted:
    return Scripted(500, b"<html>internal error</html>", [("content-type", "text/html")])


def signed(payload: dict[str, Any]) -> Callable[[Received], Scripted]:
    return lambda request: antom_response(request, payload, key=keypair("antom"))


def unsigned(payload: dict[str, Any]) -> Callable[[Received], Scripted]:
    """Signature headers present but empty: what SDK 1.7.1 accepts unsigned."""
    return lambda request: antom_response(request, payload, key=None, headers=EMPTY_SIGNATURE)


def succeeded_inquiry(request: Received) -> Scripted:
    asked = json.loads(request.body)
    body = result(
        "SUCCESS",
        "S",
        refundRequestId=asked.get("refundRequestId", ""),
        refundId=asked.get("refundId", "ref-1"),
        refundStatus="SUCCESS",
        refundAmount={"currency": "USD", "value": "2000"},
        refundTime="2026-12-01T10:00:00+08:00",
    )
    return antom_response(request, body, key=keypair("antom"))


async def alerts(desk: Desk) -> list[Alert]:
    async with desk.session() as s:
        return list((await s.exec(select(Alert))).all())


@pytest.mark.parametrize(
    "retry_answer",
    [
        unsigned(result("INVALID_SIGNATURE", "F")),  # a gateway refusal: the retry never ran
        signed(result("REFUND_AMOUNT_EXCEED", "F")),  # the first attempt may have spent it
    ],
    ids=["gateway-refusal", "business-refusal"],
)
async def test_an_f_after_an_unknown_attempt_keeps_the_money_until_antom_confirms(
    desk: Desk,
    scripted: ScriptedServer,
    client: AntomClient,
    retry_answer: Callable[[Received], Scripted],
) -> None:
    """Defect 1: the first attempt answers HTTP 500 (Antom may have refunded), the same-id
    retry answers F. The refund must stay processing with its money reserved — an agent
    must not be able to refund it again — and Antom's later SUCCESS settles it."""
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment(amount_minor=10000)
    scripted.reply(script([http_500, retry_answer], inquiry=succeeded_inquiry))
    draft = await filled_form(desk, payment, user, amount_text="20.00", reason="service_issue")

    outcome = await submit(desk, client, payment, user, draft, retry_delays=(0.01,))

    refund = outcome.refund
    assert refund is not None and refund.attempts == 2
    assert refund.status is RefundStatus.PROCESSING, outcome.message
    held = await desk.get_payment(payment.id)
    assert (held.reserved_minor, held.refunded_minor, held.refund_count) == (2000, 0, 1)
    again = await filled_form(desk, payment, user, amount_text="100.00", reason="service_issue")
    refused = await submit(desk, client, payment, user, again)
    assert refused.refund is None  # the held $20 cannot be refunded a second time

    poller = Poller(desk.engine, client, notify_url=None, config=PollerConfig(max_rate=1000))
    results = await poller.check_now(refund.id or 0)
    assert results.result == "succeeded"
    (settled,) = await desk.refunds(payment.id)
    assert settled.status == RefundStatus.SUCCEEDED
    paid = await desk.get_payment(payment.id)
    assert (paid.reserved_minor, paid.refunded_minor, paid.refund_count) == (0, 2000, 1)
    assert [a.kind for a in await alerts(desk)] in ([], [AlertKind.GATEWAY_REFUSED])


async def test_a_gateway_refusal_on_the_pollers_re_send_keeps_the_money(
    desk: Desk, scripted: ScriptedServer, client: AntomClient
) -> None:
    """Defect 1 on the re-send path: Antom has no record of a written-ahead refund, the
    poller re-sends it with the same id, and the gateway refuses that request. It was not
    processed, so the refund did not fail: the money stays reserved and a lead is told."""
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment(amount_minor=10000)
    # The desk died after writing ahead: Antom never saw the first call.
    scripted.reply(script([http_500]))
    draft = await filled_form(desk, payment, user, amount_text="20.00", reason="service_issue")
    outcome = await submit(desk, client, payment, user, draft, retry_delays=())
    assert outcome.refund is not None

    not_exist = signed(result("REFUND_NOT_EXIST", "F"))
    scripted.reply(script([unsigned(result("INVALID_SIGNATURE", "F"))], inquiry=not_exist))
    poller = Poller(desk.engine, client, notify_url=None, config=PollerConfig(max_rate=1000))
    checked = await poller.check_now(outcome.refund.id or 0)

    assert checked.result == "resent"
    (refund,) = await desk.refunds(payment.id)
    assert refund.status == RefundStatus.PROCESSING
    assert refund.result_code == "INVALID_SIGNATURE"
    held = await desk.get_payment(payment.id)
    assert (held.reserved_minor, held.refund_count) == (2000, 1)
    assert AlertKind.GATEWAY_REFUSED in [a.kind for a in await alerts(desk)]


async def test_an_answer_without_signature_headers_is_unknown_not_failed(
    desk: Desk, simulator: Any
) -> None:
    """Defect 2: Antom answers INVALID_SIGNATURE with no signature headers at all (a
    merchant key it does not know). SDK 1.7.1 refuses such an answer; so does the desk:
    nothing is learnt, nothing is released."""
    user = await desk.user(limits=UNLIMITED)
    right = AntomClient(
        gateway_url=simulator.base_url,
        client_id=simulator.client_id,
        merchant_private_key=load_private_key(simulator.merchant_private_key_pem),
        antom_public_keys=[load_public_key(simulator.antom_public_key_pem)],
    )
    wrong_merchant_key = AntomClient(
        gateway_url=simulator.base_url,
        client_id=simulator.client_id,
        merchant_private_key=generate_private_key(),
        antom_public_keys=[load_public_key(simulator.antom_public_key_pem)],
    )
    try:
        payment = await desk.imported(right, simulator, amount_minor=10000)
        draft = await filled_form(
            desk, payment, user, amount_text="20.00", reason="other", note="testing keys"
        )
        outcome = await submit(desk, wrong_merchant_key, payment, user, draft, retry_delays=())
    finally:
        await right.aclose()
        await wrong_merchant_key.aclose()

    refund = outcome.refund
    assert refund is not None
    assert refund.status is RefundStatus.PROCESSING, outcome.message
    assert refund.result_code is None  # an untrusted answer's code is not recorded
    held = await desk.get_payment(payment.id)
    assert (held.reserved_minor, held.refund_count) == (2000, 1)


async def test_the_poller_asks_by_refund_id_and_raises_a_refund_it_cannot_learn_about(
    desk: Desk, scripted: ScriptedServer, client: AntomClient
) -> None:
    """Defect 9: the poller asks by Antom's refundId once it has one; inquiries that keep
    teaching nothing raise the refund to a lead after ``unknown_alert_after`` in a row —
    and it is still never failed."""
    user = await desk.user(limits=UNLIMITED)
    payment = await desk.payment(amount_minor=10000)
    accepted = result("REFUND_IN_PROCESS", "U", refundId="antom-ref-77")
    scripted.reply(script([signed(accepted)], inquiry=http_500))
    draft = await filled_form(desk, payment, user, amount_text="20.00", reason="service_issue")
    outcome = await submit(desk, client, payment, user, draft, retry_delays=())
    assert outcome.refund is not None and outcome.refund.refund_id == "antom-ref-77"

    config = PollerConfig(max_rate=1000, unknown_alert_after=3)
    poller = Poller(desk.engine, client, notify_url=None, config=config)
    for n in range(1, 4):
        checked = await poller.check_now(outcome.refund.id or 0)
        assert checked.result == "unknown"
        raised = [a.kind for a in await alerts(desk)]
        assert raised == ([AlertKind.UNKNOWN_RESULT] if n == 3 else []), n

    inquiries = [r.json() for r in scripted.received if r.uri.endswith("/inquiryRefund")]
    assert inquiries == [{"refundId": "antom-ref-77"}] * 3
    (refund,) = await desk.refunds(payment.id)
    assert refund.status == RefundStatus.PROCESSING and refund.unknown_inquiries == 3
    held = await desk.get_payment(payment.id)
    assert held.reserved_minor == 2000
