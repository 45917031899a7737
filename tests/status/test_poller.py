"""The inquiry poller against the real simulator (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from tests.status.conftest import count, desk_payment, events_of, make_refund, reload
from tests.support.simulator import SimHandle
from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.antom.messages import RefundRequest
from web.antom.money import Money
from web.db import session_scope
from web.models import Alert, AlertKind, EventSource, Payment, Refund, RefundStatus, utcnow
from web.services import ledger
from web.services.poller import Poller, backoff_delay
from web.settings import ConfigError, PollerConfig, Settings


@pytest.fixture
def simulator_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Refunds stay PROCESSING until a test settles them (time_scale 1: a minute)."""
    marker = request.node.get_closest_marker("sim")
    return {"time_scale": 1.0, **(marker.kwargs if marker else {})}


FAST = PollerConfig(base_delay_s=0.0, max_delay_s=0.0, pending_grace_s=0.0, idle_s=0.05)


@pytest.fixture
async def antom(simulator: SimHandle) -> AsyncIterator[AntomClient]:
    client = AntomClient(
        gateway_url=simulator.base_url,
        client_id=simulator.client_id,
        merchant_private_key=load_private_key(simulator.merchant_private_key_pem),
        antom_public_keys=[load_public_key(simulator.antom_public_key_pem)],
        timeout=5.0,
    )
    try:
        yield client
    finally:
        await client.aclose()


async def sent_refund(
    engine: AsyncEngine, antom: AntomClient, payment: Payment, amount_minor: int = 1_000
) -> tuple[Refund, str]:
    """A refund the desk wrote and Antom accepted as REFUND_IN_PROCESS; (row, refundId)."""
    refund = await make_refund(engine, payment, amount_minor=amount_minor)
    answer = await antom.refund(
        RefundRequest(
            refund_request_id=refund.refund_request_id,
            payment_id=payment.payment_id,
            amount=Money(amount_minor, payment.currency),
        )
    )
    assert answer.result_code == "REFUND_IN_PROCESS", answer
    assert answer.refund_id
    return refund, answer.refund_id


@pytest.mark.parametrize("outcome", ["SUCCESS", "FAIL"])
async def test_processing_refund_settles_through_the_poller(
    engine: AsyncEngine, simulator: SimHandle, antom: AntomClient, outcome: str
) -> None:
    payment = await desk_payment(engine, simulator, method="GCASH")
    refund, refund_id = await sent_refund(engine, antom, payment)
    poller = Poller(engine, antom, notify_url=None, config=FAST)

    first = await poller.run_once()
    assert [r.result for r in first.results] == ["processing"]
    assert (await reload(engine, Refund, refund.id)).status == RefundStatus.PROCESSING

    simulator.settle(refund_id, outcome)
    second = await poller.run_once()

    expected = RefundStatus.SUCCEEDED if outcome == "SUCCESS" else RefundStatus.FAILED
    assert [r.result for r in second.results] == [expected.value]
    stored = await reload(engine, Refund, refund.id)
    assert stored.status == expected
    assert stored.lease_owner is None and stored.next_check_at is None
    paid = await reload(engine, Payment, payment.id)
    assert paid.reserved_minor == 0
    assert paid.refunded_minor == (1_000 if outcome == "SUCCESS" else 0)
    [event] = [e for e in await events_of(engine, refund) if e.to_status == expected]
    assert event.source == EventSource.POLLER
    assert event.request_id == second.request_id  # the pass that learnt it
    assert second.request_id.startswith("poll-") and second.request_id != first.request_id
    # Settled: nothing left to poll.
    assert (await poller.run_once()).claimed == 0


async def test_write_ahead_that_never_reached_antom_is_resent_with_the_same_id(
    engine: AsyncEngine, simulator: SimHandle, antom: AntomClient
) -> None:
    """A PENDING row older than the grace period: the process died before calling Antom."""
    payment = await desk_payment(engine, simulator)
    refund = await make_refund(engine, payment, amount_minor=700, status=RefundStatus.PENDING)
    assert simulator.admin_get(f"refunds?paymentId={payment.payment_id}") == []
    poller = Poller(engine, antom, notify_url=None, config=FAST)

    stats = await poller.reconcile()

    assert [r.result for r in stats.results] == ["resent"]
    stored = await reload(engine, Refund, refund.id)
    assert stored.status == RefundStatus.SUCCEEDED
    assert stored.attempts == 1
    at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
    assert [r["refundRequestId"] for r in at_antom] == [refund.refund_request_id]
    events = await events_of(engine, refund)
    assert events[-1].source == EventSource.RECONCILIATION


async def test_pending_inside_the_grace_period_is_left_alone(
    engine: AsyncEngine, simulator: SimHandle, antom: AntomClient
) -> None:
    payment = await desk_payment(engine, simulator)
    await make_refund(engine, payment, status=RefundStatus.PENDING)
    poller = Poller(engine, antom, notify_url=None, config=PollerConfig(pending_grace_s=60))

    assert (await poller.run_once()).claimed == 0


async def test_unreachable_antom_never_fails_a_refund(
    engine: AsyncEngine, simulator: SimHandle
) -> None:
    payment = await desk_payment(engine, simulator)
    refund = await make_refund(engine, payment)
    closed = AntomClient(
        gateway_url="http://127.0.0.1:9",
        client_id=simulator.client_id,
        merchant_private_key=load_private_key(simulator.merchant_private_key_pem),
        antom_public_keys=[load_public_key(simulator.antom_public_key_pem)],
        timeout=1.0,
    )
    try:
        poller = Poller(engine, closed, notify_url=None, config=FAST)
        for _ in range(3):
            stats = await poller.run_once()
            assert [r.result for r in stats.results] == ["unknown"]
    finally:
        await closed.aclose()
    stored = await reload(engine, Refund, refund.id)
    assert stored.status == RefundStatus.PROCESSING
    assert stored.lease_owner is None and stored.next_check_at is not None


async def test_rate_limited_antom_slows_the_poller_without_errors(
    engine: AsyncEngine, simulator: SimHandle, antom: AntomClient
) -> None:
    payment = await desk_payment(engine, simulator, method="GCASH", amount_minor=100_000)
    refunds = []
    for _ in range(12):
        refund, refund_id = await sent_refund(engine, antom, payment, amount_minor=100)
        simulator.settle(refund_id, "SUCCESS")
        refunds.append(refund)
    # Now Antom allows 5 requests a second (burst 2); the poller starts at 200.
    simulator.admin_post("faults", {"rateLimitPerSecond": 5.0, "rateLimitBurst": 2})
    config = PollerConfig(
        base_delay_s=0.0,
        max_delay_s=0.0,
        pending_grace_s=0.0,
        max_rate=200.0,
        batch=50,
        concurrency=12,
    )
    poller = Poller(engine, antom, notify_url=None, config=config)

    results: list[str] = []
    # Until all are settled, within a deadline (not a number of passes: how many passes
    # fit in the rate limiter's waits depends on how busy the machine is).
    deadline = asyncio.get_running_loop().time() + 60
    while await count(engine, Refund, col(Refund.status) == RefundStatus.PROCESSING):
        assert asyncio.get_running_loop().time() < deadline, results
        stats = await poller.run_once()
        if not stats.claimed:
            await asyncio.sleep(0.05)
        results += [r.result for r in stats.results]

    assert poller.rate_limit_hits > 0
    assert poller.limiter.rate < config.max_rate  # it slowed down
    assert "error" not in results and "failed" not in results
    assert await count(engine, Refund, col(Refund.status) == RefundStatus.SUCCEEDED) == 12


async def test_stuck_refunds_are_raised_to_leads_once(
    engine: AsyncEngine, simulator: SimHandle, antom: AntomClient
) -> None:
    payment = await desk_payment(engine, simulator)
    refund = await make_refund(engine, payment)
    async with session_scope(engine) as session:
        await session.exec(
            sa.update(Refund)
            .where(col(Refund.id) == refund.id)
            .values(created_at=utcnow() - timedelta(hours=3))
        )
    poller = Poller(engine, antom, notify_url=None, config=PollerConfig(stuck_after_s=3600))

    assert await poller.flag_stuck(utcnow()) == 1
    assert await poller.flag_stuck(utcnow()) == 0
    assert await count(engine, Alert, col(Alert.kind) == AlertKind.STUCK) == 1
    # Raised, never failed.
    assert (await reload(engine, Refund, refund.id)).status == RefundStatus.PROCESSING


async def test_the_sla_is_per_payment_method_and_starts_at_the_approval(
    engine: AsyncEngine, simulator: SimHandle, antom: AntomClient
) -> None:
    card = await desk_payment(engine, simulator, method="CARD", currency="USD")
    wallet = await desk_payment(engine, simulator, method="ALIPAY_CN", currency="USD")
    now = utcnow()

    async def aged(payment: Payment, hours: float, decided_hours: float | None = None) -> Refund:
        refund = await make_refund(engine, payment, amount_minor=100)
        async with session_scope(engine) as session:
            await session.exec(
                sa.update(Refund)
                .where(col(Refund.id) == refund.id)
                .values(
                    created_at=now - timedelta(hours=hours),
                    decided_at=None
                    if decided_hours is None
                    else now - timedelta(hours=decided_hours),
                )
            )
        return refund

    card_within = await aged(card, 3)  # CARD has 4 h
    card_over = await aged(card, 5)
    wallet_over = await aged(wallet, 2)  # no SLA of its own: the 1 h default
    wallet_approved_late = await aged(wallet, 30, decided_hours=0.5)  # waited for approval
    config = PollerConfig(stuck_after_s=3600, sla_s=(("CARD", 4 * 3600.0),))
    poller = Poller(engine, antom, notify_url=None, config=config)

    assert await poller.flag_stuck(now) == 2
    async with session_scope(engine) as session:
        raised = (
            (await session.exec(sa.select(Alert).where(col(Alert.kind) == AlertKind.STUCK)))
            .scalars()
            .all()
        )
    assert {a.refund_pk for a in raised} == {card_over.id, wallet_over.id}
    assert not {card_within.id, wallet_approved_late.id} & {a.refund_pk for a in raised}
    by_refund = {a.refund_pk: a for a in raised}
    assert "(CARD)" in by_refund[card_over.id].message
    assert "SLA 4 h" in by_refund[card_over.id].message
    assert "SLA 1 h" in by_refund[wallet_over.id].message
    # Later, past its own SLA since the approval, the late one is raised too; once.
    assert await poller.flag_stuck(now + timedelta(hours=0.75)) == 1
    assert await poller.flag_stuck(now + timedelta(hours=9)) == 1  # card_within, at last
    assert await poller.flag_stuck(now + timedelta(hours=9)) == 0


async def test_an_expired_lease_is_fenced_out(
    engine: AsyncEngine, simulator: SimHandle, antom: AntomClient
) -> None:
    """Poller A's lease is taken over by B; A's late write changes nothing."""
    payment = await desk_payment(engine, simulator, method="GCASH")
    refund, refund_id = await sent_refund(engine, antom, payment)
    a = Poller(engine, antom, notify_url=None, config=FAST, owner="A")
    b = Poller(engine, antom, notify_url=None, config=FAST, owner="B")
    assert await a.claim(utcnow(), limit=5) == [refund.id]
    assert await b.claim(utcnow(), limit=5) == []  # A holds it
    later = utcnow() + timedelta(seconds=FAST.lease_s + 1)
    assert await b.claim(later, limit=5) == [refund.id]  # A's lease expired

    simulator.settle(refund_id, "SUCCESS")
    # A was stalled all that time (its own clock agrees the lease has run out).
    a.leases._leased_at[refund.id or 0] -= FAST.lease_s
    stale = await a._check(refund.id or 0, ledger.Cause(EventSource.POLLER, "test"))
    assert stale.result == "lost_lease"
    assert (await reload(engine, Refund, refund.id)).lease_owner == "B"


def test_backoff_grows_with_age_and_stays_in_bounds() -> None:
    config = PollerConfig(base_delay_s=5, max_delay_s=600)
    rng = random.Random(7)
    for age in (0, 1, 10, 100, 1_000, 10_000, 10**9):
        ceiling = min(600, max(5, age / 2))
        samples = [backoff_delay(age, config, rng) for _ in range(2_000)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        mean = sum(samples) / len(samples)
        assert abs(mean - 0.75 * ceiling) < 0.05 * ceiling


def test_poller_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {"REFUND_DESK_DATA_DIR": str(tmp_path)}
    defaults = Settings.from_env(env).validate()
    assert defaults.poller == PollerConfig() and defaults.poller_enabled

    tuned = Settings.from_env(
        env
        | {
            "REFUND_DESK_POLL_BATCH": "7",
            "REFUND_DESK_POLL_STUCK_AFTER_S": "30.5",
            "REFUND_DESK_POLL_BASE_DELAY_S": "0",
            "REFUND_DESK_POLLER": "off",
        }
    ).validate()
    assert (tuned.poller.batch, tuned.poller.stuck_after_s) == (7, 30.5)
    assert tuned.poller.base_delay_s == 0 and tuned.poller.concurrency == 4
    assert not tuned.poller_enabled


def test_bad_poller_settings_are_reported_together(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "REFUND_DESK_DATA_DIR": str(tmp_path),
            "REFUND_DESK_POLL_BATCH": "2.5",
            "REFUND_DESK_POLL_CONCURRENCY": "0",
            "REFUND_DESK_POLL_IDLE_S": "0",
            "REFUND_DESK_POLL_MAX_RATE": "nan",
            "REFUND_DESK_POLL_BASE_DELAY_S": "30",
            "REFUND_DESK_POLL_MAX_DELAY_S": "10",
            "REFUND_DESK_POLL_LEASE_S": "20",
            "ANTOM_TIMEOUT_S": "15",
            "REFUND_DESK_POLLER": "sometimes",
        }
    )
    with pytest.raises(ConfigError) as info:
        settings.validate()
    assert info.value.problems == [
        "REFUND_DESK_POLLER must be on or off, got 'sometimes'",
        "REFUND_DESK_POLL_BATCH must be a whole number of refunds, at least 1; got '2.5'",
        "REFUND_DESK_POLL_CONCURRENCY must be a whole number of checks, at least 1; got '0'",
        "REFUND_DESK_POLL_IDLE_S must be a number of seconds, more than 0; got '0'",
        "REFUND_DESK_POLL_MAX_RATE must be a number of requests per second, more than 0; got 'nan'",
        "REFUND_DESK_POLL_MAX_DELAY_S must not be below REFUND_DESK_POLL_BASE_DELAY_S (10 < 30)",
        "REFUND_DESK_POLL_LEASE_S (20) must be more than twice ANTOM_TIMEOUT_S (15): "
        "a poller's lease has to outlast the Antom call it covers",
    ]
