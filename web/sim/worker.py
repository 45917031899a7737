"""The simulator's clock-driven work: settle async refunds, reverse doomed ones, deliver
notifications with Antom's retry schedule (sandbox notifications: one attempt, as Antom's
sandbox). Everything pending lives in the database, so a restarted simulator carries on
where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import Connection

from web.antom import signing
from web.antom.keys import load_private_key
from web.sim import db
from web.sim.config import SimConfig
from web.sim.gateway import REFUND_PROCESSING, REFUND_SUCCESS, reverse_refund, settle_refund

log = logging.getLogger("web.sim")

MAX_IDLE_S = 1.0


def time_header(now: float) -> str:
    """ISO-8601 with an explicit offset, the form Antom's own examples show."""
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def notify_uri(url: str) -> str:
    """What a notification is signed over: the receiver's path and query, host excluded."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@functools.lru_cache(maxsize=8)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    # Loading validates the RSA key, which costs ~0.1 s; restarts reuse the parsed key.
    return load_private_key(pem, "simulator private key")


class Signer:
    """Signs as Antom: responses and notifications, with the simulator's private key."""

    def __init__(self, config: SimConfig) -> None:
        self._key = _private_key(config.antom_private_key_pem)
        self.client_id = config.client_id

    def headers(
        self, *, uri: str, client_id: str, time_value: str, body: bytes, kind: str
    ) -> dict[str, str]:
        value = signing.sign(self._key, uri=uri, client_id=client_id, time=time_value, body=body)
        return {
            "client-id": client_id,
            kind: time_value,
            "signature": signing.signature_header(value),
        }


def is_ack(status: int, content: bytes) -> bool:
    """The fixed acknowledgement: resultCode SUCCESS and resultStatus S (message not compared)."""
    if status != 200:
        return False
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return False
    res = body.get("result") if isinstance(body, dict) else None
    return (
        isinstance(res, dict)
        and res.get("resultCode") == "SUCCESS"
        and res.get("resultStatus") == "S"
    )


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    url: str
    body: str


def run_timers(conn: Connection, config: SimConfig, now: float) -> tuple[list[Due], float | None]:
    """Settle and reverse what is due, then claim due notifications; also the next wake time."""
    r = db.refunds.c
    for (refund_id,) in conn.execute(
        sa.select(r.refund_id).where(r.status == REFUND_PROCESSING, r.settle_at <= now)
    ):
        settle_refund(conn, config, refund_id, None, now)
    for (refund_id,) in conn.execute(
        sa.select(r.refund_id).where(
            r.status == REFUND_SUCCESS, r.reverse_at <= now, r.reversed_at.is_(None)
        )
    ):
        reverse_refund(conn, refund_id, now)
    n = db.notifications.c
    due = [
        Due(row.id, row.url, row.body)
        for row in conn.execute(
            sa.select(n.id, n.url, n.body)
            .where(n.status == "pending", n.next_attempt_at <= now)
            .order_by(n.next_attempt_at, n.id)
        )
    ]
    upcoming = [
        conn.execute(
            sa.select(sa.func.min(r.settle_at)).where(r.status == REFUND_PROCESSING)
        ).scalar(),
        conn.execute(
            sa.select(sa.func.min(r.reverse_at)).where(
                r.status == REFUND_SUCCESS, r.reversed_at.is_(None)
            )
        ).scalar(),
        conn.execute(
            sa.select(sa.func.min(n.next_attempt_at)).where(
                n.status == "pending", n.next_attempt_at > now
            )
        ).scalar(),
    ]
    times = [t for t in upcoming if t is not None]
    return due, (min(times) if times else None)


def record_attempt(
    conn: Connection,
    config: SimConfig,
    notification_id: int,
    *,
    started: float,
    finished: float,
    request_time: str,
    http_status: int | None,
    acknowledged: bool,
    error: str | None,
    excerpt: str | None,
) -> None:
    n = db.notifications.c
    before, sandbox = conn.execute(
        sa.select(n.attempts, n.sandbox).where(n.id == notification_id)
    ).one()
    attempts = before + 1
    conn.execute(
        sa.insert(db.delivery_attempts).values(
            notification_id=notification_id,
            attempted_at=started,
            request_time=request_time,
            http_status=http_status,
            acknowledged=acknowledged,
            error=error[:512] if error else None,
            response_excerpt=excerpt[:512] if excerpt else None,
        )
    )
    retries_used = attempts - 1
    if acknowledged:
        values: dict[str, object] = {"status": "acknowledged", "next_attempt_at": None}
    elif sandbox:
        # Antom's sandbox does not re-send when the acknowledgement is missing or wrong.
        values = {"status": "gave_up", "next_attempt_at": None}
    elif retries_used < len(config.retry_schedule_s):
        delay = config.scaled(config.retry_schedule_s[retries_used])
        values = {"next_attempt_at": finished + delay}
    else:
        values = {"status": "gave_up", "next_attempt_at": None}
    conn.execute(
        sa.update(db.notifications)
        .where(n.id == notification_id)
        .values(attempts=attempts, **values)
    )


class Worker:
    def __init__(self, database: db.SimDB, config: SimConfig, signer: Signer) -> None:
        self._db = database
        self._config = config
        self._signer = signer
        self._wake = asyncio.Event()
        self._http = httpx.AsyncClient(timeout=config.notify_timeout_s)
        # Deliveries run as their own tasks so one slow receiver delays nothing else.
        self._sending: dict[int, asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    pause = await self.step()
                except Exception:  # a bad row must not stop every later delivery
                    log.exception("simulator worker step failed")
                    pause = MAX_IDLE_S
                if pause > 0:
                    await self._sleep(pause)
        finally:
            for task in self._sending.values():
                task.cancel()
            await asyncio.gather(*self._sending.values(), return_exceptions=True)
            await self._http.aclose()

    async def step(self) -> float:
        """One pass: start what is due; returns how long to sleep before the next pass."""
        self._wake.clear()
        now = time.time()
        due, next_at = await self._db.run(lambda c: run_timers(c, self._config, now))
        for item in due:
            if item.id not in self._sending:
                self._sending[item.id] = asyncio.create_task(self._send(item))
        if next_at is None:
            return MAX_IDLE_S
        return max(0.0, min(next_at - time.time(), MAX_IDLE_S))

    async def _send(self, due: Due) -> None:
        try:
            await self.deliver(due)
        except Exception:
            log.exception("recording a notification attempt failed")
        finally:
            self._sending.pop(due.id, None)
            self.wake()  # its next attempt time is known now

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def deliver(self, due: Due) -> None:
        body = due.body.encode()
        started = time.time()
        request_time = time_header(started)
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            **self._signer.headers(
                uri=notify_uri(due.url),
                client_id=self._signer.client_id,
                time_value=request_time,
                body=body,
                kind="request-time",
            ),
        }
        status: int | None = None
        error: str | None = None
        excerpt: str | None = None
        acknowledged = False
        try:
            response = await self._http.post(due.url, content=body, headers=headers)
            status = response.status_code
            excerpt = response.text[:512]
            acknowledged = is_ack(status, response.content)
        except Exception as exc:  # a bad URL or a dead host is a failed attempt, not a crash
            error = f"{type(exc).__name__}: {exc}"
        finished = time.time()
        await self._db.run(
            lambda c: record_attempt(
                c,
                self._config,
                due.id,
                started=started,
                finished=finished,
                request_time=request_time,
                http_status=status,
                acknowledged=acknowledged,
                error=error,
                excerpt=excerpt,
            )
        )
