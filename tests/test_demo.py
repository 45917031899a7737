"""`refund-desk demo` as the README runs it: a real process, real ports, seeded data."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, serving_process
from tests.support.waiting import wait_for
from web.demo import DEMO_PASSWORD, DEMO_PAYMENTS, DEMO_USERS


@pytest.fixture(name="demo")
def fx_demo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTOM_", "DATABASE_URL"))}
    command = [sys.executable, "-m", "web.cli", "demo", "--port", str(port)]
    command += ["--sim-port", str(sim_port), "--data-dir", str(tmp_path / "demo")]
    desk, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    with serving_process(command, env, f"{desk}/healthz"):
        yield desk, sim


def test_demo_serves_seeded_payments_to_a_demo_agent(demo: tuple[str, str]) -> None:
    desk, sim = demo
    with httpx.Client(base_url=desk, timeout=10, follow_redirects=True) as client:
        login = client.get("/login")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', login.text)
        assert token, "the sign-in form carries a CSRF token"
        signed_in = client.post(
            "/login",
            data={"email": DEMO_USERS[0][0], "password": DEMO_PASSWORD, "_csrf_token": token[1]},
        )
        assert signed_in.status_code == 200
        payments = client.get("/payments").text
        for spec in DEMO_PAYMENTS:
            assert spec.order in payments
        refunds = client.get("/refunds").text
        assert "Succeeded" in refunds

        # The chargeback reaches the desk as Antom's dispute notification, and blocks refunds.
        disputed = next(spec for spec in DEMO_PAYMENTS if spec.chargeback)
        listing = client.get("/payments", params={"q": disputed.order}).text
        link = re.search(r'href="(/payments/\d+)"', listing)
        assert link, listing

        def blocked() -> str | None:
            text = client.get(link[1]).text
            return text if "chargeback is open" in text else None

        page = wait_for(blocked, what="the dispute to reach the desk", interval=0.1)
        assert "This refund cannot be made" in page

    # Both sides agree: every payment the desk lists exists at the simulator.
    at_sim = httpx.get(f"{sim}/sim/api/payments", timeout=10).json()
    assert len(at_sim) == len(DEMO_PAYMENTS)
    assert sum(1 for p in at_sim if p.get("disputeOpen")) == 1
