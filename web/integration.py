"""Antom wiring: the one place that turns settings into a live connection to Antom.

Keys are parsed once per settings (``antom_keys``); from them come the client
(``build_antom_client``) and what webhooks are checked against (``webhook_config``).
The lifespans keep one client on ``app.state.antom`` and run one inquiry poller per web
process (``app.state.poller`` also serves "check now"); ``refund-desk poller``
(``web/jobs.py``) builds the same client the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException
from sqlalchemy.ext.asyncio import AsyncEngine

from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.antom.notifications import WebhookConfig
from web.services import bulk_run
from web.services.bulk_run import BulkRunner
from web.services.poller import Poller
from web.settings import Settings

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class AntomKeys:
    merchant_private_key: RSAPrivateKey
    antom_public_keys: tuple[RSAPublicKey, ...]


@lru_cache(maxsize=8)
def antom_keys(settings: Settings) -> AntomKeys:
    """The merchant's private key and Antom's public keys, parsed once per settings."""
    return AntomKeys(
        merchant_private_key=load_private_key(
            settings.antom_merchant_private_key, "ANTOM_MERCHANT_PRIVATE_KEY"
        ),
        antom_public_keys=_public_keys(settings),
    )


def _public_keys(settings: Settings) -> tuple[RSAPublicKey, ...]:
    names = ("ANTOM_PUBLIC_KEY", "ANTOM_PUBLIC_KEY_NEXT")
    return tuple(
        load_public_key(text, name)
        for name, text in zip(names, settings.antom_public_keys, strict=False)
    )


def build_antom_client(settings: Settings) -> AntomClient | None:
    """The one way to build the Antom client from settings; None when Antom is not set up."""
    if not settings.antom_configured:
        return None
    keys = antom_keys(settings)
    return AntomClient(
        gateway_url=settings.antom_gateway_url,
        client_id=settings.antom_client_id,
        merchant_private_key=keys.merchant_private_key,
        antom_public_keys=list(keys.antom_public_keys),
        timeout=settings.antom_timeout_s,
        key_version=settings.antom_key_version,
    )


@lru_cache(maxsize=8)
def webhook_config(settings: Settings) -> WebhookConfig:
    """What notifications are checked against: our client id, the path Antom signs (that
    of the notify URL we give it, whatever a proxy does to the path), Antom's keys."""
    parts = urlsplit(settings.refund_notify_url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    # Only Antom's public keys: a desk that receives notifications may not send refunds.
    return WebhookConfig(
        client_id=settings.antom_client_id, notify_path=path, public_keys=_public_keys(settings)
    )


def antom_lifespan(settings: Settings) -> Any:
    """Keeps one ``AntomClient`` on ``app.state.antom`` (None when Antom is not configured)."""

    @asynccontextmanager
    async def antom(app: Litestar) -> AsyncIterator[None]:
        client = build_antom_client(settings)
        app.state.antom = client
        try:
            yield
        finally:
            if client is not None:
                await client.aclose()

    return antom


def provide_antom(state: State) -> AntomClient:
    client: AntomClient | None = state.antom
    if client is None:
        raise ServiceUnavailableException(
            "Antom is not configured on this desk (ANTOM_* settings), so refunds cannot be sent"
        )
    return client


def build_poller(settings: Settings, engine: AsyncEngine, antom: AntomClient) -> Poller:
    return Poller(engine, antom, notify_url=settings.refund_notify_url, config=settings.poller)


def poller_lifespan(settings: Settings) -> Any:
    """Runs a poller in this web process; ``app.state.poller`` serves "check now"."""

    @asynccontextmanager
    async def poller(app: Litestar) -> AsyncIterator[None]:
        antom: AntomClient | None = app.state.antom
        if antom is None:
            app.state.poller = None
            yield
            return
        # Its commits reach open pages through the commit hook (web/live.py).
        instance = build_poller(settings, app.state.engine, antom)
        app.state.poller = instance
        stop, started = asyncio.Event(), asyncio.Event()
        # on_startup hooks run once every lifespan (the channels plugin's too) is up.
        app.on_startup.append(lambda _: started.set())

        async def run() -> None:
            await started.wait()
            await instance.run_forever(stop)

        # REFUND_DESK_POLLER=off: "check now" still works, the loop runs in a worker.
        task = asyncio.create_task(run()) if settings.poller_enabled else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await stop_task(task)

    return poller


def build_bulk_runner(settings: Settings, engine: AsyncEngine, antom: AntomClient) -> BulkRunner:
    return BulkRunner(engine, antom, notify_url=settings.refund_notify_url, config=settings.bulk)


def bulk_lifespan(settings: Settings) -> Any:
    """Keeps a bulk driver on ``app.state.bulk`` (an approval starts its batch at once)
    and, where the poller runs, a loop that resumes batches nobody is driving (after a
    crash or a restart, on any instance: the batch's lease says who drives it)."""

    @asynccontextmanager
    async def bulk(app: Litestar) -> AsyncIterator[None]:
        antom: AntomClient | None = app.state.antom
        if antom is None:
            app.state.bulk = None
            yield
            return
        runner = build_bulk_runner(settings, app.state.engine, antom)
        app.state.bulk = runner
        stop, started = asyncio.Event(), asyncio.Event()
        app.on_startup.append(lambda _: started.set())

        async def run() -> None:
            await started.wait()
            await bulk_run.run_forever(runner, stop, settings.poller.idle_s)

        task = asyncio.create_task(run()) if settings.poller_enabled else None
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await stop_task(task)

    return bulk


async def stop_task(task: asyncio.Task[None]) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=STOP_TIMEOUT_S)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
