"""API keys: admins make them (shown once), list and revoke them, on the page and the CLI;
a key is never shown again, logged or stored in the clear."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine

from web.cli import main
from web.models import User
from web.settings import Settings

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
KEY = re.compile(r"rdk_[A-Za-z0-9_-]{43}")
ORDER = {"paymentRequestId": "PR-1", "buyerName": "Mei Chen"}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
async def admin(signed_in: SignedIn) -> httpx.AsyncClient:
    client, _ = await signed_in(role="admin")
    return client


async def make_key(admin: httpx.AsyncClient, name: str = "Shop backend") -> tuple[str, str]:
    """Make a key on the admin page; the key and the page that showed it."""
    answer = await admin.post("/admin/api-keys/", data={"name": name})
    assert answer.status_code == 200, answer.text
    keys = KEY.findall(answer.text)
    assert len(set(keys)) == 1, "the new key is shown"
    return keys[0], answer.text


async def send_order(new_client: Callable[[], Awaitable[httpx.AsyncClient]], key: str) -> int:
    feed = await new_client()
    answer = await feed.post("/api/orders", json=ORDER, headers={"authorization": f"Bearer {key}"})
    return answer.status_code


async def database_text(engine: AsyncEngine) -> str:
    """Every value of every api_keys and orders row, as text."""
    async with engine.connect() as conn:
        rows = [
            *(await conn.execute(sa.text("SELECT * FROM api_keys"))).all(),
            *(await conn.execute(sa.text("SELECT * FROM orders"))).all(),
        ]
    return repr(rows)


async def test_an_admin_makes_a_key_that_opens_the_order_feed(
    admin: httpx.AsyncClient, new_client: Callable[[], Awaitable[httpx.AsyncClient]]
) -> None:
    key, page = await make_key(admin)

    assert "Copy this key now." in page and "It will not be shown again" in page
    assert await send_order(new_client, key) == 200


async def test_the_key_is_never_shown_again(admin: httpx.AsyncClient) -> None:
    key, _ = await make_key(admin)

    listing = await admin.get("/admin/api-keys/")

    assert listing.status_code == 200
    assert key not in listing.text and not KEY.search(listing.text)
    assert f"{key[:10]}…" in listing.text  # its first characters tell keys apart
    assert "Shop backend" in listing.text and "Live" in listing.text


async def test_a_revoked_key_is_refused(
    admin: httpx.AsyncClient, new_client: Callable[[], Awaitable[httpx.AsyncClient]]
) -> None:
    key, page = await make_key(admin)
    revoke = re.search(r'action="(/admin/api-keys/\d+/revoke)"', page)
    assert revoke

    answer = await admin.post(revoke[1])

    assert answer.status_code == 303
    listing = await admin.get(answer.headers["location"])
    assert "Revoked “Shop backend”" in listing.text and "Revoked</span>" in listing.text
    assert await send_order(new_client, key) == 401


async def test_a_key_needs_a_name(admin: httpx.AsyncClient, engine: AsyncEngine) -> None:
    answer = await admin.post("/admin/api-keys/", data={"name": "   "})

    assert answer.status_code == 422
    assert "Give the key a name" in answer.text and not KEY.search(answer.text)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM api_keys"))).scalar_one() == 0


@pytest.mark.parametrize("role", ["agent", "lead"])
async def test_only_admins_manage_keys(signed_in: SignedIn, engine: AsyncEngine, role: str) -> None:
    client, _ = await signed_in(role=role)

    assert (await client.get("/admin/api-keys/")).status_code == 403
    assert (await client.post("/admin/api-keys/", data={"name": "x"})).status_code == 403
    async with engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM api_keys"))).scalar_one() == 0


async def test_a_key_is_not_logged_stored_or_echoed(
    admin: httpx.AsyncClient,
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key, page = await make_key(admin)
    assert await send_order(new_client, key) == 200
    # A wrong key (one character off) is refused without repeating it.
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    feed = await new_client()
    refused = await feed.post(
        "/api/orders", json=ORDER, headers={"authorization": f"Bearer {wrong}"}
    )
    revoke = re.search(r'action="(/admin/api-keys/\d+/revoke)"', page)
    assert revoke
    await admin.post(revoke[1])

    assert refused.status_code == 401 and wrong not in refused.text
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert key not in logged and wrong not in logged
    assert key not in await database_text(engine)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REFUND_DESK_DATA_DIR", str(settings.data_dir))

    def run(*args: str, ok: bool = True) -> str:
        # The CLI runs its own event loop, so it gets a thread of its own (tests are async).
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(CliRunner().invoke, main, list(args)).result()
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    return run


async def test_the_cli_makes_lists_and_revokes_keys(
    cli: Callable[..., str],
    make_user: Callable[..., Awaitable[User]],
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
    live_server: str,
) -> None:
    await make_user(role="admin", email="ari@desk.test")

    made = cli("api-keys", "create", "--name", "Nightly export", "--created-by", "ari@desk.test")

    [key] = KEY.findall(made)
    assert "Copy it now" in made and "(orders:write)" in made
    assert await send_order(new_client, key) == 200

    listed = cli("api-keys", "list")
    assert "Nightly export" in listed and f"{key[:10]}…" in listed and "live" in listed
    assert key not in listed and not KEY.search(listed)
    key_id = re.search(r"^\s*(\d+)\s+Nightly export", listed, re.MULTILINE)
    assert key_id

    revoked = cli("api-keys", "revoke", key_id[1])
    assert "Revoked API key" in revoked and key not in revoked
    assert "revoked" in cli("api-keys", "list")
    assert await send_order(new_client, key) == 401


def test_the_cli_explains_what_is_wrong(cli: Callable[..., str]) -> None:
    assert "There is no API key 99" in cli("api-keys", "revoke", "99", ok=False)
    assert "Give the key a name" in cli("api-keys", "create", "--name", " ", ok=False)
    assert "No user with email" in cli(
        "api-keys", "create", "--name", "x", "--created-by", "nobody@desk.test", ok=False
    )


async def test_key_times_are_shown_in_the_admins_time_zone(
    signed_in: SignedIn, engine: AsyncEngine
) -> None:
    client, user = await signed_in(role="admin")
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(User).where(sa.column("id") == user.id).values(time_zone="Asia/Tokyo")
        )
    await make_key(client)
    page = (await client.get("/admin/api-keys/")).text
    created = re.search(r'<td><time datetime="[^"]+" title="([^"]+)"', page)
    assert created is not None, page
    assert "(Asia/Tokyo)" in created.group(1)
