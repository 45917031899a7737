"""Pieces every benchmark script shares: the simulator in its own process, and the
min / median / max summary of repeated runs (so the machine's noise stays visible).

Benchmarks are scripts, not tests: run them one at a time on a quiet machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402
from tests.support.simulator import SimHandle  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402
from web.antom.keys import load_private_key, public_key_pem  # noqa: E402
from web.sim.cli import MERCHANT_PRIVATE, resolve_config  # noqa: E402


@contextmanager
def simulator_process(data_dir: Path, **env: str) -> Iterator[SimHandle]:
    """``refund-desk sim`` in its own OS process (its own GIL, as in production, where
    Antom is somewhere else entirely), with a handle like the in-process one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ) | env
    config, _notes = resolve_config(data_dir, environment)  # writes the key pairs once
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (data_dir / "sim.log").open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "web.cli",
                "sim",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        http = httpx.Client(base_url=base, timeout=60)

        def up() -> bool:
            assert process.poll() is None, (data_dir / "sim.log").read_text()
            try:
                return http.get("/sim/api/config").status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, what="the simulator process to come up", interval=0.1)
            yield SimHandle(
                base_url=base,
                client_id=config.client_id,
                merchant_private_key_pem=(data_dir / MERCHANT_PRIVATE).read_text(),
                antom_public_key_pem=public_key_pem(
                    load_private_key(config.antom_private_key_pem).public_key()
                ),
                db_path=config.db_path,
                config=config,
                http=http,
            )
        finally:
            http.close()
            process.terminate()
            process.wait(timeout=30)


def spread(values: Sequence[float]) -> str:
    """``median (min … max)`` of repeated measurements."""
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.median(values):.3g} ({min(values):.3g} … {max(values):.3g})"
