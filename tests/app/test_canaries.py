"""No secret ever appears in a page, a header, a log line, a stored row or an error report.

Canary values are planted in every secret the desk holds (SECRET_KEY, the merchant's
RSA private key, the database password, a user's password), the desk is driven through
sign-in, pages, a real refund against the simulator, failing requests, webhook
refusals, a database outage, misconfiguration and the CLI, and every output is searched:
all log records of every logger at DEBUG (with tracebacks), every response's headers
and body, every row of every table (and, on their own, every audit_events row: the trail
records sign-ins, failed ones included, and API keys), ``repr(settings)``, config errors
and CLI output.
"""

from __future__ import annotations

import logging
import re
import secrets
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from litestar import Litestar, get
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from tests.support.fixtures_app import csrf_token_from, login
from tests.support.simulator import SimHandle
from web.antom.keys import (
    AntomKeyError,
    generate_private_key,
    load_private_key,
    private_key_pem,
    public_key_pem,
)
from web.app import create_app
from web.cli import main as cli_main
from web.db import session_scope
from web.models import AuditEvent
from web.services import api_keys
from web.services.audit import Action
from web.settings import ConfigError, OIDCConfig, Settings, redact_url

_KEY = generate_private_key()
CANARY_PRIVATE_PEM = private_key_pem(_KEY)
CANARY_PUBLIC_PEM = public_key_pem(_KEY.public_key())
CANARY_SECRET_KEY = "canarySK" + secrets.token_urlsafe(32)
CANARY_DB_PASSWORD = "canaryDB" + secrets.token_hex(12)
CANARY_USER_PASSWORD = "canaryPW " + secrets.token_hex(8)
CANARY_WRONG_PASSWORD = "canaryWRONG" + secrets.token_hex(8)
CANARY_OIDC_SECRET = "canaryOIDC" + secrets.token_hex(12)


def _key_fragments(pem: str) -> list[str]:
    """The PEM's base64 body lines, and the body as one line (the Dashboard's form)."""
    lines = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    return [line for line in lines if len(line) >= 16] + ["".join(lines)]


CANARIES = {
    "SECRET_KEY": [CANARY_SECRET_KEY],
    "ANTOM_MERCHANT_PRIVATE_KEY": _key_fragments(CANARY_PRIVATE_PEM),
    "database password": [CANARY_DB_PASSWORD],
    "user password": [CANARY_USER_PASSWORD, CANARY_WRONG_PASSWORD],
    "OIDC_CLIENT_SECRET": [CANARY_OIDC_SECRET],
}  # plus "API key", made by the test below


def leaks(text: str, *, exact: bool = False) -> list[str]:
    """The canaries in ``text``, in any case: the desk lower-cases the email a sign-in
    tried (the audit trail records it), so a password typed into the email field must
    not slip through as "canarywrong…". ``exact``: only as planted."""
    folded = text if exact else text.casefold()
    return [
        f"{name} ({canary[:12]}…)"
        for name, canaries in CANARIES.items()
        for canary in canaries
        if (canary if exact else canary.casefold()) in folded
    ]


# The database drivers' statement logs (off in production) carry every query parameter,
# and looking a sign-in's email up is a query: the lower-cased text typed into the email
# field is in them by necessity. They are searched for the canaries as planted.
DRIVER_LOGGERS = ("sqlalchemy.", "aiosqlite", "psycopg")


def _with_password(url: str, password: str) -> str:
    """The URL with ``password`` as its password (trust auth ignores it; it is still
    in DATABASE_URL, which is what must never show)."""
    scheme, _, rest = url.partition("://")
    user_host, _, path = rest.partition("/")
    user, _, host = user_host.rpartition("@")
    user = user.split(":", 1)[0] or "postgres"
    return f"{scheme}://{user}:{password}@{host}/{path}"


@get("/t/database-down")
async def database_down() -> str:
    """An error report from a real driver failure on a URL that carries a password."""
    engine = create_async_engine(f"postgresql+psycopg://desk:{CANARY_DB_PASSWORD}@127.0.0.1:9/x")
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()
    return "unreachable"


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    # The simulator knows the canary merchant key, so real signed refunds go through.
    return {
        "merchant_private_key_pem": CANARY_PRIVATE_PEM,
        "merchant_public_key_pem": CANARY_PUBLIC_PEM,
    }


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str, simulator: SimHandle) -> Settings:
    database_url = db_url
    if db_url.startswith("postgresql"):
        database_url = _with_password(db_url, CANARY_DB_PASSWORD)
    settings = make_settings(
        simulator=simulator,
        database_url=database_url,
        secret_key=CANARY_SECRET_KEY,
        # Single sign-on configured, its provider down: the error must not show the secret.
        oidc=OIDCConfig(
            discovery_url="http://127.0.0.1:9/.well-known/openid-configuration",
            client_id="refund-desk",
            client_secret=CANARY_OIDC_SECRET,
            role_map=(("desk-agents", "agent"),),
        ),
    )
    assert settings.antom_merchant_private_key == CANARY_PRIVATE_PEM
    return settings


@pytest.fixture
def app(settings: Settings) -> Litestar:
    app = create_app(settings)
    app.register(database_down)
    return app


@pytest.fixture
def every_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Records of every logger at DEBUG, whatever level a logger was given."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level not in (0, logging.DEBUG):
            caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), repr(record.__dict__)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    return "\n".join(parts)


async def _all_rows(engine: AsyncEngine) -> str:
    """Every row of every table, as text."""
    out = []
    async with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                out.append(f"{table.name}: {row!r}")
    return "\n".join(out)


async def _audit_rows(engine: AsyncEngine) -> tuple[str, set[str]]:
    """Every audit_events row with every column, as text; and the actions recorded."""
    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(AuditEvent.__table__))).all()  # type: ignore[attr-defined]
    return "\n".join(repr(row._asdict()) for row in found), {row.action for row in found}


def _signed_headers() -> dict[str, str]:
    return {
        "content-type": "application/json",
        "client-id": "TEST_CLIENT",
        "request-time": "2026-01-01T00:00:00+00:00",
        "signature": "algorithm=RSA256,keyVersion=1,signature=bm90IGEgc2lnbmF0dXJl",
    }


async def test_no_secret_in_any_output(
    settings: Settings,
    new_client: Callable[[], Awaitable[httpx.AsyncClient]],
    make_user: Callable[..., Awaitable[Any]],
    engine: AsyncEngine,
    simulator: SimHandle,
    every_log_record: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        seen.append(f"{response.request.method} {response.request.url}\n{response.headers}")
        seen.append(response.text)

    async def browser() -> httpx.AsyncClient:
        client = await new_client()
        client.event_hooks["response"].append(keep)
        return client

    agent = await make_user(role="agent", password=CANARY_USER_PASSWORD, limits={"USD": 1_000_000})
    lead = await make_user(role="lead", password=CANARY_USER_PASSWORD)

    # Sign-in: a wrong password (logged as a failure), then the right one.
    desk = await browser()
    token = csrf_token_from((await desk.get("/login")).text)
    wrong = await desk.post(
        "/login",
        data={"_csrf_token": token, "email": agent.email, "password": CANARY_WRONG_PASSWORD},
    )
    assert wrong.status_code == 400
    # The password typed into the email field, as people do.
    await desk.post(
        "/login",
        data={"_csrf_token": token, "email": CANARY_WRONG_PASSWORD, "password": "x" * 12},
    )
    await login(desk, agent, CANARY_USER_PASSWORD)

    # A real refund through the simulator, signed with the canary key.
    made = simulator.create_payment(method="ALIPAY_CN", currency="USD", amount_minor=10_000)
    found = await desk.post("/payments/find", data={"ref": made["paymentId"]})
    assert found.status_code == 303, found.text
    payment_page = await desk.get(found.headers["location"])
    fields = dict(
        re.findall(r'name="(form_token|refundable_token)" value="([^"]*)"', payment_page.text)
    )
    refund = await desk.post(
        f"{found.headers['location']}/refunds",
        data={
            "amount": "12.00",
            "currency": "USD",
            "reason": "customer_request",
            "note": "",
            **fields,
        },
        headers={"HX-Request": "true"},
    )
    assert refund.status_code == 200, refund.text
    assert 'data-status="succeeded"' in refund.text
    refund_link = re.search(r'href="(/refunds/\d+)"', refund.text)
    assert refund_link

    # Pages and fragments, as the agent and as a lead.
    for path in ["/payments", "/refunds", "/account", refund_link.group(1), "/healthz", "/metrics"]:
        await desk.get(path)
        await desk.get(path, headers={"HX-Request": "true"})
    boss = await browser()
    await login(boss, lead, CANARY_USER_PASSWORD)
    for path in ["/alerts", "/refunds", refund_link.group(1)]:
        await boss.get(path)

    # Failing requests: 404, 405, CSRF refusal, a bad form, a database outage (500).
    await desk.get("/no/such/page")
    await desk.put("/payments")
    csrf = desk.headers.pop("x-csrftoken")
    await desk.post("/logout")
    desk.headers["x-csrftoken"] = csrf
    await desk.post(f"{found.headers['location']}/refunds", data={"amount": "lots"})
    down = await desk.get("/t/database-down")
    assert down.status_code == 500
    sso_down = await (await browser()).get("/login/sso")
    assert sso_down.status_code == 502
    await desk.get("/login/sso/callback?code=x&state=y")

    # The order feed: a real API key, used well and badly, and the admin's key list.
    async with session_scope(engine) as db:
        made = await api_keys.create_key(db, name="Shop backend")
    CANARIES["API key"] = [made.secret]
    shop = await browser()
    order = {
        "paymentRequestId": "PR-1",
        "referenceOrderId": "ORD-1",
        "orderTotal": "1.00",
        "currency": "USD",
    }
    accepted = await shop.post(
        "/api/orders", json=order, headers={"authorization": f"Bearer {made.secret}"}
    )
    assert accepted.status_code < 300, accepted.text
    await shop.post("/api/orders", json=order, headers={"authorization": f"Bearer {made.secret}x"})
    await shop.post(
        "/api/orders", json={"bad": 1}, headers={"authorization": f"Bearer {made.secret}"}
    )
    admin = await make_user(role="admin", password=CANARY_USER_PASSWORD)
    keeper = await browser()
    await login(keeper, admin, CANARY_USER_PASSWORD)
    assert (await keeper.get("/admin/api-keys")).status_code == 200
    # A key made and revoked on the admin page: the audit trail names it, never shows it.
    # The one answer that shows it (by design) is read by a client whose answers are not
    # searched; everything after it is.
    maker = await new_client()
    await login(maker, admin, CANARY_USER_PASSWORD)
    on_page = await maker.post("/admin/api-keys/", data={"name": "Canary shop"})
    page_key = re.findall(r"rdk_[A-Za-z0-9_-]{43}", on_page.text)[0]
    CANARIES["API key"].append(page_key)
    page_key_id = re.search(r"/admin/api-keys/(\d+)/revoke", on_page.text)
    assert page_key_id
    await keeper.post(f"/admin/api-keys/{page_key_id[1]}/revoke")
    for query in ["", "?action=auth.sign_in_failed", "?object_type=api_key"]:
        assert (await keeper.get(f"/admin/audit{query}")).status_code == 200
        await keeper.get(f"/admin/audit{query}", headers={"HX-Request": "true"})

    # Webhook refusals: unsigned, badly signed, too large, not JSON.
    anyone = await browser()
    await anyone.post("/webhooks/antom", content=b"{}")
    await anyone.post(
        "/webhooks/antom", content=b'{"notifyType":"REFUND_RESULT"}', headers=_signed_headers()
    )
    await anyone.post("/webhooks/antom", content=b"x" * 2_000_000, headers=_signed_headers())
    await anyone.post("/webhooks/antom", content=b"not json", headers=_signed_headers())
    await desk.post("/logout")

    audit_text, audited = await _audit_rows(engine)
    outputs = {
        "responses": "\n".join(seen),
        "logs": "\n".join(
            _record_text(r)
            for r in every_log_record.records
            if not r.name.startswith(DRIVER_LOGGERS)
        ),
        "database rows": await _all_rows(engine),
        "audit_events rows": audit_text,
        "repr(settings)": repr(settings) + str(settings),
    }
    # The trail really holds what was done: the search above covers those rows.
    assert {
        Action.SIGN_IN_FAILED,
        Action.SIGN_IN,
        Action.SIGN_OUT,
        Action.REFUND_REQUESTED,
        Action.API_KEY_CREATED,
        Action.API_KEY_REVOKED,
        Action.IMPORTED,
    } <= audited
    assert len(every_log_record.records) > 20  # the capture really saw the app's logs
    assert "webhook refused" in outputs["logs"]
    found_leaks = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    driver_logs = "\n".join(
        _record_text(r) for r in every_log_record.records if r.name.startswith(DRIVER_LOGGERS)
    )
    if leaks(driver_logs, exact=True):
        found_leaks["database driver logs"] = leaks(driver_logs, exact=True)
    assert found_leaks == {}


def test_database_urls_are_masked() -> None:
    url = f"postgresql+psycopg://desk:{CANARY_DB_PASSWORD}@db.internal:5432/desk"
    masked = redact_url(url)
    assert CANARY_DB_PASSWORD not in masked
    assert masked == "postgresql+psycopg://desk:***@db.internal:5432/desk"
    settings = Settings(database_url=url, secret_key=CANARY_SECRET_KEY)
    assert leaks(repr(settings)) == leaks(str(settings)) == []


def _production_env(**overrides: str) -> dict[str, str]:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": f"postgresql://desk:{CANARY_DB_PASSWORD}@127.0.0.1:9/desk",
        "SECRET_KEY": CANARY_SECRET_KEY,
        "PUBLIC_BASE_URL": "http://desk.example.com",  # wrong on purpose: not https
        "ANTOM_GATEWAY_URL": "https://open-sea-global.alipay.com",
        "ANTOM_CLIENT_ID": "SANDBOX_5YEXAMPLE",
        "ANTOM_MERCHANT_PRIVATE_KEY": CANARY_PRIVATE_PEM,
        "ANTOM_PUBLIC_KEY": CANARY_PUBLIC_PEM,
        "OIDC_DISCOVERY_URL": "http://login.corp.test",  # wrong on purpose: not https
        "OIDC_CLIENT_SECRET": CANARY_OIDC_SECRET,
    }
    env.update(overrides)
    return env


def test_configuration_errors_name_the_problem_not_the_secret() -> None:
    broken_key = CANARY_PRIVATE_PEM.replace("\n", "\n!", 3)  # a corrupted paste
    cases = [
        _production_env(),
        _production_env(ANTOM_MERCHANT_PRIVATE_KEY=broken_key),
        _production_env(
            ANTOM_MERCHANT_PRIVATE_KEY="".join(_key_fragments(CANARY_PRIVATE_PEM)[:-1])[:-9]
        ),
        _production_env(SECRET_KEY=CANARY_SECRET_KEY[:20]),  # too short
        _production_env(DATABASE_URL=f"mysql://desk:{CANARY_DB_PASSWORD}@db/desk"),
    ]
    for env in cases:
        with pytest.raises(ConfigError) as raised:
            Settings.from_env(env).validate()
        report = "".join(traceback.format_exception(raised.value))
        assert "Refund Desk cannot start" in report
        assert leaks(report) == [], report
    with pytest.raises(AntomKeyError) as bad_key:
        load_private_key(broken_key, "ANTOM_MERCHANT_PRIVATE_KEY")
    assert leaks("".join(traceback.format_exception(bad_key.value))) == []


def test_the_cli_reports_a_bad_configuration_without_secrets(
    monkeypatch: pytest.MonkeyPatch, every_log_record: pytest.LogCaptureFixture
) -> None:
    runner = CliRunner()
    outputs = []
    for args, env in [
        (["serve"], _production_env()),  # validation refuses: http base URL
        (["users", "list"], _production_env(APP_ENV="development")),  # database unreachable
        (["migrate"], _production_env(APP_ENV="development")),
    ]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = runner.invoke(cli_main, args)
        assert result.exit_code != 0, result.output
        outputs.append(result.output)
        if result.exception is not None:
            outputs.append("".join(traceback.format_exception(result.exception)))
    outputs.extend(_record_text(r) for r in every_log_record.records)
    assert "PUBLIC_BASE_URL must be the https:// address" in outputs[0]
    assert leaks("\n".join(outputs)) == []
