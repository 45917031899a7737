"""/admin/users: invite with a one-time link, change role, disable, enable, reset; the
public set-password page; the same from ``refund-desk users``. Every change is audited,
and the changes that should end a person's sessions do."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.fixtures_app import DEFAULT_PASSWORD, csrf_token_from, login
from web.db import session_scope
from web.models import AuditEvent, User, utcnow
from web.services import users
from web.services.audit import Actor

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
NewClient = Callable[[], Awaitable[httpx.AsyncClient]]
Audit = Callable[..., Awaitable[list[AuditEvent]]]
LINK = re.compile(r"https?://[^\s\"<]+/set-password/([A-Za-z0-9_-]{43})")
NEW_PASSWORD = "a brand new long password"


@pytest.fixture
def in_process() -> bool:
    return True


@pytest.fixture
async def admin(signed_in: SignedIn) -> tuple[httpx.AsyncClient, User]:
    return await signed_in(role="admin", email="ada@desk.test")


async def invite(
    client: httpx.AsyncClient, email: str = "new@desk.test", role: str = "agent"
) -> tuple[str, str]:
    answer = await client.post(
        "/admin/users/", data={"email": email, "name": "New Person", "role": role}
    )
    assert answer.status_code == 200, answer.text
    links = LINK.findall(answer.text)
    assert len(set(links)) == 1, "the link is shown"
    return links[0], answer.text


async def choose_password(
    new_client: NewClient, token: str, password: str = NEW_PASSWORD, confirm: str | None = None
) -> httpx.Response:
    """Open the link in a fresh browser and submit the form; the form's answer."""
    browser = await new_client()
    opened = await browser.get(f"/set-password/{token}", follow_redirects=True)
    if opened.status_code != 200:
        return opened
    assert token not in opened.text and token not in str(opened.url)
    return await browser.post(
        "/set-password",
        data={
            "_csrf_token": csrf_token_from(opened.text),
            "password": password,
            "confirm": password if confirm is None else confirm,
        },
    )


async def can_sign_in(new_client: NewClient, email: str, password: str) -> bool:
    client = await new_client()
    page = await client.get("/login")
    answer = await client.post(
        "/login",
        data={"_csrf_token": csrf_token_from(page.text), "email": email, "password": password},
    )
    return answer.status_code == 303


async def user_id(engine: AsyncEngine, email: str) -> int:
    async with session_scope(engine) as session:
        found = await users.get_user_by_email(session, email)
        assert found is not None and found.id is not None
        return found.id


async def still_signed_in(client: httpx.AsyncClient) -> bool:
    answer = await client.get("/account")
    return answer.status_code == 200


# ---------------------------------------------------------------- invite and the link


async def test_an_invited_person_chooses_a_password_on_the_link_and_signs_in(
    admin: tuple[httpx.AsyncClient, User], new_client: NewClient, audit_rows: Audit
) -> None:
    client, me = admin
    token, page = await invite(client)

    assert "Copy this link now" in page and "works once" in page
    assert not await can_sign_in(new_client, "new@desk.test", "")  # no password yet
    listing = await client.get("/admin/users/")
    assert "Invited" in listing.text and token not in listing.text

    answer = await choose_password(new_client, token)

    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert await can_sign_in(new_client, "new@desk.test", NEW_PASSWORD)
    created, password_set = await audit_rows("user.")
    assert (created.action, created.actor_id, created.before) == ("user.created", me.id, None)
    assert created.after == {
        "email": "new@desk.test",
        "name": "New Person",
        "role": "agent",
        "active": True,
    }
    assert password_set.action == "user.password_set"
    assert password_set.actor_label == "new@desk.test"
    assert (password_set.before, password_set.after) == (
        {"password": "not set"},
        {"password": "set"},
    )


async def test_the_link_works_once(
    admin: tuple[httpx.AsyncClient, User], new_client: NewClient
) -> None:
    token, _ = await invite(admin[0])
    assert (await choose_password(new_client, token)).status_code == 303

    again = await choose_password(new_client, token, "someone else's password")

    assert again.status_code == 410 and "cannot be used" in again.text
    assert await can_sign_in(new_client, "new@desk.test", NEW_PASSWORD)
    assert not await can_sign_in(new_client, "new@desk.test", "someone else's password")


async def test_the_link_expires(engine: AsyncEngine, new_client: NewClient) -> None:
    async with session_scope(engine) as session:
        link = await users.invite_user(
            session,
            email="late@desk.test",
            name="Late",
            role="agent",
            actor=Actor(label="test"),
            now=utcnow() - users.LINK_LIFETIME - timedelta(minutes=1),
        )

    answer = await choose_password(new_client, link.token)

    assert answer.status_code == 410 and "expired" in answer.text


async def test_a_link_still_valid_an_hour_before_it_expires(
    engine: AsyncEngine, new_client: NewClient
) -> None:
    async with session_scope(engine) as session:
        link = await users.invite_user(
            session,
            email="soon@desk.test",
            name="Soon",
            role="agent",
            actor=Actor(label="test"),
            now=utcnow() - users.LINK_LIFETIME + timedelta(hours=1),
        )

    assert (await choose_password(new_client, link.token)).status_code == 303


async def test_an_unknown_link_is_refused(new_client: NewClient) -> None:
    answer = await choose_password(new_client, "x" * 43)
    assert answer.status_code == 410 and "Ask a desk admin for a new one" in answer.text


async def test_the_password_rules_apply_on_the_link_and_it_stays_usable(
    admin: tuple[httpx.AsyncClient, User], new_client: NewClient
) -> None:
    token, _ = await invite(admin[0])

    short = await choose_password(new_client, token, "too short")
    mismatch = await choose_password(new_client, token, NEW_PASSWORD, confirm="something else 1")

    assert short.status_code == 422 and "at least 12 characters" in short.text
    assert 'id="password-error"' in short.text
    assert mismatch.status_code == 422 and 'id="confirm-error"' in mismatch.text
    assert "not the same" in mismatch.text
    assert (await choose_password(new_client, token)).status_code == 303


async def test_an_invite_with_mistakes_says_which_field(
    admin: tuple[httpx.AsyncClient, User], engine: AsyncEngine
) -> None:
    client, _ = admin
    answer = await client.post(
        "/admin/users/", data={"email": "not an email", "name": " ", "role": "boss"}
    )

    assert answer.status_code == 422 and not LINK.search(answer.text)
    text = answer.text
    assert 'id="email-error"' in text and "is not an email address" in text
    assert 'id="name-error"' in text and "name must not be empty" in text
    assert 'id="role-error"' in text and "Unknown role" in text
    duplicate = await client.post(
        "/admin/users/", data={"email": "ADA@desk.test", "name": "Ada", "role": "agent"}
    )
    assert duplicate.status_code == 422 and "already exists" in duplicate.text
    async with engine.connect() as conn:
        count = await conn.execute(sa.text("SELECT count(*) FROM users"))
        assert count.scalar_one() == 1


async def test_only_the_hash_of_a_link_is_stored_and_nothing_is_logged(
    admin: tuple[httpx.AsyncClient, User],
    new_client: NewClient,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token, _ = await invite(admin[0])
    await choose_password(new_client, token)

    async with engine.connect() as conn:
        stored = repr(
            [
                *(await conn.execute(sa.text("SELECT * FROM password_tokens"))).all(),
                *(await conn.execute(sa.text("SELECT * FROM audit_events"))).all(),
                *(await conn.execute(sa.text("SELECT * FROM users"))).all(),
            ]
        )
    # The desk's own records: the test's HTTP client logs the addresses it asks for.
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "".join(f"{r.getMessage()} {r.args}" for r in ours)
    assert token not in stored and NEW_PASSWORD not in stored
    assert token not in logged and NEW_PASSWORD not in logged


# ---------------------------------------------------------------- role, disable, enable


async def test_a_role_change_ends_that_persons_sessions(
    admin: tuple[httpx.AsyncClient, User], signed_in: SignedIn, audit_rows: Audit
) -> None:
    client, me = admin
    agent_client, agent = await signed_in(role="agent")
    assert await still_signed_in(agent_client)

    answer = await client.post(f"/admin/users/{agent.id}/role", data={"role": "lead"})

    assert answer.status_code == 303
    shown = await client.get(answer.headers["location"])
    assert f"{agent.email} is now lead" in shown.text
    assert not await still_signed_in(agent_client)
    [row] = await audit_rows("user.role_changed")
    assert (row.actor_id, row.object_id) == (me.id, str(agent.id))
    assert (row.before, row.after) == ({"role": "agent"}, {"role": "lead"})
    assert await still_signed_in(client)  # the admin's own session is untouched


async def test_disabling_refuses_the_persons_cookie_on_their_next_request(
    admin: tuple[httpx.AsyncClient, User],
    signed_in: SignedIn,
    new_client: NewClient,
    audit_rows: Audit,
) -> None:
    client, _ = admin
    agent_client, agent = await signed_in(role="agent")
    assert (await agent_client.get("/payments")).status_code == 200

    assert (await client.post(f"/admin/users/{agent.id}/disable")).status_code == 303

    refused = await agent_client.get("/payments")
    assert refused.status_code in (302, 303, 401) and "/login" in refused.headers.get(
        "location", "/login"
    )
    assert not await can_sign_in(new_client, agent.email, DEFAULT_PASSWORD)
    listing = await client.get("/admin/users/")
    assert "Disabled" in listing.text
    [row] = await audit_rows("user.disabled")
    assert (row.before, row.after) == ({"active": True}, {"active": False})

    assert (await client.post(f"/admin/users/{agent.id}/enable")).status_code == 303
    assert await can_sign_in(new_client, agent.email, DEFAULT_PASSWORD)
    [row] = await audit_rows("user.enabled")
    assert (row.before, row.after) == ({"active": False}, {"active": True})


async def test_an_admin_cannot_disable_or_demote_themselves(
    admin: tuple[httpx.AsyncClient, User], audit_rows: Audit
) -> None:
    client, me = admin

    demote = await client.post(f"/admin/users/{me.id}/role", data={"role": "agent"})
    disable = await client.post(f"/admin/users/{me.id}/disable")

    for answer in (demote, disable):
        assert answer.status_code == 422
        assert "yourself; ask another admin" in answer.text
        assert f'id="user-{me.id}-error"' in answer.text
    assert await still_signed_in(client)
    assert (await client.get("/admin/users/")).status_code == 200  # still an admin
    assert await audit_rows("user.") == []


async def test_an_unknown_role_or_user_is_explained(
    admin: tuple[httpx.AsyncClient, User], signed_in: SignedIn
) -> None:
    client, _ = admin
    _, agent = await signed_in(role="agent")

    bad_role = await client.post(f"/admin/users/{agent.id}/role", data={"role": "owner"})
    nobody = await client.post("/admin/users/999999/disable")

    assert bad_role.status_code == 422 and "Unknown role" in bad_role.text
    assert nobody.status_code == 422 and "There is no such user" in nobody.text


async def test_a_reset_ends_the_password_and_sessions_and_gives_a_new_link(
    admin: tuple[httpx.AsyncClient, User],
    signed_in: SignedIn,
    new_client: NewClient,
    audit_rows: Audit,
) -> None:
    client, _ = admin
    agent_client, agent = await signed_in(role="agent")

    answer = await client.post(f"/admin/users/{agent.id}/reset-password")

    assert answer.status_code == 200
    [token] = set(LINK.findall(answer.text))
    assert not await still_signed_in(agent_client)
    assert not await can_sign_in(new_client, agent.email, DEFAULT_PASSWORD)
    assert (await choose_password(new_client, token)).status_code == 303
    assert await can_sign_in(new_client, agent.email, NEW_PASSWORD)
    [reset] = await audit_rows("user.password_reset")
    assert (reset.before, reset.after) == ({"password": "set"}, {"password": "not set"})
    [chosen] = await audit_rows("user.password_set")
    assert chosen.detail == {"via": "reset link"}


async def test_a_new_link_replaces_the_old_one(
    admin: tuple[httpx.AsyncClient, User], new_client: NewClient, engine: AsyncEngine
) -> None:
    client, _ = admin
    first, _ = await invite(client)
    pk = await user_id(engine, "new@desk.test")
    second = LINK.findall((await client.post(f"/admin/users/{pk}/reset-password")).text)[0]

    assert (await choose_password(new_client, first)).status_code == 410
    assert (await choose_password(new_client, second)).status_code == 303


async def test_a_disabled_persons_link_is_refused(
    admin: tuple[httpx.AsyncClient, User], new_client: NewClient, engine: AsyncEngine
) -> None:
    client, _ = admin
    token, _ = await invite(client)
    await client.post(f"/admin/users/{await user_id(engine, 'new@desk.test')}/disable")

    assert (await choose_password(new_client, token)).status_code == 410


ROUTES = [
    ("/admin/users/", {"email": "x@desk.test", "name": "X", "role": "agent"}),
    ("/admin/users/{pk}/role", {"role": "lead"}),
    ("/admin/users/{pk}/disable", {}),
    ("/admin/users/{pk}/enable", {}),
    ("/admin/users/{pk}/reset-password", {}),
]


@pytest.mark.parametrize(("path", "data"), ROUTES)
async def test_every_change_needs_the_csrf_token(
    admin: tuple[httpx.AsyncClient, User],
    signed_in: SignedIn,
    audit_rows: Audit,
    path: str,
    data: dict[str, str],
) -> None:
    client, _ = admin
    agent_client, agent = await signed_in(role="agent")
    client.headers.pop("x-csrftoken")

    answer = await client.post(path.format(pk=agent.id), data=data)

    assert answer.status_code == 403
    assert await audit_rows("user.") == []
    assert await still_signed_in(agent_client)


async def test_the_set_password_form_needs_the_csrf_token(
    admin: tuple[httpx.AsyncClient, User], new_client: NewClient, audit_rows: Audit
) -> None:
    token, _ = await invite(admin[0])
    browser = await new_client()
    await browser.get(f"/set-password/{token}", follow_redirects=True)

    answer = await browser.post(
        "/set-password", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )

    assert answer.status_code == 403
    assert [r.action for r in await audit_rows("user.")] == ["user.created"]


@pytest.mark.parametrize("role", ["agent", "lead"])
async def test_only_admins_manage_users(signed_in: SignedIn, role: str) -> None:
    client, me = await signed_in(role=role)

    assert (await client.get("/admin/users/")).status_code == 403
    assert (
        await client.post(f"/admin/users/{me.id}/role", data={"role": "admin"})
    ).status_code == 403


# ---------------------------------------------------------------- the CLI


async def test_the_cli_invites_changes_disables_and_resets(
    cli: Callable[..., str], engine: AsyncEngine, new_client: NewClient, audit_rows: Audit
) -> None:
    invited = cli("users", "invite", "--email", "Cli@desk.test", "--name", "Cee", "--role", "agent")
    [token] = LINK.findall(invited)
    assert "Invited agent cli@desk.test" in invited
    assert (await choose_password(new_client, token)).status_code == 303
    assert "cli@desk.test: agent → lead" in cli(
        "users", "set-role", "--email", "cli@desk.test", "--role", "lead"
    )
    listed = cli("users", "list")
    assert re.search(r"cli@desk\.test\s+Cee\s+lead\s+active\s+signed in: never", listed)
    assert "Disabled cli@desk.test" in cli("users", "disable", "--email", "cli@desk.test")
    assert "Enabled cli@desk.test" in cli("users", "enable", "--email", "cli@desk.test")
    reset = cli("users", "reset-password", "--email", "cli@desk.test")
    assert len(LINK.findall(reset)) == 1 and LINK.findall(reset)[0] != token
    assert "invited" in cli("users", "list")

    rows = await audit_rows("user.")
    assert [r.action for r in rows] == [
        "user.created",
        "user.password_set",
        "user.role_changed",
        "user.disabled",
        "user.enabled",
        "user.password_reset",
    ]
    assert {r.actor_label for r in rows} == {"cli", "cli@desk.test"}
    assert "No user with email" in cli("users", "enable", "--email", "ghost@desk.test", ok=False)


async def test_the_cli_invite_explains_what_is_wrong(cli: Callable[..., str]) -> None:
    out = cli("users", "invite", "--email", "nope", "--name", "N", "--role", "agent", ok=False)
    assert "is not an email address" in out and not LINK.search(out)


async def test_a_signed_in_person_can_still_use_the_desk_after_an_invite(
    admin: tuple[httpx.AsyncClient, User], new_client: NewClient
) -> None:
    """Choosing a password does not sign anyone in: the person signs in afterwards."""
    token, _ = await invite(admin[0])
    browser = await new_client()
    opened = await browser.get(f"/set-password/{token}", follow_redirects=True)
    await browser.post(
        "/set-password",
        data={
            "_csrf_token": csrf_token_from(opened.text),
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert (await browser.get("/account")).status_code != 200
    await login(browser, "new@desk.test", NEW_PASSWORD)
    assert (await browser.get("/account")).status_code == 200
