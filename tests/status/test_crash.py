"""Crash tests: the submitting process is SIGKILLed at a named point; a restart settles
the refund exactly once (the simulator holds one refund, the desk the right status)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.status.conftest import desk_payment, reload
from tests.support.fixtures_app import ServerThread
from tests.support.simulator import SimHandle
from tests.support.waiting import wait_until
from web.app import create_app
from web.db import session_scope
from web.models import Payment, Refund, RefundStatus
from web.settings import PollerConfig, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str, simulator: SimHandle) -> Settings:
    return make_settings(database_url=db_url, simulator=simulator)


def crash_submit(
    settings: Settings, payment: Payment, user_id: int, point: str
) -> subprocess.CompletedProcess[str]:
    args = {
        "fault_point": point,
        "database_url": settings.database_url,
        "gateway_url": settings.antom_gateway_url,
        "client_id": settings.antom_client_id,
        "merchant_pem": settings.antom_merchant_private_key,
        "antom_pem": settings.antom_public_keys[0],
        "payment_pk": payment.id,
        "user_id": user_id,
        "amount_text": "12.34",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.status.crash_submit"],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    return proc


@pytest.mark.parametrize("point", ["after_write_ahead", "after_antom_call"])
async def test_restart_settles_a_refund_killed_mid_submit(
    settings: Settings,
    engine: AsyncEngine,
    simulator: SimHandle,
    make_user: Callable[..., Any],
    server_base_url: str,
    _server_socket: Any,
    point: str,
) -> None:
    payment = await desk_payment(engine, simulator, method="ALIPAY_CN")
    agent = await make_user(role="agent", limits={"USD": 100_000})

    proc = crash_submit(settings, payment, agent.id, point)

    assert proc.returncode == -signal.SIGKILL, (proc.stdout, proc.stderr[-2000:])
    async with session_scope(engine) as session:
        [refund] = (await session.exec(select(Refund))).all()
    assert refund.status == RefundStatus.PENDING  # the crash left it written, unanswered
    at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
    assert len(at_antom) == (0 if point == "after_write_ahead" else 1)

    # Restart: the app's start-up reconciliation settles it (no grace: it is old enough).
    restarted = settings.replace(poller_enabled=True, poller=PollerConfig(pending_grace_s=0))
    server = ServerThread(create_app(restarted), _server_socket)
    server.start()
    try:

        async def settled() -> bool:
            return (await reload(engine, Refund, refund.id)).status == RefundStatus.SUCCEEDED

        await wait_until(settled, what="the restarted app to settle the refund")
        # The poller reports "ok" once its first pass (the reconciliation) has finished and
        # its heartbeat is committed, a moment after the refund it settled was written; on
        # a busy machine /healthz can say "starting" or "stalled" in between.
        async with httpx.AsyncClient(base_url=server_base_url) as http:

            async def poller_ok() -> dict[str, Any] | None:
                health: dict[str, Any] = (await http.get("/healthz")).json()
                return health if health.get("poller") == "ok" else None

            await wait_until(poller_ok, what='/healthz to say poller "ok"')
    finally:
        server.stop()

    at_antom = simulator.admin_get(f"refunds?paymentId={payment.payment_id}")
    assert [r["refundRequestId"] for r in at_antom] == [refund.refund_request_id]
    paid = await reload(engine, Payment, payment.id)
    assert (paid.refunded_minor, paid.reserved_minor) == (1_234, 0)
