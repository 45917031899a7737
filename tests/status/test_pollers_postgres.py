"""Two ``refund-desk poller`` processes on one PostgreSQL database share the work safely."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.status.conftest import desk_payment, make_refund
from tests.support.simulator import SimHandle
from tests.support.waiting import wait_until
from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.antom.messages import RefundRequest
from web.antom.money import Money
from web.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHECK = re.compile(r"poller (\S+) inquired refund=(\d+) .* t0=([\d.]+) t1=([\d.]+)")
# Checks of 8 refunds by two pollers before the overlap test means much.
ENOUGH_CHECKS = 60


@pytest.fixture
def settings(make_settings: Callable[..., Settings], postgres_url: str) -> Settings:
    return make_settings(database_url=postgres_url)


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    return {"time_scale": 1.0}  # refunds stay PROCESSING for the whole test


def start_poller(settings: Settings, simulator: SimHandle, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DATABASE_URL": settings.database_url,
        "APP_ENV": "test",
        "PUBLIC_BASE_URL": settings.public_base_url,
        "ANTOM_GATEWAY_URL": simulator.base_url,
        "ANTOM_CLIENT_ID": simulator.client_id,
        "ANTOM_MERCHANT_PRIVATE_KEY": simulator.merchant_private_key_pem,
        "ANTOM_PUBLIC_KEY": simulator.antom_public_key_pem,
        # Every refund is due again the moment it was checked: maximum contention.
        "REFUND_DESK_POLL_BASE_DELAY_S": "0",
        "REFUND_DESK_POLL_MAX_DELAY_S": "0",
        "REFUND_DESK_POLL_IDLE_S": "0.02",
        "REFUND_DESK_POLL_BATCH": "5",
        "REFUND_DESK_LOG_LEVEL": "debug",  # the per-inquiry lines read below
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("refund-desk")), "poller"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )


@pytest.mark.postgres
async def test_two_poller_processes_never_check_one_refund_at_once(
    make_settings: Callable[..., Settings],
    postgres_url: str,
    engine: AsyncEngine,
    simulator: SimHandle,
    tmp_path: Path,
) -> None:
    settings = make_settings(database_url=postgres_url, simulator=simulator)
    antom = AntomClient(
        gateway_url=simulator.base_url,
        client_id=simulator.client_id,
        merchant_private_key=load_private_key(simulator.merchant_private_key_pem),
        antom_public_keys=[load_public_key(simulator.antom_public_key_pem)],
    )
    payment = await desk_payment(engine, simulator, method="GCASH", amount_minor=1_000_000)
    refunds = []
    for _ in range(8):
        refund = await make_refund(engine, payment, amount_minor=100)
        answer = await antom.refund(
            RefundRequest(refund.refund_request_id, payment.payment_id, Money(100, "USD"))
        )
        assert answer.result_code == "REFUND_IN_PROCESS"
        refunds.append(refund)
    await antom.aclose()

    logs = [tmp_path / "poller-a.log", tmp_path / "poller-b.log"]
    procs = [start_poller(settings, simulator, log) for log in logs]
    try:
        # Start-up takes seconds on a busy machine: wait until both are at work, then
        # until they have contended for long enough to mean something (not a fixed time:
        # a loaded machine gets through fewer checks a second). A poller that exits ends
        # the wait at once, with its log.
        def running() -> None:
            for proc, log in zip(procs, logs, strict=True):
                assert proc.poll() is None, log.read_text()[-3000:]

        def at_work() -> bool:
            running()
            return all("inquired" in log.read_text() for log in logs)

        def contended() -> bool:
            running()
            return sum(len(CHECK.findall(log.read_text())) for log in logs) >= ENOUGH_CHECKS

        await wait_until(at_work, what="both pollers to start checking", interval=0.1)
        await wait_until(contended, what=f"{ENOUGH_CHECKS} checks by the pollers", interval=0.1)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=20)

    windows: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    owners: set[str] = set()
    for log in logs:
        for match in CHECK.finditer(log.read_text()):
            owner, pk, t0, t1 = match.groups()
            owners.add(owner)
            windows[int(pk)].append((float(t0), float(t1), owner))
    assert len(owners) == 2, [log.read_text()[-3000:] for log in logs]
    assert set(windows) == {r.id for r in refunds}
    assert sum(len(w) for w in windows.values()) >= ENOUGH_CHECKS
    for pk, spans in windows.items():
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            assert start >= end, f"refund {pk} checked by {a} and {b} at the same time"
    for proc in procs:
        assert proc.returncode == 0
