"""Loopback ports and processes for tests that talk to real servers."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.waiting import DEADLINE_S, wait_for

ROOT = Path(__file__).resolve().parents[2]
# One default TLS context for the tests' own HTTP clients. Each httpx client would build
# its own and load the CA bundle into it (about 20 ms); these talk http:// to loopback.
TLS = ssl.create_default_context()


def bound_socket() -> socket.socket:
    """A socket bound to a free loopback port, to hand to uvicorn (no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _chosen_ports() -> Iterator[int]:
    """Ports for ``free_port``, below the kernel's ephemeral range: no ``bind(0)`` and no
    outgoing connection anywhere is given one, so nothing can take it between the moment
    it is chosen and the moment a server binds it. Each pytest-xdist worker has its own
    slice, started at a random place (another test run may be using the same slices)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    start, stop = max(1024, low - 12_000), low
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = (stop - start) // max(1, workers)
    first = start + (worker % max(1, workers)) * size
    offset = random.randrange(size) if size else 0
    for i in itertools.count():
        yield first + (offset + i) % size if size else 0


_PORTS = _chosen_ports()


def free_port() -> int:
    """A port nothing listens on, for a server in another process or one that comes back
    on the same address (see ``_chosen_ports``)."""
    for _ in range(1_000):
        port = next(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as sock:  # no room below the ephemeral range: any free port
        sock.bind(("127.0.0.1", 0))
        any_port: int = sock.getsockname()[1]
    return any_port


@contextmanager
def serving_process(
    command: list[str], env: Mapping[str, str], health_url: str, *, timeout: float = 2 * DEADLINE_S
) -> Iterator[subprocess.Popen[str]]:
    """Start ``command`` from the project root, wait until ``health_url`` answers 200,
    and stop it with Ctrl-C (SIGINT) at the end, as a person would."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def up() -> bool:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            return httpx.get(health_url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, what=f"{command[:4]} to come up", timeout=timeout, interval=0.05)
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
