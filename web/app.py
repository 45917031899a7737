"""The one factory that builds the Refund Desk web app.

``create_app(settings)`` is the only place that knows every route, plugin, lifespan
and middleware. The deployable ASGI object lives in ``web/asgi.py`` (``app =
create_app()``), so importing this module never reads the environment.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from web.auth import (
    build_csrf_config,
    build_session_auth,
    provide_actor,
    provide_current_user,
    security_headers_hook,
)
from web.db import database_lifespan, provide_db_session, provide_engine
from web.htmx import EXCEPTION_HANDLERS
from web.integration import antom_lifespan, bulk_lifespan, poller_lifespan, provide_antom
from web.jobs import MetricsPlugin
from web.live import channels_plugin, live_lifespan
from web.request_ids import request_id_hook
from web.routes import ROUTE_HANDLERS
from web.settings import Settings
from web.templating import configure_jinja

MAX_REQUEST_BODY_BYTES = 256 * 1024


def create_app(settings: Settings | None = None) -> Litestar:
    settings = (settings or Settings.from_env()).validate()
    templates = TemplateConfig(
        directory=settings.templates_dir,
        engine=JinjaTemplateEngine,
        engine_callback=configure_jinja,
    )
    auth = build_session_auth(settings)
    static = create_static_files_router(
        path="/static",
        directories=[settings.static_dir],
        name="static",
        cache_control=CacheControlHeader(max_age=3600, private=True),
        include_in_schema=False,
    )
    app = Litestar(
        route_handlers=[*ROUTE_HANDLERS, static],
        dependencies={
            "db_session": Provide(provide_db_session),
            "engine": Provide(provide_engine, sync_to_thread=False),
            "antom": Provide(provide_antom, sync_to_thread=False),
            "current_user": Provide(provide_current_user, sync_to_thread=False),
            "actor": Provide(provide_actor, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
        },
        lifespan=[
            database_lifespan(settings.database_url),
            antom_lifespan(settings),
            live_lifespan,
            poller_lifespan(settings),
            bulk_lifespan(settings),
        ],
        plugins=[HTMXPlugin(), channels_plugin(settings), MetricsPlugin()],
        template_config=templates,
        csrf_config=build_csrf_config(settings),
        on_app_init=[auth.on_app_init],
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[security_headers_hook(settings), request_id_hook],
        state=State({"settings": settings, "antom": None}),
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        openapi_config=None,
        debug=False,
    )
    env = templates.engine_instance.engine
    assert env.autoescape, "Jinja autoescape must stay on"
    env.globals["desk"] = {
        "environment": settings.environment,
        "sandbox": settings.antom_client_id.startswith("SANDBOX_"),
    }
    return app
