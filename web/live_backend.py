"""A PostgreSQL channels backend that keeps listening, whatever happens to its connection.

Litestar's ``PsycoPgChannelsBackend`` LISTENs when the first subscriber of a channel
arrives and UNLISTENs when the last one leaves, and a listener error is handed to the
plugin's one consumer task, which dies with it: after the LISTEN connection drops
(failover, restart, ``pg_terminate_backend``, an idle-killing proxy) an instance hears
nothing again while ``/healthz`` says ok. ``ResilientPsycopgBackend`` instead:

* holds ONE long-lived LISTEN connection (``application_name`` ``refund-desk-listen``),
  opened at the first subscription and kept however many subscribers come and go
  (channels are never UNLISTENed: the plugin drops messages nobody subscribes to);
* notices a dropped connection (psycopg raises at once when the server closes it; a
  ``SELECT 1`` after a quiet spell catches a silently dead one), reconnects with capped
  exponential backoff and jitter, and LISTENs again;
* after every reconnect, puts ``resync_message`` on each channel, so consumers re-read
  state from the database: whatever was NOTIFYed during the gap is lost for good;
* publishes through one persistent connection (``refund-desk-notify``), with
  ``pg_notify``, reconnecting once when that connection turns out to be dead;
* reports its health (``health()``): state, since when, reconnects so far.

``stream_events`` never raises, so the plugin's consumer task lives as long as the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import psycopg
from litestar.channels.backends.base import ChannelsBackend
from psycopg import sql
from psycopg.rows import TupleRow

log = logging.getLogger(__name__)

LISTEN_APPLICATION_NAME = "refund-desk-listen"
NOTIFY_APPLICATION_NAME = "refund-desk-notify"

ListenerState = Literal["idle", "connecting", "ok", "reconnecting", "stopped"]
Connection = psycopg.AsyncConnection[TupleRow]


@dataclass(frozen=True, slots=True)
class ListenerHealth:
    """``idle``: nothing subscribed yet (a publish-only process); ``connecting``: first
    attempt under way; ``ok``: listening; ``reconnecting``: the connection is down and
    being retried; ``stopped``: after shutdown."""

    state: ListenerState
    since: datetime
    reconnects: int = 0
    last_error: str | None = None  # an exception type name only: messages may hold a DSN


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with "equal jitter": instances that lost the same
    server do not come back in lockstep, and none waits less than half its step."""

    initial_s: float = 0.25
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        step = min(self.max_s, self.initial_s * 2.0 ** min(attempt, 32))
        return step / 2 + random.uniform(0, step / 2)


class ResilientPsycopgBackend(ChannelsBackend):
    def __init__(
        self,
        dsn: str,
        *,
        resync_message: bytes | None = None,
        backoff: Backoff | None = None,
        poll_s: float = 1.0,
        ping_after_s: float = 10.0,
        timeout_s: float = 5.0,
        max_queued: int = 10_000,
    ) -> None:
        """``poll_s``: how often the listener looks up from waiting (to LISTEN channels
        subscribed since); ``ping_after_s``: quiet time after which it checks the
        connection; ``timeout_s``: bound on connecting, the check and each publish."""
        self._dsn = dsn
        self._resync = resync_message
        self._backoff = backoff or Backoff()
        self._poll_s = poll_s
        self._ping_after_s = ping_after_s
        self._timeout_s = timeout_s
        self._max_queued = max_queued
        self._wanted: set[str] = set()
        self._listening: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None
        self._events: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._publisher: Connection | None = None
        self._publish_lock = asyncio.Lock()
        self._health = ListenerHealth("idle", _now())

    # ------------------------------------------------------------ ChannelsBackend

    async def on_startup(self) -> None:
        # Fresh loop-bound objects: an app may be started more than once (tests).
        self._events = asyncio.Queue()
        self._publish_lock = asyncio.Lock()
        self._wanted, self._listening = set(), set()
        self._health = ListenerHealth("idle", _now())

    async def on_shutdown(self) -> None:
        if self._listener is not None:
            # Cancelling may interrupt psycopg mid-wait and break the connection; it is
            # being closed anyway (the task's finally does it).
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        async with self._publish_lock:
            await self._drop_publisher()
        self._set_health("stopped")

    async def subscribe(self, channels: Iterable[str]) -> None:
        new = set(channels) - self._wanted
        if not new:
            return
        self._wanted |= new
        if self._listener is None:
            loop = asyncio.get_running_loop()
            self._first_attempt = loop.create_future()
            self._listener = loop.create_task(self._run(), name="refund-desk-listen")
            # Normally the app starts serving with its listener up. A failed first attempt
            # does not fail the start: the loop keeps retrying and /healthz shows it.
            await asyncio.shield(self._first_attempt)
        # Otherwise the running listener LISTENs the new channels at its next turn.

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        # Never UNLISTEN: the connection keeps listening for the next subscriber, and the
        # plugin drops messages on channels nobody is subscribed to.
        return

    async def stream_events(self) -> AsyncGenerator[tuple[str, bytes], None]:
        while True:
            yield await self._events.get()

    async def get_history(self, channel: str, limit: int | None = None) -> list[bytes]:
        raise NotImplementedError("LISTEN/NOTIFY keeps no history")

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        """NOTIFY ``channels``; on a dead connection, reconnect and send once more (a
        message may then arrive twice; consumers must treat messages as idempotent)."""
        targets, payload = list(channels), data.decode()
        async with self._publish_lock:
            for attempt in (1, 2):
                try:
                    await self._notify(targets, payload)
                    return
                except asyncio.CancelledError:
                    # Interrupted mid-statement, the connection's state is unknown.
                    await self._drop_publisher()
                    raise
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    conn = self._publisher
                    dead = conn is None or conn.closed or conn.broken
                    if not (dead or isinstance(exc, TimeoutError)):
                        raise  # e.g. the payload was refused: another connection won't help
                    await self._drop_publisher()
                    if attempt == 2:
                        raise
                    log.warning("live publish connection lost (%s); reconnecting", _name(exc))

    # ------------------------------------------------------------ health

    def health(self) -> ListenerHealth:
        return self._health

    def _set_health(self, state: ListenerState, error: BaseException | None = None) -> None:
        if state != self._health.state:
            self._health = replace(self._health, state=state, since=_now())
        if error is not None:
            self._health = replace(self._health, last_error=_name(error))

    # ------------------------------------------------------------ the listener

    async def _run(self) -> None:
        failures = 0  # consecutive failed or lost connections
        connected_before = False
        while True:
            conn: Connection | None = None
            try:
                gap = connected_before or failures > 0
                self._set_health("reconnecting" if gap else "connecting")
                conn = await self._connect(LISTEN_APPLICATION_NAME)
                self._listening = set()
                await self._listen_wanted(conn)
                if gap:
                    self._health = replace(self._health, reconnects=self._health.reconnects + 1)
                    log.info("live listener reconnected after %d failed attempt(s)", failures)
                failures, connected_before = 0, True
                self._set_health("ok")
                self._resolve_first_attempt()
                if gap:
                    # Whatever was NOTIFYed while we were away is lost: consumers re-read.
                    self._put_resync()
                await self._relay(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure means: reconnect (never leave the loop)
                failures += 1
                self._set_health("reconnecting", exc)
                self._resolve_first_attempt()
                log.warning("live listener connection failed (%s); reconnecting", _name(exc))
            finally:
                if conn is not None:
                    await _close_quietly(conn)
            await asyncio.sleep(self._backoff.delay(failures - 1))

    async def _relay(self, conn: Connection) -> None:
        """Queue notifications until the connection fails (raises; never returns)."""
        quiet_since = time.monotonic()
        while True:
            async for notify in conn.notifies(timeout=self._poll_s):
                quiet_since = time.monotonic()
                self._put(notify.channel, notify.payload.encode())
            if self._wanted - self._listening:
                await self._listen_wanted(conn)
            if time.monotonic() - quiet_since >= self._ping_after_s:
                # A connection whose server vanished without a FIN (a partition, a dead
                # proxy) looks just like a quiet one; only a round trip tells them apart.
                async with asyncio.timeout(self._timeout_s):
                    await conn.execute("SELECT 1")
                quiet_since = time.monotonic()

    async def _listen_wanted(self, conn: Connection) -> None:
        for channel in sorted(self._wanted - self._listening):
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._listening.add(channel)

    def _put_resync(self) -> None:
        if self._resync is not None:
            for channel in sorted(self._listening):
                self._put(channel, self._resync)

    def _put(self, channel: str, data: bytes) -> None:
        if self._events.qsize() >= self._max_queued:
            # Nobody is draining the queue fast enough: keep the newest news.
            self._events.get_nowait()
        self._events.put_nowait((channel, data))

    def _resolve_first_attempt(self) -> None:
        if self._first_attempt is not None and not self._first_attempt.done():
            self._first_attempt.set_result(None)

    # ------------------------------------------------------------ connections

    async def _connect(self, application_name: str) -> Connection:
        async with asyncio.timeout(self._timeout_s):
            return await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, application_name=application_name
            )

    async def _notify(self, channels: list[str], payload: str) -> None:
        if self._publisher is None or self._publisher.closed:
            self._publisher = await self._connect(NOTIFY_APPLICATION_NAME)
        async with asyncio.timeout(self._timeout_s):
            for channel in channels:
                await self._publisher.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    async def _drop_publisher(self) -> None:
        conn, self._publisher = self._publisher, None
        if conn is not None:
            await _close_quietly(conn)


async def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


def _name(exc: BaseException) -> str:
    return type(exc).__name__


def _now() -> datetime:
    return datetime.now(UTC)
