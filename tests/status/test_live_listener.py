"""The live listener survives streams coming and going and its connection dropping.

Issue 7 (defect 4): on PostgreSQL, live updates died on an instance once its last
``/events`` stream closed, or once the LISTEN connection dropped, while ``/healthz`` still
said ok. These tests open and close streams, kill the listening connection with
``pg_terminate_backend`` and check that changes still arrive, that open streams re-read
their state after the gap, and that ``/healthz`` shows the listener.

No wall-clock bounds: every wait is for a condition, under a generous deadline that
only fails on a real hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.status.conftest import make_payment, make_refund, refund_result, signed
from tests.status.test_live import EventStream, sse
from tests.support.fixtures_app import login, only_postgres
from tests.support.net import free_port
from web.live import LiveChannels, psycopg_dsn
from web.live_backend import (
    LISTEN_APPLICATION_NAME,
    NOTIFY_APPLICATION_NAME,
    Backoff,
    ResilientPsycopgBackend,
)
from web.models import User
from web.settings import Settings

HANG_S = 60.0  # only a real hang takes this long

# The listener's own connection (its application_name), or any connection whose last
# statement was a LISTEN; only in this test's database (other tests share the server).
TERMINATE_LISTENER = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (application_name = 'refund-desk-listen' OR query ILIKE 'LISTEN%')
"""


async def terminate_listener(settings: Settings) -> int:
    """Kill the desk's LISTEN connection(s) as an outage or a failover would."""
    dsn = psycopg_dsn(settings.database_url)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows = await (await conn.execute(TERMINATE_LISTENER)).fetchall()
    return len(rows)


async def until_event(stream: EventStream, name: str, *, containing: str = "") -> str:
    """The next ``name`` event whose data contains ``containing`` (heartbeats skipped)."""
    deadline = time.monotonic() + HANG_S
    while True:
        data = await stream.until(name, within=max(0.01, deadline - time.monotonic()))
        if containing in data:
            return data


async def healthz_until(
    client: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + HANG_S
    while True:
        response = await client.get("/healthz")
        assert response.status_code == 200, response.text  # a listener outage is no 503
        body: dict[str, Any] = response.json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"/healthz never got there: {body}"
        await asyncio.sleep(0.05)  # polling interval, not synchronisation


async def settle_by_webhook(
    new_client: Callable[[], Awaitable[httpx.AsyncClient]], refund: Any
) -> None:
    sender = await new_client()
    body, headers = signed(refund_result(refund))
    assert (await sender.post("/webhooks/antom", content=body, headers=headers)).status_code == 200


async def test_a_stream_opened_after_the_last_one_closed_still_gets_changes(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    agent: User,
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)
    await login(client, agent)

    for _ in range(3):  # the last subscriber leaves, a new one comes: again and again
        async with sse(client, f"refund={refund.id}") as stream:
            assert await until_event(stream, f"refund-{refund.id}") == "processing"

    async with sse(client, f"refund={refund.id}") as stream:
        assert await until_event(stream, f"refund-{refund.id}") == "processing"
        await settle_by_webhook(new_client, refund)
        await until_event(stream, f"refund-{refund.id}", containing="succeeded")


@only_postgres
async def test_open_streams_resync_and_follow_changes_after_the_listener_is_killed(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    agent: User,
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
    settings: Settings,
) -> None:
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)
    other = await make_refund(engine, payment)
    await login(client, agent)
    watcher = await new_client()
    await login(watcher, agent)

    async with sse(client, f"refund={refund.id}") as stream:
        assert await until_event(stream, f"refund-{refund.id}") == "processing"
        before = (await client.get("/healthz")).json()

        assert await terminate_listener(settings) >= 1

        # After the gap the open stream re-reads its state (the "resync" signal, then a
        # hint for everything watched): nothing changed, so the status comes as it was.
        await stream.until("resync", within=HANG_S)
        assert await until_event(stream, f"refund-{refund.id}") == "processing"
        health = await healthz_until(
            client,
            lambda body: (
                body.get("live") == "ok"
                and body["live_reconnects"] > before.get("live_reconnects", 0)
            ),
        )
        assert health["status"] == "ok"

        # A change published after the reconnect reaches the open stream...
        await settle_by_webhook(new_client, refund)
        await until_event(stream, f"refund-{refund.id}", containing="succeeded")

    # ...and streams still come and go on the reconnected listener.
    async with sse(watcher, f"refund={other.id}") as stream:
        assert await until_event(stream, f"refund-{other.id}") == "processing"
    async with sse(watcher, f"refund={other.id}") as stream:
        assert await until_event(stream, f"refund-{other.id}") == "processing"
        await settle_by_webhook(new_client, other)
        await until_event(stream, f"refund-{other.id}", containing="succeeded")


@only_postgres
async def test_a_change_made_while_the_listener_is_down_reaches_the_page(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    agent: User,
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
    settings: Settings,
) -> None:
    """Whether the NOTIFY is lost in the gap or heard after the reconnect, the page ends
    up with the committed state (the resync snapshot covers what the gap swallowed)."""
    payment = await make_payment(engine)
    refund = await make_refund(engine, payment)
    await login(client, agent)

    async with sse(client, f"refund={refund.id}") as stream:
        assert await until_event(stream, f"refund-{refund.id}") == "processing"
        assert await terminate_listener(settings) >= 1
        await settle_by_webhook(new_client, refund)
        await until_event(stream, f"refund-{refund.id}", containing="succeeded")
        await healthz_until(client, lambda body: body.get("live") == "ok")


# ---------------------------------------------------------------- the backend itself


async def listener_pids(dsn: str, application_name: str = LISTEN_APPLICATION_NAME) -> list[int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (application_name,),
        )
        return [row[0] for row in await cursor.fetchall()]


async def terminate(dsn: str, application_name: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (application_name,),
        )


async def next_event(events: AsyncIterator[tuple[str, bytes]]) -> tuple[str, bytes]:
    async with asyncio.timeout(HANG_S):
        return await anext(events)


@contextlib.asynccontextmanager
async def started(backend: ResilientPsycopgBackend) -> AsyncIterator[ResilientPsycopgBackend]:
    await backend.on_startup()
    try:
        yield backend
    finally:
        await backend.on_shutdown()


FAST = Backoff(initial_s=0.01, max_s=0.1)


@only_postgres
async def test_the_backend_listens_on_one_connection_through_subscribers_and_drops(
    db_url: str,
) -> None:
    dsn = psycopg_dsn(db_url)
    async with started(
        ResilientPsycopgBackend(dsn, resync_message=b"RESYNC", backoff=FAST)
    ) as backend:
        events = backend.stream_events()
        await backend.subscribe(["news"])
        assert backend.health().state == "ok"
        [pid] = await listener_pids(dsn)

        for _ in range(3):  # the plugin unsubscribes when the last subscriber leaves
            await backend.unsubscribe(["news"])
            await backend.subscribe(["news"])
        assert await listener_pids(dsn) == [pid]  # the same connection, never UNLISTENed
        await backend.publish(b"one", ["news"])
        assert await next_event(events) == ("news", b"one")

        await terminate(dsn, LISTEN_APPLICATION_NAME)
        assert await next_event(events) == ("news", b"RESYNC")  # consumers re-read state
        health = backend.health()
        assert (health.state, health.reconnects) == ("ok", 1)
        assert health.last_error == "OperationalError"
        [new_pid] = await listener_pids(dsn)
        assert new_pid != pid
        await backend.publish(b"two", ["news"])
        assert await next_event(events) == ("news", b"two")
    assert backend.health().state == "stopped"
    assert await listener_pids(dsn) == []


@only_postgres
async def test_publishing_reuses_one_connection_and_survives_losing_it(db_url: str) -> None:
    dsn = psycopg_dsn(db_url)
    async with started(ResilientPsycopgBackend(dsn, backoff=FAST)) as backend:
        events = backend.stream_events()
        await backend.subscribe(["news"])
        for n in range(3):
            await backend.publish(f"m{n}".encode(), ["news"])
        [publisher] = await listener_pids(dsn, NOTIFY_APPLICATION_NAME)

        await terminate(dsn, NOTIFY_APPLICATION_NAME)
        await backend.publish(b"after", ["news"])  # reconnects, sends once more

        assert [await next_event(events) for _ in range(4)] == [
            ("news", b"m0"),
            ("news", b"m1"),
            ("news", b"m2"),
            ("news", b"after"),
        ]
        [replacement] = await listener_pids(dsn, NOTIFY_APPLICATION_NAME)
        assert replacement != publisher


@only_postgres
async def test_a_publish_only_process_does_not_listen(db_url: str) -> None:
    """``refund-desk poller`` publishes but never subscribes: nothing queues up there."""
    dsn = psycopg_dsn(db_url)
    async with started(ResilientPsycopgBackend(dsn)) as backend:
        await backend.publish(b"hello", ["news"])
        assert backend.health().state == "idle"
        assert await listener_pids(dsn) == []


async def test_an_unreachable_database_is_reported_and_retried_not_fatal() -> None:
    backend = ResilientPsycopgBackend(
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", backoff=FAST
    )
    plugin = LiveChannels(backend)
    async with started(backend):
        await backend.subscribe(["news"])  # returns after the first failed attempt
        health = backend.health()
        assert (health.state, health.reconnects) == ("reconnecting", 0)
        assert health.last_error == "OperationalError"
        report = plugin.health()
        assert (report["live"], report["live_reconnects"]) == ("reconnecting", 0)
        assert report["live_since"] == health.since.isoformat()
    assert backend.health().state == "stopped"  # shutting down does not wait for a server


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0)
    for attempt, step in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 8.0), (60, 8.0)]:
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1  # jittered
