"""Loopback ports and processes for tests that talk to real servers."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.waiting import DEADLINE_S, wait_for

ROOT = Path(__file__).resolve().parents[2]


def bound_socket() -> socket.socket:
    """A socket bound to a free loopback port, to hand to uvicorn (no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A port nothing listens on (bound then released), for servers in other processes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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
