"""Order-feed API tests: the real app on a real server, on SQLite and PostgreSQL, with an
API key made the way an admin makes one (web/services/api_keys.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from web.db import session_scope
from web.services import api_keys
from web.settings import Settings


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
async def feed_key(engine: AsyncEngine) -> str:
    """A live order-feed key's secret (what the admin copied once)."""
    async with session_scope(engine) as session:
        made = await api_keys.create_key(session, name="Shop backend")
    return made.secret


@pytest.fixture
async def feed(
    new_client: Callable[[], Awaitable[httpx.AsyncClient]], feed_key: str
) -> httpx.AsyncClient:
    """The merchant's system: a client that sends the key, and no cookies."""
    client = await new_client()
    client.headers["authorization"] = f"Bearer {feed_key}"
    return client
