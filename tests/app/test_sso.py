"""Single sign-on through a real OpenID Connect redirect flow, against a local provider.

A real httpx client follows every redirect: desk → provider /authorize (approves at
once) → desk callback → the desk's home page, signed in with the role the IdP group
maps to. State, nonce, PKCE, signature, issuer, audience and expiry are all checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.support.fixtures_app import login
from tests.support.oidc_provider import OIDCProvider, running_provider
from web.db import session_scope
from web.models import AuditEvent, Role
from web.services.audit import Action
from web.services.users import get_user_by_email
from web.settings import ConfigError, OIDCConfig, Settings

NewClient = Callable[[], Awaitable[httpx.AsyncClient]]
CLIENT_ID = "refund-desk"
CLIENT_SECRET = "oidc-client-secret-for-tests-only"
ROLE_MAP = (("desk-agents", "agent"), ("desk-leads", "lead"), ("it-admins", "admin"))
NOT_IN_GROUP = "Your sign-on account is not in a group that may use Refund Desk."


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    with running_provider(CLIENT_ID, CLIENT_SECRET) as running:
        running.user = {
            "sub": "u-1001",
            "email": "lee.lead@corp.test",
            "email_verified": True,
            "name": "Lee Lead",
            "groups": ["everyone", "desk-leads"],
        }
        yield running


@pytest.fixture
def settings(make_settings: Callable[..., Settings], provider: OIDCProvider) -> Settings:
    return make_settings(
        oidc=OIDCConfig(
            discovery_url=provider.discovery_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            group_claim="groups",
            role_map=ROLE_MAP,
            label="Corp SSO",
        )
    )


async def _sso(client: httpx.AsyncClient, path: str = "/login/sso") -> httpx.Response:
    return await client.get(path, follow_redirects=True)


async def test_sign_in_through_the_provider_lands_signed_in_with_the_mapped_role(
    client: httpx.AsyncClient, provider: OIDCProvider, engine: AsyncEngine
) -> None:
    login_page = await client.get("/login")
    assert 'href="/login/sso"' in login_page.text and "Sign in with Corp SSO" in login_page.text

    landed = await _sso(client, "/login/sso?next=/refunds")
    hops = [str(r.url) for r in landed.history]
    assert any("/authorize?" in hop for hop in hops)  # really went through the provider
    assert any("/login/sso/callback?" in hop for hop in hops)
    assert landed.status_code == 200
    assert landed.url.path == "/refunds"
    account = await client.get("/account")
    assert account.status_code == 200 and "Lee Lead" in account.text
    async with session_scope(engine) as db:
        user = await get_user_by_email(db, "lee.lead@corp.test")
    assert user is not None and user.role == Role.LEAD


async def _audit_rows(engine: AsyncEngine) -> list[AuditEvent]:
    async with session_scope(engine) as db:
        return list((await db.exec(select(AuditEvent).order_by(col(AuditEvent.id)))).all())


async def test_a_single_sign_on_is_one_audit_row_with_its_method(
    client: httpx.AsyncClient, provider: OIDCProvider, engine: AsyncEngine
) -> None:
    client.headers.update({"User-Agent": "AuditTest/SSO", "X-Request-ID": "req-sso-1"})
    assert (await _sso(client)).status_code == 200
    [row] = await _audit_rows(engine)
    async with session_scope(engine) as db:
        user = await get_user_by_email(db, "lee.lead@corp.test")
    assert user is not None
    assert (row.action, row.actor_id, row.actor_label) == (
        Action.SIGN_IN.value,
        user.id,
        "lee.lead@corp.test",
    )
    assert row.detail == {"method": "sso", "role": "lead"}
    assert (row.ip, row.user_agent, row.request_id) == ("127.0.0.1", "AuditTest/SSO", "req-sso-1")


async def test_a_refused_single_sign_on_is_one_failed_row_with_the_reason(
    client: httpx.AsyncClient, provider: OIDCProvider, engine: AsyncEngine
) -> None:
    provider.user["groups"] = ["everyone", "marketing"]
    assert (await _sso(client)).status_code == 403
    [row] = await _audit_rows(engine)
    assert (row.action, row.actor_id, row.actor_label) == (
        Action.SIGN_IN_FAILED.value,
        None,
        "lee.lead@corp.test",
    )
    assert row.detail is not None and row.detail["method"] == "sso"
    assert NOT_IN_GROUP in row.detail["reason"]
    assert CLIENT_SECRET not in repr(row.model_dump())


async def test_the_strongest_mapped_group_wins_and_follows_the_idp(
    client: httpx.AsyncClient, provider: OIDCProvider, engine: AsyncEngine, make_user
) -> None:
    await make_user(role="agent", email="lee.lead@corp.test")  # a local account already
    provider.user["groups"] = ["desk-agents", "it-admins"]
    assert (await _sso(client)).status_code == 200
    async with session_scope(engine) as db:
        user = await get_user_by_email(db, "lee.lead@corp.test")
    assert user is not None and user.role == Role.ADMIN


async def test_an_unmapped_group_is_refused_with_a_clear_message(
    client: httpx.AsyncClient, provider: OIDCProvider, engine: AsyncEngine
) -> None:
    provider.user["groups"] = ["everyone", "marketing"]
    refused = await _sso(client)
    assert refused.status_code == 403
    assert NOT_IN_GROUP in refused.text
    assert (await client.get("/account")).status_code == 303  # not signed in
    async with session_scope(engine) as db:
        assert await get_user_by_email(db, "lee.lead@corp.test") is None


async def test_a_deactivated_desk_user_stays_out(
    client: httpx.AsyncClient, provider: OIDCProvider, make_user
) -> None:
    await make_user(role="lead", email="lee.lead@corp.test", active=False)
    refused = await _sso(client)
    assert refused.status_code == 403 and "deactivated" in refused.text


@pytest.mark.parametrize(
    "tamper",
    [
        {"nonce": "not-the-desks-nonce"},
        {"aud": "some-other-app"},
        {"iss": "http://evil.example"},
        {"exp": 1_000_000_000},
    ],
)
async def test_an_id_token_that_does_not_verify_is_refused(
    client: httpx.AsyncClient, provider: OIDCProvider, tamper: dict[str, Any]
) -> None:
    provider.tamper = tamper
    refused = await _sso(client)
    assert refused.status_code == 403
    assert "could not be verified" in refused.text
    assert (await client.get("/account")).status_code == 303


async def test_an_answer_for_another_browser_is_refused(
    new_client: NewClient, provider: OIDCProvider
) -> None:
    """Login CSRF: an attacker's own callback URL, opened in the victim's browser."""
    attacker, victim = await new_client(), await new_client()
    start = await attacker.get("/login/sso")
    approve = await attacker.get(start.headers["location"])
    callback = approve.headers["location"]
    await victim.get("/login")
    refused = await victim.get(callback)
    assert refused.status_code == 403
    assert "does not belong to this browser" in refused.text
    assert provider.token_requests == 0  # refused before the code was ever used
    assert (await victim.get("/account")).status_code == 303
    # The same answer twice in the right browser: the first signs in, a replay does not.
    assert (await attacker.get(callback)).status_code == 303
    await attacker.post("/logout")
    assert (await attacker.get(callback)).status_code == 403


async def test_local_accounts_keep_working(client: httpx.AsyncClient, make_user) -> None:
    user = await make_user(role="agent")
    await login(client, user)
    assert (await client.get("/account")).status_code == 200


async def test_sso_is_off_without_configuration(make_settings, new_client: NewClient) -> None:
    assert not make_settings().oidc.enabled


def test_configuration_from_the_environment() -> None:
    env = {
        "SECRET_KEY": "k" * 40,
        "OIDC_DISCOVERY_URL": "https://login.corp.test/",
        "OIDC_CLIENT_ID": "desk",
        "OIDC_CLIENT_SECRET": "s3cret-value-for-test",
        "OIDC_GROUP_CLAIM": "roles",
        "OIDC_ROLE_MAP": "desk-agents=agent, desk-leads=LEAD",
    }
    settings = Settings.from_env(env)
    assert settings.oidc.discovery_url == (
        "https://login.corp.test/.well-known/openid-configuration"
    )
    assert settings.oidc.group_claim == "roles"
    assert settings.oidc.role_map == (("desk-agents", "agent"), ("desk-leads", "lead"))
    assert "s3cret-value-for-test" not in repr(settings)
    half = Settings.from_env(
        {"SECRET_KEY": "k" * 40, "OIDC_DISCOVERY_URL": "https://login.corp.test"}
    )
    with pytest.raises(ConfigError) as raised:
        half.validate()
    assert "OIDC_CLIENT_ID is not set" in str(raised.value)
    assert "OIDC_ROLE_MAP is not set" in str(raised.value)
    bad = Settings.from_env({**env, "OIDC_ROLE_MAP": "desk-agents=superuser"})
    with pytest.raises(ConfigError, match="OIDC_ROLE_MAP entries look like group=role"):
        bad.validate()
