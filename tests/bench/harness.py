"""Pieces every benchmark script shares: the simulator in its own process, and the
min / median / max summary of repeated runs (so the machine's noise stays visible).

Benchmarks are scripts, not tests: run them one at a time on a quiet machine.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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


# ---------------------------------------------------------------- HTTP benchmarks

BENCH_DIR = Path(__file__).resolve().parent
PG_SERVER = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def libpq(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql://", url)


@contextmanager
def scratch_database(server_url: str = PG_SERVER) -> Iterator[str]:
    """A fresh PostgreSQL database next to ``server_url`` (migrated), dropped afterwards;
    yields its SQLAlchemy URL."""
    import uuid

    import psycopg

    from web.db import migrate

    server = libpq(server_url)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    url = server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every descendant alive now (uvicorn workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            f = stats[current]
            total += (int(f[11]) + int(f[12])) / ticks  # utime, stime
        todo += children.get(current, [])
    return total


class Server:
    """``tests/bench/bench_app.py`` under uvicorn in its own process, started like
    ``refund-desk serve`` (workers, no access log, graceful-shutdown timeout)."""

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ) | env | {"PORT": str(self.port)}
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        code = (
            "import uvicorn; uvicorn.run('tests.bench.bench_app:app', host='127.0.0.1', "
            f"port={self.port}, workers={self.workers}, access_log=False, "
            "log_level='warning', timeout_graceful_shutdown=5)"
        )
        # The server logs as in production (to a file here, out of the report's way).
        self.log = (Path(tempfile.gettempdir()) / f"bench-server-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=self.env,
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        up = 0

        def ready() -> bool:
            nonlocal up
            assert self.process is not None and self.process.poll() is None, "server died"
            try:
                httpx.get(f"{self.base}/healthz", timeout=2)
            except httpx.HTTPError:
                return False
            up += 1
            return up >= 3 * self.workers  # every worker has answered, most likely

        wait_for(ready, what="the bench server to come up", interval=0.2, timeout=120)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    script: Path,
    args: Sequence[str] = (),
    *,
    connections: int = 50,
    threads: int = 2,
    duration_s: float = 600,
) -> WrkResult:
    """Run wrk with a Lua script whose ``done`` prints ``WRK <requests> <us> <non2xx>
    <errors> <p50 us> <p99 us>``; threads stop by themselves or after ``duration_s``."""
    with tempfile.TemporaryDirectory() as tmp:
        once = len(args) >= 3 and args[2] == "once"
        marker = f"{tmp}/done-"
        command = [
            "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration_s)}s",
            "--timeout", "60s", "-s", str(script), url, "--", *args, *([marker] if once else []),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        if once:
            # wrk waits out -d even when every thread has stopped: interrupt it then.
            while process.poll() is None:
                if all(Path(f"{marker}{t}").exists() for t in range(threads)):
                    process.send_signal(signal.SIGINT)
                    break
                time.sleep(0.005)
        out, _ = process.communicate()
        assert process.returncode == 0, out
    line = next(line for line in out.splitlines() if line.startswith("WRK "))
    n, us, bad, errors, p50, p99 = (float(x) for x in line.split()[1:])
    return WrkResult(int(n), us / 1e6, int(bad), int(errors), p50 / 1000, p99 / 1000)


def summary(label: str, values: Sequence[float], unit: str = "") -> str:
    """``label  median (min … max) unit  [N runs]``."""
    return f"{label:<44} {spread(values)}{unit}  [{len(values)} run(s)]"
