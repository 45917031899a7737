"""``refund-desk users|limits|reasons ...``, ``refund-desk migrate`` and ``serve``.

Everything the admin pages do (/admin/users, /admin/limits, /admin/reasons) can be
scripted here, through the same services, and is audited the same way with the actor
"cli". There is no sign-up page: an admin invites people (a one-time link to choose a
password, printed once), changes roles, disables and enables them, and sets limits.
Changing a role, disabling and resetting a password sign the user out everywhere.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import MoneyError
from web.db import make_engine, migrate, session_scope
from web.models import RefundReason, Role, SettlementImport
from web.services import api_keys as key_svc
from web.services import limits, reasons, settlement
from web.services import users as svc
from web.services.audit import Actor
from web.settings import ConfigError, Settings

T = TypeVar("T")
CLI = Actor(label="cli")
# Where the desk serves a one-time link (web/routes/admin.py, ``admin:set_password``).
SET_PASSWORD_PATH = "/set-password/"  # noqa: S105 - a path, not a password


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
    except (svc.UserError, key_svc.ApiKeyError, limits.LimitError, reasons.ReasonError) as exc:
        raise click.ClickException(str(exc)) from None


def _link(link: svc.PasswordLink) -> str:
    return _settings().public_base_url.rstrip("/") + SET_PASSWORD_PATH + link.token


def _echo_link(link: svc.PasswordLink, what: str) -> None:
    click.echo(
        f"{what}. One-time link to choose a password (until {link.expires_at:%Y-%m-%d %H:%M} UTC):"
    )
    click.echo(_link(link))
    click.echo("Give it to them yourself; it works once and is not shown again.", err=True)


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
        user = await svc.create_user(
            session, email=email, name=name, role=role, password=secret, actor=CLI
        )
        return f"Created {user.role} {user.email} (id {user.id})"

    click.echo(_run(work))


@users.command("list")
def users_list() -> None:
    """List users with their role, state and limits."""

    async def work(session: AsyncSession) -> list[str]:
        lines = []
        for row in await svc.user_rows(session):
            user = row.user
            shown = ", ".join(
                limits.describe(lim) for lim in await limits.limits_for(session, user)
            )
            state = "active" if user.active else "deactivated"
            if user.active and not row.has_password:
                state = "invited" if row.link_expires_at else "no password"
            seen = f"{row.last_sign_in:%Y-%m-%d %H:%M}" if row.last_sign_in else "never"
            lines.append(
                f"{user.email:<32} {user.name:<24} {user.role:<6} {state:<11} "
                f"signed in: {seen:<16} limits: {shown or 'none'}"
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
    currency, max_single, max_day = _caps_options(currency, max_text, day_text)

    async def work(session: AsyncSession) -> str:
        user = await svc.require_user(session, email)
        row = await limits.change_limit(
            session,
            user=user,
            currency=currency,
            max_single_minor=max_single,
            max_day_minor=max_day,
            actor=CLI,
        )
        if row is None:
            return f"{user.email}: no own {currency} limit (the {user.role} role's applies)"
        return f"{user.email}: {limits.describe(row)}"

    click.echo(_run(work))


def _caps_options(
    currency_text: str, max_text: str, day_text: str
) -> tuple[str, int | None, int | None]:
    try:
        currency = limits.parse_currency(currency_text)
    except limits.LimitError as exc:
        raise click.ClickException(f"--currency: {exc}") from None
    caps = []
    for option, text in (("--max", max_text), ("--per-day", day_text)):
        try:
            caps.append(limits.parse_cap(text, currency))
        except MoneyError as exc:
            raise click.ClickException(f"{option}: {exc}") from None
    return currency, caps[0], caps[1]


@users.command("deactivate")
@click.option("--email", required=True)
def users_deactivate(email: str) -> None:
    """Stop a user signing in and end all their sessions now."""

    async def work(session: AsyncSession) -> str:
        user = await svc.deactivate(session, email, CLI)
        return f"Deactivated {user.email}; their sessions have ended"

    click.echo(_run(work))


@users.command("invite")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
def users_invite(email: str, name: str, role: str) -> None:
    """Create a user without a password and print their one-time link to choose one."""

    async def work(session: AsyncSession) -> svc.PasswordLink:
        return await svc.invite_user(session, email=email, name=name, role=role, actor=CLI)

    link = _run(work)
    _echo_link(link, f"Invited {link.user.role} {link.user.email} (id {link.user.id})")


@users.command("set-role")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
def users_set_role(email: str, role: str) -> None:
    """Give a user another role; their sessions end (they sign in again under it)."""

    async def work(session: AsyncSession) -> str:
        user = await svc.require_user(session, email)
        assert user.id is not None
        before = user.role
        await svc.change_role(session, user.id, role, actor=CLI)
        if before == user.role:
            return f"{user.email} is already {user.role}"
        return f"{user.email}: {before} → {user.role}; their sessions have ended"

    click.echo(_run(work))


@users.command("disable")
@click.option("--email", required=True)
def users_disable(email: str) -> None:
    """Stop a user signing in and end all their sessions now (same as ``deactivate``)."""

    async def work(session: AsyncSession) -> str:
        user = await svc.deactivate(session, email, CLI)
        return f"Disabled {user.email}; their sessions have ended"

    click.echo(_run(work))


@users.command("enable")
@click.option("--email", required=True)
def users_enable(email: str) -> None:
    """Let a disabled user sign in again."""

    async def work(session: AsyncSession) -> str:
        user = await svc.require_user(session, email)
        assert user.id is not None
        await svc.enable_user(session, user.id, actor=CLI)
        return f"Enabled {user.email}"

    click.echo(_run(work))


@users.command("reset-password")
@click.option("--email", required=True)
def users_reset_password(email: str) -> None:
    """End the user's password and sessions; print a one-time link to choose a new one."""

    async def work(session: AsyncSession) -> svc.PasswordLink:
        user = await svc.require_user(session, email)
        assert user.id is not None
        return await svc.reset_password(session, user.id, actor=CLI)

    link = _run(work)
    _echo_link(link, f"Reset the password of {link.user.email}; their sessions have ended")


# ---------------------------------------------------------------- limits


@click.group("limits")
def limits_group() -> None:
    """Spending limits per role and per user (see /admin/limits)."""


@limits_group.command("list")
def limits_list() -> None:
    """Every limit: the roles' first, then each person's own."""

    async def work(session: AsyncSession) -> list[str]:
        lines = []
        for view in await limits.all_limits(session):
            who = (
                f"role {view.role}"
                if view.role
                else f"user {view.user.email if view.user else '?'}"
            )
            lines.append(f"{who:<36} {limits.describe(view.row)}")
        return lines

    lines = _run(work)
    click.echo("\n".join(lines) if lines else "No limits yet: refund-desk limits set-role ...")


@limits_group.command("set-role")
@click.argument("role", type=click.Choice([r.value for r in Role]))
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
def limits_set_role(role: str, currency: str, max_text: str, day_text: str) -> None:
    """Set what everyone in ROLE may refund in a currency without approval.

    A user's own limit replaces their role's. Both caps "none" removes the role's limit.
    """
    code, max_single, max_day = _caps_options(currency, max_text, day_text)

    async def work(session: AsyncSession) -> str:
        row = await limits.change_limit(
            session,
            role=Role(role),
            currency=code,
            max_single_minor=max_single,
            max_day_minor=max_day,
            actor=CLI,
        )
        if row is None:
            return f"role {role}: no {code} limit"
        return f"role {role}: {limits.describe(row)}"

    click.echo(_run(work))


@limits_group.command("set-user")
@click.argument("email")
@click.option("--currency", required=True, help="ISO code, e.g. USD or JPY.")
@click.option("--max", "max_text", default="none", show_default=True)
@click.option("--per-day", "day_text", default="none", show_default=True)
@click.pass_context
def limits_set_user(
    ctx: click.Context, email: str, currency: str, max_text: str, day_text: str
) -> None:
    """A user's own limit (the same as ``users set-limit``)."""
    ctx.invoke(
        users_set_limit, email=email, currency=currency, max_text=max_text, day_text=day_text
    )


# ---------------------------------------------------------------- reasons


@click.group("reasons")
def reasons_group() -> None:
    """The managed reason list (see /admin/reasons)."""


def _flags(row: RefundReason) -> str:
    marks = [
        "needs note" if row.note_required else "",
        "needs ticket" if row.ticket_required else "",
        "needs approval" if row.approval_required else "",
        f"max {row.max_percent} %" if row.max_percent is not None else "",
    ]
    return ", ".join(m for m in marks if m) or "-"


@reasons_group.command("list")
def reasons_list() -> None:
    """Every reason in order: position, code, label, state and what it demands."""

    async def work(session: AsyncSession) -> list[str]:
        return [
            f"{r.position:>5}  {r.code:<20} {r.label:<28} "
            f"{'active' if r.active else 'inactive':<9} {_flags(r)}"
            for r in await reasons.reason_rows(session)
        ]

    click.echo("\n".join(_run(work)))


@reasons_group.command("set")
@click.argument("code")
@click.option("--label", help="What agents see (required for a new reason).")
@click.option("--active/--inactive", default=None, help="Offered to agents or not.")
@click.option("--note-required/--no-note-required", default=None)
@click.option("--ticket-required/--no-ticket-required", default=None)
@click.option("--approval-required/--no-approval-required", default=None)
@click.option("--max-percent", help='Largest share of the payment, 1-100; "none": no cap.')
@click.option("--position", help="Order in the list (smaller first).")
def reasons_set(
    code: str,
    label: str | None,
    active: bool | None,
    note_required: bool | None,
    ticket_required: bool | None,
    approval_required: bool | None,
    max_percent: str | None,
    position: str | None,
) -> None:
    """Add reason CODE, or change what is given of it (codes never change; reasons are
    deactivated, never deleted)."""

    async def work(session: AsyncSession) -> str:
        row = await session.get(RefundReason, code.strip())
        given = {
            "active": active,
            "note_required": note_required,
            "ticket_required": ticket_required,
            "approval_required": approval_required,
        }
        current: dict[str, bool] = {
            k: (v if v is not None else (getattr(row, k) if row else k == "active"))
            for k, v in given.items()
        }
        percent = max_percent
        if percent is None:
            percent = str(row.max_percent) if row and row.max_percent is not None else ""
        elif percent.strip().lower() == "none":
            percent = ""
        saved = await reasons.save_reason(
            session,
            code,
            reasons.ReasonInput(
                label=label if label is not None else (row.label if row else ""),
                max_percent=percent,
                position=position or "",
                **current,
            ),
            actor=CLI,
            new=row is None,
        )
        return (
            f"{'Added' if row is None else 'Saved'} {saved.code}: {saved.label} ({_flags(saved)})"
        )

    click.echo(_run(work))


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
        actor = Actor(user_id=admin.id, label=admin.email) if admin else CLI
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
        key = await key_svc.revoke_key(session, key_id, actor=CLI)
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


COMMANDS = [users, limits_group, reasons_group, api_keys, migrate_command, serve]


# ---------------------------------------------------------------- settlement reports


@click.group("settlement")
def settlement_group() -> None:
    """Antom settlement details reports."""


@settlement_group.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def settlement_import(files: tuple[Path, ...]) -> None:
    """Import settlement reports: reversals recorded, refunds reconciled. Importing a
    report again changes nothing. Exits 1 if a file or a line was refused."""

    async def main() -> list[SettlementImport]:
        engine = make_engine(_settings().database_url)
        jobs = []
        try:
            for path in files:
                async with session_scope(engine) as session:
                    job = await settlement.start_import(
                        session, filename=path.name, path=path, user_pk=None
                    )
                assert job.id is not None
                jobs.append(await settlement.run_import(engine, job.id, path, CLI))
        finally:
            await engine.dispose()
        return jobs

    refused = False
    for job in asyncio.run(main()):
        click.echo(
            f"{job.filename}: {job.status}; {job.new_count:,} new, {job.unchanged_count:,} "
            f"already imported, {job.rejected_count:,} rejected; {job.reversed_count:,} "
            f"refunds reversed, {job.raised_count:,} alerts raised"
        )
        for note in job.notes:
            click.echo(f"  {note}")
        for entry in job.problems:
            for error in entry["errors"]:
                click.echo(f"  line {entry['line']}: {error['field'] or '-'}: {error['message']}")
        if job.rejected_count > len(job.problems):
            click.echo(f"  (the first {len(job.problems)} rejected lines are listed)")
        refused = refused or job.status != "done" or job.rejected_count > 0
    if refused:
        sys.exit(1)
