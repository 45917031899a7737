"""Pieces every benchmark script shares: the simulator in its own process, and the
min / median / max summary of repeated runs (so the machine's noise stays visible).

Benchmarks are scripts, not tests: run them one at a time on a quiet machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from tests.support.net import free_port  # noqa: E402
from tests.support.simulator import SimHandle  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402
from web.antom.keys import load_private_key, public_key_pem  # noqa: E402
from web.db import make_engine, migrate  # noqa: E402
from web.settings import normalise_database_url  # noqa: E402
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


@asynccontextmanager
async def desk_with_simulator() -> AsyncIterator[tuple[str, AsyncEngine, SimHandle]]:
    """(database URL, engine, simulator) for the in-process benches: ``DATABASE_URL`` (a
    fresh PostgreSQL database) or a temporary SQLite file, migrated, and the simulator in
    its own process with its clock sped up."""
    with tempfile.TemporaryDirectory() as tmp:
        url = normalise_database_url(
            os.environ.get("DATABASE_URL") or f"sqlite:///{tmp}/bench.sqlite3", Path(tmp)
        )
        await asyncio.to_thread(migrate, url)
        engine = make_engine(url)
        try:
            with simulator_process(Path(tmp) / "sim", ANTOM_SIM_TIME_SCALE="0.001") as sim:
                yield url, engine, sim
        finally:
            await engine.dispose()


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


# ---------------------------------------------------------------- profiles

# Where a sampled stack is spent, by the first frame from the leaf up that belongs to one
# of these (so Babel under web/antom/money.py counts as desk code, a psycopg wait under
# an ORM call as the database). Order matters only for frames that match several.
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database (SQLAlchemy, driver)", ("/sqlalchemy/", "/sqlmodel/", "/psycopg", "/aiosqlite/",
                                       "/greenlet/", "sqlite3")),
    ("templates (Jinja2)", ("/jinja2/", "/markupsafe/", ".html")),
    ("signatures (RSA)", ("/cryptography/",)),
    ("desk code (web/)", ("/web/",)),
    ("framework (Litestar, uvicorn, h11)", ("/litestar/", "/uvicorn/", "/h11/", "/httptools/",
                                             "/msgspec/", "/anyio/", "/prometheus_client/",
                                             "/multipart/")),
    ("logging", ("/logging/",)),
)  # fmt: skip
IDLE = "idle (event loop waiting on sockets: the database, the client)"
OTHER = "other (asyncio, stdlib)"
_FRAME = re.compile(r"^(?P<name>.*) \((?P<path>.*?):\d+\)$")


def bucket_of(stack: Sequence[str]) -> str:
    """The bucket of one py-spy stack (root first, as ``name (path:line)`` frames)."""
    # py-spy names files relative to their sys.path entry ("litestar/app.py", "web/db.py").
    paths = ["/" + m.group("path").lstrip("/") for f in stack if (m := _FRAME.match(f))]
    leaf = stack[-1] if stack else ""
    if "select" in leaf and "selectors.py" in leaf:
        return IDLE
    for path in reversed(paths):
        for name, marks in BUCKETS:
            if any(mark in path for mark in marks):
                return name
    return OTHER


def breakdown(raw: Path, within: str | None = None) -> tuple[int, list[tuple[str, float]]]:
    """(samples, [(bucket, share)]) of a ``py-spy record -f raw`` file, main thread only
    (the logging thread's idle wait is not request time); ``within``: only stacks through
    a frame with this text (``Litestar.__call__``: the app's side of an in-process client).
    """
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text:
            continue
        stack = stack_text.split(";")
        if within is not None and within not in stack_text:
            continue
        if within is None and any("Thread.run" in f or "Thread._bootstrap" in f for f in stack):
            continue
        total += int(n)
        name = bucket_of(stack)
        counts[name] = counts.get(name, 0) + int(n)
    shares = sorted(((k, v / total) for k, v in counts.items()), key=lambda kv: -kv[1])
    return total, shares


def hottest_desk_frames(raw: Path, top: int = 8) -> list[tuple[str, float]]:
    """The desk's own functions (web/) by inclusive share of main-thread samples."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or "Thread.run" in stack_text:
            continue
        total += int(n)
        seen = set()
        for frame in stack_text.split(";"):
            m = _FRAME.match(frame)
            path = "/" + m.group("path").lstrip("/") if m else ""
            if m and "/web/" in path:
                key = f"{m.group('name')} ({path.split('/web/', 1)[1]})"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] = inclusive.get(key, 0) + int(n)
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return [(k, v / total) for k, v in ranked]


@contextmanager
def profiled(pid: int | None, out: Path | None, *, children: bool = False) -> Iterator[None]:
    """``py-spy record`` of process ``pid`` (``children``: and its child processes, the
    server's uvicorn workers; not a script's simulator) while the block runs, into
    ``out`` as raw stacks; nothing when ``out`` is None. py-spy writes its file
    when interrupted, which is how the block's end stops it."""
    if pid is None or out is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), *(["--subprocesses"] if children else []),
         "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # py-spy's attach, before the measured load begins (a bench, not a test)
        assert process.poll() is None, f"py-spy stopped: {process.communicate()[1]}"
        yield
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=120)
        assert out.exists(), f"py-spy wrote no profile: {err}"


def print_profile(label: str, raw: Path, within: str | None = None) -> None:
    samples, shares = breakdown(raw, within)
    print(f"\nprofile of {label} ({samples} samples, {raw}):")
    for name, share in shares:
        print(f"  {share:6.1%}  {name}")
    print("  hottest desk functions (inclusive):")
    for name, share in hottest_desk_frames(raw):
        print(f"  {share:6.1%}  {name}")
