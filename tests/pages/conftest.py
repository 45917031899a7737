"""Page tests: the real app on a real uvicorn server (tests/support/fixtures_app.py), a real
simulator behind it, and a signed-in agent, on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from tests.support.simulator import SimHandle
from web.models import User
from web.settings import Settings


@dataclass
class Desk:
    """A signed-in agent's browser (no JavaScript) and the database behind the desk."""

    client: httpx.AsyncClient
    engine: AsyncEngine
    agent: User

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    async def post_form(
        self, url: str, data: dict[str, str], *, htmx: bool = False, csrf: bool = True
    ) -> httpx.Response:
        """POST a form as htmx (``HX-Request``) or as a plain browser (following redirects)."""
        headers = {"HX-Request": "true"} if htmx else {}
        token = self.client.headers.get("x-csrftoken")
        if not csrf:
            del self.client.headers["x-csrftoken"]
        try:
            return await self.client.post(url, data=data, headers=headers, follow_redirects=True)
        finally:
            if token is not None:
                self.client.headers["x-csrftoken"] = token


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str, simulator: SimHandle) -> Settings:
    return make_settings(simulator=simulator, database_url=db_url)


@pytest.fixture
def in_process() -> bool:
    """Page requests need no socket: clients call the desk in-process (it still talks to
    the real simulator over HTTP)."""
    return True


@pytest.fixture(name="desk")
async def fx_desk(
    signed_in: Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]], engine: AsyncEngine
) -> Desk:
    client, agent = await signed_in(role="agent", limits={"USD": 1_000_000, "JPY": 10_000_000})
    return Desk(client, engine, agent)
