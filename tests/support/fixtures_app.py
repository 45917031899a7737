"""App fixtures: settings, a migrated database, a real server, users and signed-in clients.

Loaded for every test by ``tests/conftest.py``. Clients talk real HTTP to a real uvicorn
server on 127.0.0.1 running ``create_app(settings)`` in a thread (or, where a module sets
``in_process``, to the same app in-process), on a real SQLite file (or PostgreSQL, see
``db_url``) migrated with the project's Alembic history.

Fixtures (function scope unless noted)
--------------------------------------
``settings``          Test ``Settings``: fresh migrated SQLite file, APP_ENV=test,
                      ``public_base_url`` = the live server's address, no Antom config.
``make_settings``     ``make_settings(**overrides) -> Settings`` built on the above;
                      ``make_settings(simulator=sim)`` fills the ANTOM_* fields from a
                      ``SimHandle`` (the ``simulator`` fixture). The in-process inquiry
                      poller is off (``poller_enabled=False``, as REFUND_DESK_POLLER=off):
                      a test that needs it asks, ``make_settings(poller_enabled=True)``.
``app``               ``create_app(settings)`` (not started; ``live_server`` starts it).
``live_server``       Base URL (``http://127.0.0.1:PORT``) of uvicorn serving ``app``.
``client``            ``httpx.AsyncClient`` with ``base_url=live_server``, not signed in.
``new_client``        ``await new_client()`` -> another anonymous client (closed for you).
``in_process``        False; a module or conftest whose requests need no socket (no event
                      streams, no notifications from the simulator back to the desk)
                      overrides it to True: clients then call ``app`` through
                      ``httpx.ASGITransport`` with its lifespan running, and no server
                      starts (saves its start and stop in every test).
``engine``            An ``AsyncEngine`` on the test database, for arranging/asserting
                      data from the test (the server has its own engine).
``make_user``         ``await make_user(role="agent", email=None, password=DEFAULT_PASSWORD,
                      name=None, active=True, limits={"USD": 50_000})`` -> ``User``.
``signed_in``         ``client, user = await signed_in(role="lead", **make_user_kwargs)``.
``agent`` / ``agent_client``   An agent and a client signed in as that agent.
``db_url``            Parametrised: the SQLite URL, and (``@pytest.mark.postgres``, needs
                      TEST_DATABASE_URL) a fresh, migrated PostgreSQL database that is
                      dropped afterwards. Use it directly, or run a whole module on both
                      databases by overriding ``settings`` there::

                          @pytest.fixture
                          def settings(make_settings, db_url):
                              return make_settings(database_url=db_url)

                      In such a module, decorate a test that needs one database only with
                      ``@only_sqlite`` or ``@only_postgres`` (importable from here).

Signed-in clients carry the CSRF token as the ``x-csrftoken`` header (what htmx sends),
so ``await agent_client.post("/x", data=...)`` passes CSRF; ``csrf_token_of(client)``
reads it, and popping that header tests refusals. ``login(client, user, password)``
signs any client in. Helpers ``csrf_token_from(html)`` and ``DEFAULT_PASSWORD`` are
importable: ``from tests.support.fixtures_app import login, DEFAULT_PASSWORD``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.net import TLS, bound_socket
from tests.support.waiting import wait_for
from web.app import create_app
from web.db import make_engine, migrate, session_scope
from web.models import User
from web.services.limits import set_limit
from web.services.users import create_user
from web.settings import Settings, normalise_database_url

DEFAULT_PASSWORD = "correct horse battery staple"
TEST_SECRET_KEY = "test-only-key-8c1f9e2d7b6a5043f1e2d3c4b5a69788"
_CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')


# ---------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test session; each test gets a copy (fast)."""
    path = tmp_path_factory.mktemp("db-template") / "template.sqlite3"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    path = tmp_path / "data" / "refund-desk.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def _pg_server_url() -> str:
    url = os.environ["TEST_DATABASE_URL"]
    return url.replace("postgresql+psycopg://", "postgresql://", 1).replace(
        "postgres://", "postgresql://", 1
    )


def _pg_database_url(name: str) -> str:
    base = _pg_server_url().rsplit("/", 1)[0]
    return normalise_database_url(f"{base}/{name}", Path("."))


def create_pg_database(template: str | None = None) -> str:
    """Create a uniquely named database on TEST_DATABASE_URL's server; return its name."""
    name = f"rd_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(_pg_server_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    return name


def drop_pg_database(name: str) -> None:
    with psycopg.connect(_pg_server_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _Copies:
    """Fresh copies of the migrated template, made and dropped on threads of their own:
    the next test's copy is made while this test runs (a copy takes PostgreSQL a few
    hundred milliseconds), and a used one is dropped while the next test runs."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-copy")
        self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-drop")
        self._next = self._maker.submit(create_pg_database, template)
        self._drops: list[Future[None]] = []

    def take(self) -> str:
        name = self._next.result()
        self._next = self._maker.submit(create_pg_database, self._template)
        return name

    def drop_later(self, name: str) -> None:
        self._drops.append(self._dropper.submit(drop_pg_database, name))

    def close(self) -> None:
        """Drop the spare copy, wait for every drop, and report the first that failed."""
        try:
            self.drop_later(self._next.result())
        finally:
            errors = [exc for drop in self._drops if (exc := drop.exception()) is not None]
            self._maker.shutdown()
            self._dropper.shutdown()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    name = create_pg_database()
    try:
        migrate(_pg_database_url(name))
        yield name
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="session")
def _postgres_copies(_postgres_template: str) -> Iterator[_Copies]:
    copies = _Copies(_postgres_template)
    try:
        yield copies
    finally:
        copies.close()


@pytest.fixture
def postgres_url(_postgres_copies: _Copies) -> Iterator[str]:
    """A fresh migrated PostgreSQL database (a copy of the session's template), dropped
    after the test (in the background: by then nothing of the test uses it)."""
    name = _postgres_copies.take()
    try:
        yield _pg_database_url(name)
    finally:
        _postgres_copies.drop_later(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


# A test that needs one database only is parametrised over just that one (nothing is
# generated only to skip itself; CI fails a run in which a PostgreSQL test skipped):
#     @only_sqlite      def test_signature_checks(db_url, ...)
#     @only_postgres    def test_listen_notify_between_instances(db_url, ...)
only_sqlite = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
only_postgres = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


# ---------------------------------------------------------------- settings and app


@pytest.fixture
def _server_socket() -> Iterator[socket.socket]:
    sock = bound_socket()
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def server_base_url(_server_socket: socket.socket) -> str:
    return f"http://127.0.0.1:{_server_socket.getsockname()[1]}"


@pytest.fixture
def make_settings(tmp_path: Path, sqlite_url: str, server_base_url: str) -> Callable[..., Settings]:
    def make(*, simulator: Any = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": sqlite_url,
            "secret_key": TEST_SECRET_KEY,
            "public_base_url": server_base_url,
            "port": int(server_base_url.rsplit(":", 1)[1]),
            "data_dir": tmp_path / "data",
            "environment": "test",
            # No background loop unless a test wants one: it would race the test's own
            # steps and poll for nothing. "Check now" works without it.
            "poller_enabled": False,
        }
        if simulator is not None:
            values.update(
                antom_gateway_url=simulator.base_url,
                antom_client_id=simulator.client_id,
                antom_merchant_private_key=simulator.merchant_private_key_pem,
                antom_public_keys=(simulator.antom_public_key_pem,),
                antom_timeout_s=5.0,
            )
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


class ServerThread:
    """uvicorn serving an ASGI app on an already bound socket, in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        # Open event streams never end by themselves: after 2 s of graceful shut-down
        # uvicorn cancels them, rather than the test waiting out the join below.
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_config=None,
            access_log=False,
            ws="none",
            http="h11",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        server, thread = self.server, self.thread
        wait_for(
            lambda: server.started or not thread.is_alive(),
            what="the app server to start",
            interval=0.005,
        )
        if not server.started:
            raise RuntimeError("the app server failed to start (see the log above)")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_server(
    app: Litestar, _server_socket: socket.socket, server_base_url: str
) -> Iterator[str]:
    server = ServerThread(app, _server_socket)
    server.start()
    try:
        yield server_base_url
    finally:
        server.stop()


@pytest.fixture
def in_process() -> bool:
    """Whether ``client`` and ``new_client`` call the app in-process, through
    ``httpx.ASGITransport`` with the app's lifespan running in the test, rather than over a
    socket to ``live_server``. Off by default; a module or conftest whose requests need no
    socket (no event streams, no notifications back from the simulator, no proxy headers)
    overrides it to return True. A test that asks for ``live_server`` itself gets sockets."""
    return False


@contextlib.asynccontextmanager
async def running_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan (start-up to shut-down) as uvicorn runs it, in a task of its own:
    it is entered and left in one task, as its task groups require, while the fixture
    that uses it is set up and torn down in two."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    ready = asyncio.create_task(started.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # start-up failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def new_client(
    request: pytest.FixtureRequest, in_process: bool, app: Litestar, server_base_url: str
) -> AsyncIterator[Callable[[], Awaitable[httpx.AsyncClient]]]:
    # ``app`` is asked for here, not looked up below: what it depends on (``db_url``)
    # decides how the test is parametrised.
    clients: list[httpx.AsyncClient] = []
    async with contextlib.AsyncExitStack() as stack:
        if in_process and "live_server" not in request.fixturenames:
            await stack.enter_async_context(running_lifespan(app))
            # The same address as a socket would have; app errors become 500 answers.
            transport: httpx.AsyncBaseTransport | None = httpx.ASGITransport(
                app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000)
            )
            base_url = server_base_url
        else:
            transport, base_url = None, request.getfixturevalue("live_server")

        async def make() -> httpx.AsyncClient:
            client = httpx.AsyncClient(
                base_url=base_url, timeout=30.0, verify=TLS, transport=transport
            )
            clients.append(client)
            return client

        try:
            yield make
        finally:
            for client in clients:
                await client.aclose()


@pytest.fixture
async def client(new_client: Callable[[], Awaitable[httpx.AsyncClient]]) -> httpx.AsyncClient:
    return await new_client()


# ---------------------------------------------------------------- users and sign-in


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings.database_url)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def make_user(engine: AsyncEngine) -> Callable[..., Awaitable[User]]:
    numbers = itertools.count(1)

    async def make(
        role: str = "agent",
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
        name: str | None = None,
        active: bool = True,
        limits: dict[str, int] | None = None,
    ) -> User:
        n = next(numbers)
        async with session_scope(engine) as session:
            user = await create_user(
                session,
                email=email or f"{role}{n}@desk.test",
                name=name or f"{role.capitalize()} {n}",
                role=role,
                password=password,
            )
            user.active = active
            session.add(user)
            for currency, max_minor in (limits or {}).items():
                await set_limit(
                    session,
                    user=user,
                    currency=currency,
                    max_single_minor=max_minor,
                    max_day_minor=None,
                )
        return user

    return make


def csrf_token_from(html: str) -> str:
    match = _CSRF_INPUT.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def csrf_token_of(client: httpx.AsyncClient) -> str:
    return client.headers["x-csrftoken"]


async def login(
    client: httpx.AsyncClient, user: User | str, password: str = DEFAULT_PASSWORD
) -> str:
    """Sign ``client`` in through the real form; the CSRF token becomes a default header."""
    page = await client.get("/login")
    assert page.status_code == 200, page.text
    token = csrf_token_from(page.text)
    email = user if isinstance(user, str) else user.email
    response = await client.post(
        "/login", data={"_csrf_token": token, "email": email, "password": password}
    )
    assert response.status_code == 303, f"sign-in failed ({response.status_code})"
    client.headers["x-csrftoken"] = token
    return token


@pytest.fixture
def signed_in(
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
    make_user: Callable[..., Awaitable[User]],
) -> Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]:
    async def sign_in_as(role: str = "agent", **user_kwargs: Any) -> tuple[httpx.AsyncClient, User]:
        password = user_kwargs.setdefault("password", DEFAULT_PASSWORD)
        user = await make_user(role=role, **user_kwargs)
        client = await new_client()
        await login(client, user, password)
        return client, user

    return sign_in_as


@pytest.fixture
async def agent(make_user: Callable[..., Awaitable[User]]) -> User:
    return await make_user(role="agent")


@pytest.fixture
async def agent_client(client: httpx.AsyncClient, agent: User) -> httpx.AsyncClient:
    await login(client, agent)
    return client
