"""Background work: the inquiry poller (in each web instance and as a worker process),
and ``/metrics`` that reports on it.

``poller_lifespan`` starts one ``Poller`` per web process (start-up reconciliation
first, then the loop); ``refund-desk poller`` runs the same loop without the web app
(the Procfile's ``worker:``). Leases on the refund rows make any number of them safe
on one database (``web/services/poller.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

import click
from litestar import Litestar
from litestar.channels.backends.base import ChannelsBackend
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.plugins import InitPluginProtocol
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.live import announce_commits, backend_publisher, channels_backend
from web.models import PollerHeartbeat, utcnow
from web.services.poller import Poller
from web.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


def poller_lifespan(settings: Settings) -> Any:
    """Runs a poller in this web process; ``app.state.poller`` serves "check now"."""

    @asynccontextmanager
    async def poller(app: Litestar) -> AsyncIterator[None]:
        engine: AsyncEngine = app.state.engine
        antom = app.state.antom
        if antom is None:
            app.state.poller = None
            yield
            return
        # Its commits reach open pages through the commit hook (web/live.py).
        instance = Poller(
            engine,
            antom,
            notify_url=settings.refund_notify_url,
            config=settings.poller,
        )
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
                await _stop(task)

    return poller


async def _stop(task: asyncio.Task[None]) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=STOP_TIMEOUT_S)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def poller_health(state: State, engine: AsyncEngine) -> dict[str, Any]:
    """For /healthz: this process's poller, and the freshest poller anywhere.

    ``ok``: some poller finished a pass within ``stalled_after_s``; ``starting``: this
    process's poller is still in its first pass (start-up reconciliation) and has not
    been at it for that long; ``stalled``: a poller runs or ran but none finished a pass
    lately; ``disabled``: none has ever run against this database.
    """
    settings: Settings = state.settings
    local = getattr(state, "poller", None)
    mine: datetime | None = None
    started: datetime | None = None
    running = False
    if isinstance(local, Poller):
        mine, started, running = local.last_loop_at, local.started_at, local.running
    try:
        async with AsyncSession(engine) as session:
            latest = (
                await session.exec(
                    select(PollerHeartbeat.last_loop_at)
                    .order_by(col(PollerHeartbeat.last_loop_at).desc())
                    .limit(1)
                )
            ).first()
    except SQLAlchemyError:
        log.exception("health check: poller heartbeats unreadable")
        return {"poller": "unknown", "poller_last_loop": None, "this_instance_last_loop": None}
    now = utcnow()
    window = settings.poller.stalled_after_s
    if latest is not None and (now - latest).total_seconds() <= window:
        status = "ok"
    elif running and mine is None and started and (now - started).total_seconds() <= window:
        status = "starting"
    else:
        status = "stalled" if running or latest else "disabled"
    return {
        "poller": status,
        "poller_last_loop": latest.isoformat() if latest else None,
        "this_instance_last_loop": mine.isoformat() if mine else None,
    }


class _MetricsController(PrometheusController):
    # Scrapers do not sign in. Only counts are exposed: no customer data, no secrets.
    opt = {"exclude_from_auth": True}  # noqa: RUF012 - Litestar reads it as a class attribute
    include_in_schema = False


class MetricsPlugin(InitPluginProtocol):
    """``/metrics`` in Prometheus format, with per-route request metrics."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        config = PrometheusConfig(
            app_name="refund_desk",
            prefix="refund_desk",
            group_path=True,  # one series per route, not per refund id
            exclude=["^/metrics$", "^/static/", "^/events$"],
        )
        app_config.middleware.append(config.middleware)
        app_config.route_handlers.append(_MetricsController)
        return app_config


# ---------------------------------------------------------------- worker process


async def run_worker(settings: Settings) -> None:
    from web.app import antom_lifespan
    from web.db import make_engine

    engine = make_engine(settings.database_url)
    # antom_lifespan builds the client exactly as the web app does; it only needs .state.
    holder = SimpleNamespace(state=State())
    backend: ChannelsBackend | None = None
    try:
        async with antom_lifespan(settings)(cast(Litestar, holder)):
            if holder.state.antom is None:
                raise click.ClickException("Antom is not configured (ANTOM_* settings)")
            if not settings.is_sqlite:
                # SQLite means one process: nobody else could hear a memory channel.
                backend = channels_backend(settings)
                await backend.on_startup()
                announce_commits(backend_publisher(backend), engine)
            instance = Poller(
                engine,
                holder.state.antom,
                notify_url=settings.refund_notify_url,
                config=settings.poller,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info("poller %s started", instance.owner)
            await instance.run_forever(stop)
            log.info("poller %s stopped", instance.owner)
    finally:
        if backend is not None:
            await backend.on_shutdown()
        await engine.dispose()


@click.command("poller")
def poller_command() -> None:
    """Run the inquiry poller (settles processing refunds) until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env().validate()
    asyncio.run(run_worker(settings))
