"""A real simulator for tests: uvicorn on 127.0.0.1 in a background thread."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from tests.support import keys
from tests.support.net import TLS, bound_socket
from tests.support.waiting import DEADLINE_S, INTERVAL_S, wait_for
from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.sim.app import create_sim_app
from web.sim.config import SimConfig

T = TypeVar("T")

TEST_CLIENT_ID = "TEST_SIM_CLIENT"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass
class SimHandle:
    base_url: str  # "http://127.0.0.1:PORT" (gateway base URL for the client)
    client_id: str
    merchant_private_key_pem: str  # the merchant key the app signs with
    antom_public_key_pem: str  # the simulator's public key the app verifies with
    db_path: Path
    config: SimConfig
    http: httpx.Client = field(repr=False)

    def antom_client(self, **options: Any) -> AntomClient:
        """The desk's Antom client, pointed at this simulator with its keys; ``options``
        (``timeout``, ``http``, ...) go to ``AntomClient`` as given."""
        return AntomClient(
            gateway_url=self.base_url,
            client_id=self.client_id,
            merchant_private_key=load_private_key(self.merchant_private_key_pem),
            antom_public_keys=[load_public_key(self.antom_public_key_pem)],
            **options,
        )

    def create_payment(
        self,
        *,
        method: str = "ALIPAY_CN",
        currency: str = "USD",
        amount_minor: int = 10000,
        captured: bool = True,
        paid_at: datetime | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Create a successful payment through the admin API; snake_case extras are accepted
        (``buyer_email="a@b"`` → ``buyerEmail``)."""
        body: dict[str, Any] = {
            "method": method,
            "currency": currency,
            "amountMinor": amount_minor,
            "captured": captured,
            **{_camel(k): v for k, v in extra.items()},
        }
        if paid_at is not None:
            body["paidAt"] = paid_at.isoformat()
        result: dict[str, Any] = self.admin_post("payments", body)
        return result

    def admin_get(self, path: str) -> Any:
        response = self.http.get(f"/sim/api/{path.lstrip('/')}")
        response.raise_for_status()
        return response.json()

    def admin_post(self, path: str, json: Any = None) -> Any:
        response = self.http.post(f"/sim/api/{path.lstrip('/')}", json=json)
        response.raise_for_status()
        return response.json()

    # Extras beyond the shared interface.

    def refund(self, refund_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.admin_get(f"refunds/{refund_id}")
        return result

    def settle(self, refund_id: str, outcome: str = "SUCCESS") -> dict[str, Any]:
        result: dict[str, Any] = self.admin_post(
            f"refunds/{refund_id}/settle", {"outcome": outcome}
        )
        return result

    def set_faults(self, **rates: Any) -> dict[str, Any]:
        """``set_faults(async_fail=0.5, rate_limit_per_s=10, rate_limit_burst=5)``."""
        names = {"rate_limit_per_s": "rateLimitPerSecond"}
        body = {names.get(k, _camel(k)): v for k, v in rates.items()}
        result: dict[str, Any] = self.admin_post("faults", body)
        return result

    def notifications(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin_get("notifications")
        return result

    def settlement_csv(self) -> str:
        response = self.http.get("/sim/settlement.csv")
        response.raise_for_status()
        return response.text

    def settlement_rows(self) -> list[dict[str, str]]:
        """The settlement report's detail rows (its ``<END>`` line left out)."""
        lines = [line for line in self.settlement_csv().splitlines() if line != "<END>"]
        return list(csv.DictReader(lines))

    def wait_for(
        self,
        probe: Callable[[], T | None],
        *,
        what: str = "the condition",
        timeout: float = DEADLINE_S,
        interval: float = INTERVAL_S,
    ) -> T:
        """Poll ``probe`` until it returns something truthy (``tests.support.waiting``)."""
        return wait_for(probe, what=what, timeout=timeout, interval=interval)


@contextmanager
def serve(app: Any, *, graceful_s: float = 2.0) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread; yields its base URL; stops cleanly."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=int(max(1, graceful_s)),
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: server.started or not thread.is_alive(), what="uvicorn to start", interval=0.005
        )
        if not server.started:
            raise RuntimeError("uvicorn did not start (see the log above)")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def make_config(data_dir: Path, **overrides: Any) -> SimConfig:
    values: dict[str, Any] = {
        "client_id": TEST_CLIENT_ID,
        "antom_private_key_pem": keys.ANTOM_PRIVATE_PEM,
        "merchant_public_key_pem": keys.MERCHANT_PUBLIC_PEM,
        "db_path": data_dir / "sim.sqlite3",
        # Fast by default: async refunds settle in ~60 ms, retries run in seconds.
        "time_scale": 0.001,
        "hang_s": 3.0,
    }
    values.update(overrides)
    return SimConfig(**values)


@contextmanager
def running_simulator(data_dir: Path, **config: Any) -> Iterator[SimHandle]:
    """A real simulator on a free port. ``config`` overrides any ``SimConfig`` field."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # The merchant private key is the client's, not the simulator's: not a SimConfig field.
    merchant_private = config.pop("merchant_private_key_pem", None) or keys.MERCHANT_PRIVATE_PEM
    sim_config = make_config(data_dir, **config)
    antom_public = keys.ANTOM_PUBLIC_PEM
    if sim_config.antom_private_key_pem != keys.ANTOM_PRIVATE_PEM:
        from web.antom.keys import load_private_key, public_key_pem

        antom_public = public_key_pem(
            load_private_key(sim_config.antom_private_key_pem).public_key()
        )
    with (
        serve(create_sim_app(sim_config)) as base_url,
        httpx.Client(base_url=base_url, timeout=10, verify=TLS) as http,
    ):
        yield SimHandle(
            base_url=base_url,
            client_id=sim_config.client_id,
            merchant_private_key_pem=merchant_private,
            antom_public_key_pem=antom_public,
            db_path=sim_config.db_path,
            config=sim_config,
            http=http,
        )
