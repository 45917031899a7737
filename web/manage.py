"""``refund-desk users ...``, ``refund-desk migrate`` and ``refund-desk serve``.

Users are managed from the command line (there is no sign-up page): an admin with
shell access to the deployment creates accounts, sets per-currency refund limits and
deactivates people who leave. Deactivating signs the user out everywhere at once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import MoneyError, parse_amount
from web.db import make_engine, migrate, session_scope
from web.models import Role
from web.services import api_keys as key_svc
from web.services import limits
from web.services import users as svc
from web.services.audit import Actor
from web.settings import ConfigError, Settings

T = TypeVar("T")


def _settings() -> Settings:
    settings = Settings.from_env()
    # Only the database matters to these commands; a half-configured web app is fine.
    problems = [p for p in settings.parse_problems if "DATABASE_URL" in p]
    if problems:
        raise click.ClickException("; ".join(problems))
    return settings


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = make_engine(_settings().database_url)
        try:
            async with session_scope(engine) as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (svc.UserError, key_svc.ApiKeyError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def users() -> None:
    """Create and manage desk users."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password", help="Prompted for (hidden) when not given.")
def users_create(email: str, name: str, role: str, password: str | None) -> None:
    """Create a user who can sign in to the desk."""
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    assert password is not None
    secret = password

    async def work(session: AsyncSession) -> str:
        user = await svc.create_user(session, email=email, name=name, role=role, password=secret)
        return f"Created {user.role} {user.email} (id {user.id})"

    click.echo(_run(work))


@users.command("list")
def users_list() -> None:
    """List users with their role, state and limits."""

    async def work(session: AsyncSession) -> list[str]:
        lines = []
        for user in await svc.list_users(session):
            assert user.id is not None
            shown = ", ".join(
                limits.describe(lim) for lim in await limits.limits_for(session, user)
            )
            state = "active" if user.active else "deactivated"
            lines.append(
                f"{user.email:<32} {user.name:<24} {user.role:<6} {state:<11} "
                f"limits: {shown or 'none'}"
            )
        return lines

    lines = _run(work)
    click.echo("\n".join(lines) if lines else "No users yet: refund-desk users create ...")


@users.command("set-limit")
@click.option("--email", required=True)
@click.option("--currency", required=True, help="ISO code, e.g. USD or JPY.")
@click.option(
    "--max",
    "max_text",
    default="none",
    show_default=True,
    help='Largest single refund without approval, e.g. 500.00; "none": no cap.',
)
@click.option(
    "--per-day",
    "day_text",
    default="none",
    show_default=True,
    help='Total over any 24 hours without approval, e.g. 1000.00; "none": no cap.',
)
def users_set_limit(email: str, currency: str, max_text: str, day_text: str) -> None:
    """Set what a user may refund in a currency without a second person's approval.

    Both caps "none" removes the user's own limit: their role's limit applies again.
    """
    currency = currency.strip().upper()
    max_single = _cap_option("--max", max_text, currency)
    max_day = _cap_option("--per-day", day_text, currency)

    async def work(session: AsyncSession) -> str:
        user = await svc.require_user(session, email)
        try:
            row = await limits.set_limit(
                session,
                user=user,
                currency=currency,
                max_single_minor=max_single,
                max_day_minor=max_day,
            )
        except limits.LimitError as exc:
            raise click.ClickException(str(exc)) from None
        if row is None:
            return f"{email}: no own {currency} limit (the {user.role} role's applies)"
        return f"{email}: {limits.describe(row)}"

    click.echo(_run(work))


def _cap_option(option: str, text: str, currency: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        return parse_amount(text, currency)
    except MoneyError as exc:
        raise click.ClickException(f"{option}: {exc}") from None


@users.command("deactivate")
@click.option("--email", required=True)
def users_deactivate(email: str) -> None:
    """Stop a user signing in and end all their sessions now."""

    async def work(session: AsyncSession) -> str:
        user = await svc.deactivate(session, email)
        return f"Deactivated {user.email}; their sessions have ended"

    click.echo(_run(work))


# Who the audit trail names for what is done from the command line.
CLI_ACTOR = Actor(label="cli")


@click.group("api-keys")
def api_keys() -> None:
    """Keys for the merchant's systems to send orders (POST /api/orders)."""


@api_keys.command("create")
@click.option("--name", required=True, help='Who uses it, e.g. "Shop backend".')
@click.option("--created-by", "created_by", help="Email of the admin making it (recorded).")
def api_keys_create(name: str, created_by: str | None) -> None:
    """Make a key for the order feed and print it, once: it is never shown again."""

    async def work(session: AsyncSession) -> key_svc.NewKey:
        admin = await svc.require_user(session, created_by) if created_by else None
        actor = Actor(user_id=admin.id, label=admin.email) if admin else CLI_ACTOR
        return await key_svc.create_key(session, name=name, actor=actor)

    made = _run(work)
    click.echo(f"Created API key {made.key.id} “{made.key.name}” ({made.key.scope}):")
    click.echo(made.secret)
    click.echo(
        "Copy it now: only its fingerprint is stored, so it cannot be shown again.", err=True
    )


@api_keys.command("list")
def api_keys_list() -> None:
    """List keys: id, name, the key's first characters, scope, state, last use."""

    async def work(session: AsyncSession) -> list[str]:
        lines = []
        for key in await key_svc.list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M} UTC" if key.last_used_at else "never"
            lines.append(
                f"{key.id:>4}  {key.name:<28} {key.prefix}…  {key.scope:<13} {state:<18} "
                f"last used: {used}"
            )
        return lines

    lines = _run(work)
    click.echo("\n".join(lines) if lines else "No API keys yet: refund-desk api-keys create ...")


@api_keys.command("revoke")
@click.argument("key_id", type=int)
def api_keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID (see ``list``): refused from the next request on."""

    async def work(session: AsyncSession) -> str:
        key = await key_svc.revoke_key(session, key_id, actor=CLI_ACTOR)
        return f"Revoked API key {key.id} “{key.name}” ({key.prefix}…)"

    click.echo(_run(work))


@click.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    settings = _settings()
    migrate(settings.database_url)
    click.echo("Database is up to date")


@click.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104  (a PaaS routes to it)
def serve(host: str) -> None:
    """Run the web app in production style: uvicorn, $PORT, $WEB_CONCURRENCY workers."""
    settings = Settings.from_env()
    try:
        settings.validate()
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    import uvicorn

    uvicorn.run(
        "web.asgi:app",
        host=host,
        port=settings.port,
        workers=settings.instances,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        access_log=False,
        # Live-badge streams never end by themselves; without this a deploy waits for SIGKILL.
        timeout_graceful_shutdown=5,
    )


COMMANDS = [users, api_keys, migrate_command, serve]
