"""Password hashing, rehash on sign-in, users service rules and the users CLI."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import argon2
import pytest
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from tests.support.fixtures_app import DEFAULT_PASSWORD
from web.cli import main
from web.db import session_scope
from web.models import SpendingLimit, User
from web.services.users import (
    UserError,
    authenticate,
    create_user,
    hash_password,
    needs_rehash,
    verify_password,
)


def test_hash_is_argon2id_with_owasp_parameters() -> None:
    hashed = hash_password("a perfectly fine password")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password(hashed, "a perfectly fine password")
    assert not verify_password(hashed, "a perfectly fine passworD")
    assert not verify_password("not a hash", "anything")


def test_long_passwords_work() -> None:
    password = "p" * 64 + " with spaces inside " + "q" * 100
    assert verify_password(hash_password(password), password)


async def test_sign_in_upgrades_a_hash_made_with_old_parameters(
    engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(
        DEFAULT_PASSWORD
    )
    assert needs_rehash(weak)
    async with session_scope(engine) as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.password_hash = weak
    async with session_scope(engine) as session:
        assert await authenticate(session, user.email, DEFAULT_PASSWORD) is not None
    async with session_scope(engine) as session:
        row = await session.get(User, user.id)
        assert row is not None
        assert row.password_hash != weak and not needs_rehash(row.password_hash)
        assert verify_password(row.password_hash, DEFAULT_PASSWORD)


async def test_email_is_case_insensitive_and_unique(engine: AsyncEngine, make_user) -> None:
    await make_user(email="Pat@Desk.test")
    async with session_scope(engine) as session:
        assert await authenticate(session, "  pat@DESK.test ", DEFAULT_PASSWORD) is not None
        with pytest.raises(UserError, match="already exists"):
            await create_user(
                session, email="PAT@desk.test", name="Pat", role="agent", password=DEFAULT_PASSWORD
            )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"password": "too short"}, "at least 12 characters"),
        ({"email": "not-an-email"}, "is not an email address"),
        ({"role": "superuser"}, "Unknown role"),
        ({"name": "  "}, "name must not be empty"),
    ],
)
async def test_create_user_explains_what_is_wrong(
    engine: AsyncEngine, kwargs: dict[str, str], message: str
) -> None:
    values = {"email": "x@desk.test", "name": "X", "role": "agent", "password": DEFAULT_PASSWORD}
    async with session_scope(engine) as session:
        with pytest.raises(UserError, match=message):
            await create_user(session, **{**values, **kwargs})


@pytest.fixture
def cli(settings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REFUND_DESK_DATA_DIR", str(settings.data_dir))

    def run(*args: str, input: str | None = None, ok: bool = True) -> str:
        # The CLI runs its own event loop, so it gets a thread of its own (tests are async).
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(CliRunner().invoke, main, list(args), input=input).result()
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    return run


async def test_cli_manages_users_and_limits(cli, engine: AsyncEngine) -> None:
    out = cli(
        "users",
        "create",
        "--email",
        "Lee@desk.test",
        "--name",
        "Lee",
        "--role",
        "lead",
        "--password",
        "lee's long password",
    )
    assert "Created lead lee@desk.test" in out
    assert "lee@desk.test: JPY: ¥5,000 per refund" in cli(
        "users", "set-limit", "--email", "lee@desk.test", "--currency", "jpy", "--max", "5000"
    )
    assert "not a number" in cli(
        "users",
        "set-limit",
        "--email",
        "lee@desk.test",
        "--currency",
        "USD",
        "--max",
        "lots",
        ok=False,
    )
    async with session_scope(engine) as session:
        limits = (await session.exec(select(SpendingLimit))).all()
        assert [(x.currency, x.max_single_minor, x.max_day_minor) for x in limits] == [
            ("JPY", 5000, None)
        ]
    listing = cli("users", "list")
    assert "lee@desk.test" in listing and "active" in listing and "¥5,000" in listing
    assert "Deactivated lee@desk.test" in cli("users", "deactivate", "--email", "lee@desk.test")
    assert "deactivated" in cli("users", "list")
    async with session_scope(engine) as session:
        assert await authenticate(session, "lee@desk.test", "lee's long password") is None


def test_cli_prompts_for_the_password_when_not_given(cli) -> None:
    secret = "typed at the prompt 123"
    out = cli(
        "users",
        "create",
        "--email",
        "p@desk.test",
        "--name",
        "P",
        "--role",
        "agent",
        input=f"{secret}\n{secret}\n",
    )
    assert "Created agent p@desk.test" in out
    assert secret not in out


def test_cli_refuses_a_duplicate_user(cli) -> None:
    args = (
        "users",
        "create",
        "--email",
        "d@desk.test",
        "--name",
        "D",
        "--role",
        "agent",
        "--password",
        DEFAULT_PASSWORD,
    )
    cli(*args)
    assert "already exists" in cli(*args, ok=False)
