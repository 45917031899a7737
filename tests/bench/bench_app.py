"""The ASGI app the HTTP benchmarks serve: the real desk plus bare baseline handlers.

``uvicorn tests.bench.bench_app:app`` (an import string, so ``--workers`` works, as in
``refund-desk serve``). The bare handlers live in the same app, behind the same
middleware stack a public path gets, so a ratio measures the desk's own work only.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, get, post

from web.app import create_app
from web.settings import Settings

BARE_POST = "/bench/bare"
BARE_GET = "/bench/bare-get"
ACK = {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}


@post(BARE_POST, exclude_from_auth=True, exclude_from_csrf=True, status_code=200)
async def bare(data: dict[str, Any]) -> dict[str, Any]:
    """Parse a JSON body, answer JSON: what any webhook endpoint must at least do."""
    return ACK


@get(BARE_GET, exclude_from_auth=True)
async def bare_get() -> dict[str, Any]:
    return ACK


def build() -> Litestar:
    app = create_app(Settings.from_env())
    app.register(bare)
    app.register(bare_get)
    return app


app = build()
