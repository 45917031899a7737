"""Hostile amounts typed into the refund form, over real HTTP (issue 7, defect 7).

A 10,000-digit amount used to reach ``int``/``str`` past Python's 4,300-digit limit and
come back as HTTP 500. Both the live validation and the submit must answer with the
message beside the amount field instead, and write nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.pages.factories import add_payment
from tests.support.simulator import SimHandle
from web.db import session_scope
from web.models import Refund, User
from web.settings import Settings

_TOKENS = re.compile(r'name="(form_token|refundable_token)" value="([^"]*)"')
_AMOUNT_ERRORS = re.compile(r'id="refund-amount-errors"[^>]*>(.*?)</div>', re.S)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str, simulator: SimHandle) -> Settings:
    # With Antom configured, so the submit gets as far as re-validating the amount.
    return make_settings(simulator=simulator, database_url=db_url)


@pytest.fixture
async def agent_and_payment(
    signed_in: Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]], engine: AsyncEngine
) -> tuple[httpx.AsyncClient, int]:
    client, _ = await signed_in(role="agent", limits={"USD": 1_000_000})
    async with session_scope(engine) as session:
        payment = await add_payment(session, currency="USD", amount_minor=10_000)
        assert payment.id is not None
        return client, payment.id


async def _form(client: httpx.AsyncClient, pk: int, amount: str) -> dict[str, str]:
    page = await client.get(f"/payments/{pk}")
    assert page.status_code == 200
    tokens = dict(_TOKENS.findall(page.text))
    return {"amount": amount, "currency": "USD", "reason": "customer_request", "note": ""} | tokens


HUGE = ["1" * 10_000, "9" * 5_000 + ".00", "1" * 4_301, "1" + ",000" * 3_000, "$" + "9" * 20_000]


async def test_live_validation_of_a_huge_amount_answers_beside_the_field(
    agent_and_payment: tuple[httpx.AsyncClient, int],
) -> None:
    client, pk = agent_and_payment
    for amount in HUGE:
        body = await _form(client, pk, amount)
        answer = await client.post(
            f"/payments/{pk}/refunds/validate", data=body, headers={"HX-Request": "true"}
        )
        assert answer.status_code == 200, (len(amount), answer.text[:500])
        box = _AMOUNT_ERRORS.search(answer.text)
        assert box and "The amount is too large" in box.group(1), len(amount)
        assert re.search(r'<button id="refund-submit"[^>]*disabled', answer.text)
        assert len(answer.text) < 20_000  # the amount is not echoed back in the message


async def test_submitting_a_huge_amount_is_refused_and_writes_nothing(
    agent_and_payment: tuple[httpx.AsyncClient, int], engine: AsyncEngine
) -> None:
    client, pk = agent_and_payment
    body = await _form(client, pk, "1" * 10_000)
    answer = await client.post(f"/payments/{pk}/refunds", data=body, headers={"HX-Request": "true"})
    assert answer.status_code == 422, answer.text[:500]
    box = _AMOUNT_ERRORS.search(answer.text)
    assert box and "The amount is too large" in box.group(1)
    async with session_scope(engine) as session:
        assert (await session.exec(select(Refund))).all() == []
