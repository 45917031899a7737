"""`refund-desk demo` as the README runs it: a real process, real ports, seeded data."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, serving_process
from tests.support.waiting import wait_for
from web.demo import DEMO_PASSWORD, DEMO_PAYMENTS, DEMO_USERS


@pytest.fixture(name="demo_run")
def fx_demo_run(tmp_path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """The running demo: the desk's and the simulator's URLs, and its console so far."""
    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTOM_", "DATABASE_URL"))}
    command = [sys.executable, "-m", "web.cli", "demo", "--port", str(port)]
    command += ["--sim-port", str(sim_port), "--data-dir", str(tmp_path / "demo")]
    desk, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    console: list[str] = []
    with serving_process(command, env, f"{desk}/healthz") as process:
        # Read the console as it is written (also keeps the pipe from filling up).
        stdout = process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: console.extend(stdout), daemon=True).start()
        yield desk, sim, console


@pytest.fixture(name="demo")
def fx_demo(demo_run: tuple[str, str, list[str]]) -> tuple[str, str]:
    return demo_run[0], demo_run[1]


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


def test_demo_buyers_come_from_the_order_feed_and_its_key_works(
    demo_run: tuple[str, str, list[str]],
) -> None:
    desk, _, console = demo_run

    def printed_key() -> str | None:
        found = re.search(r"Authorization: Bearer (rdk_\S+)", "".join(console))
        return found[1] if found else None

    key = wait_for(printed_key, what="the demo to print the order feed's key")
    mei = DEMO_PAYMENTS[0]
    with httpx.Client(base_url=desk, timeout=10) as feed:
        answer = feed.post(
            "/api/orders",
            json={**mei.order_record(), "buyerPhone": "+65 6000 0001"},
            headers={"authorization": f"Bearer {key}"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0] == {
        "index": 0,
        "status": "updated",
        "key": mei.payment_request_id,
        "payment": "joined",
    }

    with httpx.Client(base_url=desk, timeout=10, follow_redirects=True) as client:
        login = client.get("/login")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', login.text)
        assert token
        client.post(
            "/login",
            data={"email": DEMO_USERS[0][0], "password": DEMO_PASSWORD, "_csrf_token": token[1]},
        )
        # Any part of an email finds its payment, highlighted; both halves of the orders
        # (sent before and after their payments) were joined.
        for spec in DEMO_PAYMENTS:
            fragment = spec.email.split("@")[0][1:] + "@exa"
            listing = client.get("/payments", params={"q": fragment}).text
            assert f"<mark>{fragment}</mark>" in listing, fragment
            assert spec.order in listing
