"""The audit trail over real HTTP: every wired action adds exactly one row, naming who
(the user, or the email a sign-in claimed, or the API key), from where (the client
address uvicorn reports, here through X-Forwarded-For from a trusted 127.0.0.1), with
which browser and which request id; never a password or a key. On PostgreSQL the rows
cannot be changed or removed by the app's own connection (migration 0002's triggers).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from tests.support.fixtures_app import DEFAULT_PASSWORD, csrf_token_from, only_postgres
from tests.support.waiting import wait_until
from web.db import make_engine, session_scope
from web.models import AuditEvent, User
from web.services import api_keys, audit, throttle
from web.services.audit import Action, Actor
from web.settings import Settings

NewClient = Callable[[], Awaitable[httpx.AsyncClient]]
MakeUser = Callable[..., Awaitable[User]]
SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
IP = "203.0.113.7"
UA = "AuditTest/1.0 (a browser)"


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


def origin(request_id: str) -> dict[str, str]:
    """Where a request comes from: address (via the trusted proxy), browser, request id."""
    return {"X-Forwarded-For": IP, "User-Agent": UA, "X-Request-ID": request_id}


async def rows(engine: AsyncEngine, action: Action | None = None) -> list[AuditEvent]:
    async with session_scope(engine) as session:
        stmt = select(AuditEvent).order_by(col(AuditEvent.id))
        if action is not None:
            stmt = stmt.where(col(AuditEvent.action) == action.value)
        return list((await session.exec(stmt)).all())


async def only(engine: AsyncEngine, action: Action) -> AuditEvent:
    found = await rows(engine, action)
    assert len(found) == 1, [(r.action, r.actor_label) for r in found]
    return found[0]


def assert_from(row: AuditEvent, request_id: str) -> None:
    assert (row.ip, row.user_agent, row.request_id) == (IP, UA, request_id)


async def post_login(
    client: httpx.AsyncClient, email: str, password: str, request_id: str
) -> httpx.Response:
    token = csrf_token_from((await client.get("/login")).text)
    return await client.post(
        "/login",
        data={"_csrf_token": token, "email": email, "password": password},
        headers=origin(request_id),
    )


# ---------------------------------------------------------------- signing in and out


async def test_a_sign_in_is_one_row_naming_the_user_their_address_browser_and_request(
    client: httpx.AsyncClient, make_user: MakeUser, engine: AsyncEngine
) -> None:
    user = await make_user(role="lead")
    answer = await post_login(client, user.email, DEFAULT_PASSWORD, "req-sign-in-1")
    assert answer.status_code == 303
    assert answer.headers["x-request-id"] == "req-sign-in-1"
    row = await only(engine, Action.SIGN_IN)
    assert (row.actor_id, row.actor_label) == (user.id, user.email)
    assert (row.object_type, row.object_id) == ("user", str(user.id))
    assert row.detail == {"method": "password", "role": "lead"}
    assert_from(row, "req-sign-in-1")
    assert [r.action for r in await rows(engine)] == [Action.SIGN_IN.value]


async def test_a_failed_sign_in_names_the_normalised_email_never_the_password(
    client: httpx.AsyncClient, make_user: MakeUser, engine: AsyncEngine
) -> None:
    user = await make_user()
    typed = f"  {user.email.upper()} "
    answer = await post_login(client, typed, "Wrong-Guess-4711", "req-failed-1")
    assert answer.status_code == 400
    row = await only(engine, Action.SIGN_IN_FAILED)
    assert (row.actor_id, row.actor_label) == (None, user.email)
    assert row.detail == {"method": "password", "email_shaped": True}
    assert_from(row, "req-failed-1")
    assert "Wrong-Guess-4711" not in repr(row.model_dump())
    assert await rows(engine, Action.SIGN_IN) == []


async def test_a_password_typed_into_the_email_field_is_not_kept(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    answer = await post_login(client, "my secret words", "x" * 12, "req-failed-2")
    assert answer.status_code == 400
    row = await only(engine, Action.SIGN_IN_FAILED)
    assert row.actor_label is None
    assert row.detail == {"method": "password", "email_shaped": False}
    assert "secret words" not in repr(row.model_dump())


async def test_a_throttled_sign_in_is_its_own_row(
    client: httpx.AsyncClient, make_user: MakeUser, engine: AsyncEngine
) -> None:
    user = await make_user()
    for n in range(throttle.ACCOUNT_POLICY.max_failures):
        assert (await post_login(client, user.email, "wrong", f"req-f-{n}")).status_code == 400
    refused = await post_login(client, user.email, DEFAULT_PASSWORD, "req-throttled")
    assert refused.status_code == 429
    row = await only(engine, Action.SIGN_IN_THROTTLED)
    assert (row.actor_id, row.actor_label) == (None, user.email)
    assert row.detail is not None
    assert row.detail["scope"] == "account" and row.detail["retry_after_minutes"] >= 1
    assert_from(row, "req-throttled")
    failed = await rows(engine, Action.SIGN_IN_FAILED)
    assert len(failed) == throttle.ACCOUNT_POLICY.max_failures
    assert await rows(engine, Action.SIGN_IN) == []  # the right password was not tried


async def test_signing_out_is_one_row(signed_in: SignedIn, engine: AsyncEngine) -> None:
    client, user = await signed_in()
    answer = await client.post("/logout", headers=origin("req-sign-out"))
    assert answer.status_code == 303
    row = await only(engine, Action.SIGN_OUT)
    assert (row.actor_id, row.actor_label) == (user.id, user.email)
    assert (row.object_type, row.object_id) == ("user", str(user.id))
    assert_from(row, "req-sign-out")
    assert await rows(engine, Action.SIGN_OUT_EVERYWHERE) == []


async def test_signing_out_everywhere_is_one_row_of_its_own(
    signed_in: SignedIn, engine: AsyncEngine
) -> None:
    client, user = await signed_in()
    answer = await client.post("/account/sign-out-everywhere", headers=origin("req-everywhere"))
    assert answer.status_code == 303
    row = await only(engine, Action.SIGN_OUT_EVERYWHERE)
    assert (row.actor_id, row.object_id) == (user.id, str(user.id))
    assert_from(row, "req-everywhere")
    assert await rows(engine, Action.SIGN_OUT) == []


# ---------------------------------------------------------------- API keys


async def test_making_and_revoking_a_key_are_rows_with_its_name_and_prefix_only(
    signed_in: SignedIn, engine: AsyncEngine
) -> None:
    admin, person = await signed_in(role="admin")
    made = await admin.post(
        "/admin/api-keys/", data={"name": "Shop backend"}, headers=origin("req-key-1")
    )
    assert made.status_code == 200
    secret = re.findall(r"rdk_[A-Za-z0-9_-]{43}", made.text)[0]
    created = await only(engine, Action.API_KEY_CREATED)
    assert (created.actor_id, created.actor_label) == (person.id, person.email)
    assert created.object_type == "api_key" and created.object_id is not None
    assert created.after == {"name": "Shop backend", "prefix": secret[:10], "scope": "orders:write"}
    assert_from(created, "req-key-1")

    revoke = f"/admin/api-keys/{created.object_id}/revoke"
    assert (await admin.post(revoke, headers=origin("req-key-2"))).status_code == 303
    assert (await admin.post(revoke, headers=origin("req-key-3"))).status_code == 303  # again
    revoked = await only(engine, Action.API_KEY_REVOKED)  # the second changed nothing
    assert revoked.object_id == created.object_id
    assert (revoked.before, revoked.after) == ({"revoked": False}, {"revoked": True})
    assert_from(revoked, "req-key-2")
    every_row = repr([r.model_dump() for r in await rows(engine)])
    assert secret not in every_row and api_keys.hash_key(secret) not in every_row


# ---------------------------------------------------------------- imports


async def test_an_order_feed_request_is_one_row_with_its_counts(
    new_client: NewClient, engine: AsyncEngine
) -> None:
    async with session_scope(engine) as session:
        made = await api_keys.create_key(session, name="Shop backend", actor=Actor(label="cli"))
    feed = await new_client()
    feed.headers["authorization"] = f"Bearer {made.secret}"
    orders: list[dict[str, Any]] = [
        {"paymentRequestId": "PR-1", "buyerName": "Mei Chen"},
        {"paymentRequestId": "PR-2", "buyerEmail": "not-an-email"},
    ]
    answer = await feed.post("/api/orders", json=orders, headers=origin("req-feed-1"))
    assert answer.status_code == 422  # one of the two was refused
    again = await feed.post("/api/orders", json=orders[0], headers=origin("req-feed-2"))
    assert again.status_code == 200
    assert (await feed.post("/api/orders", content=b"{", headers=origin("x"))).status_code == 400

    first, second = await rows(engine, Action.IMPORTED)  # the unreadable body imported nothing
    assert first.actor_id is None
    assert first.actor_label == f"API key “Shop backend” ({made.key.prefix}…)"
    assert (first.object_type, first.object_id) == ("api_key", str(made.key.id))
    assert first.detail == {
        "source": "api",
        "records": 2,
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }
    assert_from(first, "req-feed-1")
    assert second.detail is not None and second.detail["unchanged"] == 1
    assert_from(second, "req-feed-2")
    assert made.secret not in repr([first.model_dump(), second.model_dump()])


CSV = (
    b"paymentRequestId,buyerName,buyerEmail\n"
    b"PR-1,Mei Chen,mei@example.com\n"
    b"PR-2,Sam,not-an-email\n"
    b"PR-3,Ada,ada@example.com\n"
)


async def test_a_csv_upload_is_one_row_when_it_has_been_imported(
    signed_in: SignedIn, engine: AsyncEngine
) -> None:
    lead, person = await signed_in(role="lead")
    answer = await lead.post(
        "/orders/import",
        files={"file": ("orders.csv", CSV, "text/csv")},
        headers={"HX-Request": "true", **origin("req-upload")},
    )
    assert answer.status_code == 200, answer.text
    match = re.search(r'id="import-(\d+)"', answer.text)
    assert match

    async def recorded() -> list[AuditEvent]:
        return await rows(engine, Action.IMPORTED)

    row = (await wait_until(recorded, what="the import's audit row"))[0]
    assert (row.actor_id, row.actor_label) == (person.id, person.email)
    assert (row.object_type, row.object_id) == ("order_import", match[1])
    assert row.detail == {
        "source": "csv",
        "filename": "orders.csv",
        "status": "done",
        "lines": 3,
        "processed": 3,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }
    assert_from(row, "req-upload")
    assert len(await rows(engine, Action.IMPORTED)) == 1


# ---------------------------------------------------------------- append-only


@only_postgres
async def test_postgres_refuses_to_change_or_remove_audit_rows(settings: Settings) -> None:
    """The app's own engine (its role, its URL) may add rows and nothing else."""
    engine = make_engine(settings.database_url)
    try:
        async with session_scope(engine) as session:
            event = await audit.record(
                session, Action.SIGN_OUT, Actor(label="someone"), detail={"n": 1}
            )
            await session.flush()
            pk = event.id
        statements = {
            "UPDATE": sa.update(AuditEvent).values(actor_label="someone else"),
            "DELETE": sa.delete(AuditEvent).where(col(AuditEvent.id) == pk),
            "TRUNCATE": sa.text("TRUNCATE audit_events"),
        }
        for operation, statement in statements.items():
            with pytest.raises(DBAPIError) as refused:
                async with session_scope(engine) as session:
                    await session.exec(statement)  # type: ignore[call-overload]
            assert f"audit_events is append-only ({operation} refused)" in str(refused.value)
            assert getattr(refused.value.orig, "sqlstate", None) == "42501"
        async with session_scope(engine) as session:
            kept = (await session.exec(select(AuditEvent))).all()
        assert [(r.id, r.actor_label, r.detail) for r in kept] == [(pk, "someone", {"n": 1})]
    finally:
        await engine.dispose()
