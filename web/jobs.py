"""Background work outside requests: ``refund-desk poller`` (the Procfile's ``worker:``,
the same poller loop and bulk driver the web processes run, without the web app), its health for
``/healthz``, and ``/metrics`` that reports on it. Leases on the refund rows make any
number of pollers safe on one database (``web/services/leases.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
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
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from web.db import make_engine, reader
from web.integration import antom_lifespan, build_bulk_runner, build_poller
from web.live import announce_commits, backend_publisher, channels_backend
from web.models import PollerHeartbeat, utcnow
from web.services import bulk_run
from web.services.poller import Poller
from web.settings import Settings

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


async def last_heartbeat(engine: AsyncEngine) -> datetime | None:
    """When any poller last finished a pass (None: never). One statement on a bare
    connection: /healthz uses it as its database check too."""
    async with reader(engine).connect() as conn:
        latest: datetime | None = await conn.scalar(
            select(PollerHeartbeat.last_loop_at)
            .order_by(col(PollerHeartbeat.last_loop_at).desc())
            .limit(1)
        )
    return latest


def poller_health(state: State, latest: datetime | None) -> dict[str, Any]:
    """For /healthz: this process's poller, and the freshest poller anywhere (``latest``,
    from ``last_heartbeat``).

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
            instance = build_poller(settings, engine, holder.state.antom)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            log.info("poller %s started", instance.owner)
            runner = build_bulk_runner(settings, engine, holder.state.antom)
            await asyncio.gather(
                instance.run_forever(stop),
                bulk_run.run_forever(runner, stop, settings.poller.idle_s),
            )
            log.info("poller %s stopped", instance.owner)
    finally:
        if backend is not None:
            await backend.on_shutdown()
        await engine.dispose()


@click.command("poller")
@click.option(
    "--log-level",
    envvar="REFUND_DESK_LOG_LEVEL",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="debug adds one line per inquiry (noise at thousands a minute).",
)
def poller_command(log_level: str) -> None:
    """Run the inquiry poller (settles processing refunds) until SIGTERM."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = Settings.from_env().validate()
    asyncio.run(run_worker(settings))
