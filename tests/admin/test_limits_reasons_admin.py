"""/admin/limits, /admin/reasons, /admin/permissions and the /admin index, with their CLI
commands: happy paths, bad input next to the field, CSRF, audit rows."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from markupsafe import escape
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from web.db import session_scope
from web.models import AuditEvent, RefundReason, Role, SpendingLimit, User
from web.routes.admin import ADMIN_PAGES
from web.rules.access import ADMIN_AREA, ROLE_PERMISSIONS, Permission
from web.rules.caps import Caps
from web.services.limits import caps_for

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
Audit = Callable[..., Awaitable[list[AuditEvent]]]


@pytest.fixture
def in_process() -> bool:
    return True


@pytest.fixture
async def admin(signed_in: SignedIn) -> tuple[httpx.AsyncClient, User]:
    return await signed_in(role="admin", email="ada@desk.test")


async def limit_rows(
    engine: AsyncEngine,
) -> list[tuple[str | None, int | None, str, int | None, int | None]]:
    async with session_scope(engine) as session:
        rows = (await session.exec(select(SpendingLimit))).all()
        found = [(r.role, r.user_id, r.currency, r.max_single_minor, r.max_day_minor) for r in rows]
        return sorted(found, key=lambda r: (r[0] is None, r[0] or "", r[1] or 0, r[2]))


async def caps_of(engine: AsyncEngine, user: User, currency: str) -> Caps:
    async with session_scope(engine) as session:
        fresh = await session.get(User, user.id)
        assert fresh is not None
        return await caps_for(session, fresh, currency)


# ---------------------------------------------------------------- limits


async def test_a_role_limit_and_a_persons_own_limit_replacing_it(
    admin: tuple[httpx.AsyncClient, User],
    make_user: Callable[..., Awaitable[User]],
    engine: AsyncEngine,
    audit_rows: Audit,
) -> None:
    client, me = admin
    agent = await make_user(role="agent", name="Aki")

    role = await client.post(
        "/admin/limits/",
        data={
            "subject": "role:agent",
            "currency": "usd",
            "max_single": "500",
            "max_day": "1,000.50",
        },
    )
    own = await client.post(
        "/admin/limits/",
        data={
            "subject": f"user:{agent.id}",
            "currency": "JPY",
            "max_single": "¥5,000",
            "max_day": "",
        },
    )

    assert role.status_code == own.status_code == 303
    shown = await client.get("/admin/limits/")
    assert (
        "Saved the limit of the agent role: USD: $500.00 per refund, $1,000.50 per 24 h"
        in shown.text
    )
    assert await limit_rows(engine) == [
        ("agent", None, "USD", 50_000, 100_050),
        (None, agent.id, "JPY", 5_000, None),
    ]
    assert await caps_of(engine, agent, "USD") == Caps(50_000, 100_050)
    assert await caps_of(engine, agent, "JPY") == Caps(5_000, None)  # no day cap of the role's
    text = shown.text
    assert "own limit" in text and "agent role" in text and "every refund needs approval" in text
    first, second = await audit_rows("limit.changed")
    assert first.actor_id == me.id and first.object_id == "role:agent:USD"
    assert (first.before, first.after) == (
        None,
        {"max_single_minor": 50_000, "max_day_minor": 100_050},
    )
    assert second.object_id == f"user:{agent.email}:JPY"


async def test_editing_and_removing_a_limit(
    admin: tuple[httpx.AsyncClient, User], engine: AsyncEngine, audit_rows: Audit
) -> None:
    client, _ = admin
    data = {"subject": "role:lead", "currency": "EUR", "max_single": "100", "max_day": ""}
    await client.post("/admin/limits/", data=data)
    async with session_scope(engine) as session:
        [row] = (await session.exec(select(SpendingLimit))).all()
        pk = row.id

    edit_page = await client.get(f"/admin/limits/?edit={pk}")
    assert 'value="100.00"' in edit_page.text and "Edit a limit" in edit_page.text
    await client.post("/admin/limits/", data={**data, "max_single": "0", "max_day": "50"})
    assert await limit_rows(engine) == [("lead", None, "EUR", 0, 5_000)]
    removed = await client.post(f"/admin/limits/{pk}/remove")

    assert removed.status_code == 303
    assert await limit_rows(engine) == []
    changes = await audit_rows("limit.changed")
    assert [(c.before, c.after) for c in changes] == [
        (None, {"max_single_minor": 10_000, "max_day_minor": None}),
        (
            {"max_single_minor": 10_000, "max_day_minor": None},
            {"max_single_minor": 0, "max_day_minor": 5_000},
        ),
        ({"max_single_minor": 0, "max_day_minor": 5_000}, None),
    ]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"currency": "dollars"}, "currency", "is not a currency code"),
        ({"currency": ""}, "currency", "Enter a currency code"),
        ({"max_single": "12.345"}, "max_single", "at most 2 decimal places"),
        ({"max_day": "-5"}, "max_day", "cannot be negative"),
        ({"max_single": "lots"}, "max_single", "is not a number"),
        ({"max_single": "", "max_day": ""}, "max_single", "Enter at least one cap"),
        ({"subject": "role:owner"}, "subject", "Choose a role or a person"),
        ({"subject": "user:999999"}, "subject", "Choose a role or a person"),
    ],
)
async def test_bad_limit_input_is_explained_next_to_the_field(
    admin: tuple[httpx.AsyncClient, User],
    engine: AsyncEngine,
    data: dict[str, str],
    field: str,
    message: str,
) -> None:
    base = {"subject": "role:agent", "currency": "USD", "max_single": "10", "max_day": "20"}

    answer = await admin[0].post("/admin/limits/", data={**base, **data})

    assert answer.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', answer.text)
    assert error and message in error[1], answer.text
    assert await limit_rows(engine) == []


async def test_jpy_has_no_minor_unit(admin: tuple[httpx.AsyncClient, User]) -> None:
    answer = await admin[0].post(
        "/admin/limits/",
        data={"subject": "role:agent", "currency": "JPY", "max_single": "10.5", "max_day": ""},
    )
    assert answer.status_code == 422 and "JPY has no minor unit" in answer.text


async def test_the_cli_sets_role_and_user_limits(
    cli: Callable[..., str],
    make_user: Callable[..., Awaitable[User]],
    engine: AsyncEngine,
    audit_rows: Audit,
) -> None:
    agent = await make_user(role="agent", email="aki@desk.test")

    assert "role agent: USD: $500.00 per refund, $2,000.00 per 24 h" in cli(
        "limits", "set-role", "agent", "--currency", "usd", "--max", "500", "--per-day", "2000"
    )
    assert "aki@desk.test: USD: $50.00 per refund" in cli(
        "limits", "set-user", "aki@desk.test", "--currency", "USD", "--max", "50"
    )
    assert "aki@desk.test: GBP: £1.00 per refund" in cli(
        "users", "set-limit", "--email", "aki@desk.test", "--currency", "GBP", "--max", "1"
    )
    listed = cli("limits", "list")
    assert listed.index("role agent") < listed.index("user aki@desk.test")
    assert "--per-day: " in cli(
        "limits", "set-role", "lead", "--currency", "USD", "--per-day", "1.234", ok=False
    )
    assert "--currency: " in cli("limits", "set-role", "lead", "--currency", "XX", ok=False)
    assert "role agent: no USD limit" in cli("limits", "set-role", "agent", "--currency", "USD")

    assert await caps_of(engine, agent, "USD") == Caps(5_000, None)
    rows = await audit_rows("limit.changed")
    assert len(rows) == 4 and {r.actor_label for r in rows} == {"cli"}
    assert rows[-1].after is None


# ---------------------------------------------------------------- reasons


async def test_adding_and_editing_a_reason(
    admin: tuple[httpx.AsyncClient, User], engine: AsyncEngine, audit_rows: Audit
) -> None:
    client, me = admin

    added = await client.post(
        "/admin/reasons/",
        data={
            "code": "late_delivery",
            "label": "Late delivery",
            "active": "on",
            "ticket_required": "on",
            "max_percent": "30",
        },
    )
    edited = await client.post(
        "/admin/reasons/late_delivery",
        data={
            "label": "Arrived late",
            "approval_required": "on",
            "max_percent": "",
            "position": "5",
        },
    )

    assert added.status_code == edited.status_code == 303
    async with session_scope(engine) as session:
        row = await session.get(RefundReason, "late_delivery")
        assert row is not None
        assert (row.label, row.active, row.ticket_required, row.approval_required) == (
            "Arrived late",
            False,  # unticked: deactivated, never deleted
            False,
            True,
        )
        assert (row.max_percent, row.position) == (None, 5)
    page = await client.get("/admin/reasons/")
    assert page.text.index("late_delivery") < page.text.index("customer_request")
    first, second = await audit_rows("reason.changed")
    assert first.before is None and first.after is not None
    assert first.after["max_percent"] == 30 and first.actor_id == me.id
    assert second.before == first.after
    assert second.after == {
        "label": "Arrived late",
        "active": False,
        "note_required": False,
        "ticket_required": False,
        "approval_required": True,
        "max_percent": None,
        "position": 5,
    }
    edit_page = await client.get("/admin/reasons/?edit=late_delivery")
    assert 'value="Arrived late"' in edit_page.text and "Codes never change" in edit_page.text


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"code": "Late Delivery"}, "code", "lower-case letters"),
        ({"code": "goodwill"}, "code", "already a reason"),
        ({"code": "external"}, "code", "outside the desk"),
        ({"label": "  "}, "label", "Enter a label"),
        ({"max_percent": "0"}, "max_percent", "from 1 to 100"),
        ({"max_percent": "101"}, "max_percent", "from 1 to 100"),
        ({"max_percent": "12.5"}, "max_percent", "from 1 to 100"),
        ({"position": "first"}, "position", "whole number"),
    ],
)
async def test_bad_reason_input_is_explained_next_to_the_field(
    admin: tuple[httpx.AsyncClient, User],
    audit_rows: Audit,
    data: dict[str, str],
    field: str,
    message: str,
) -> None:
    base = {"code": "late_delivery", "label": "Late", "active": "on"}

    answer = await admin[0].post("/admin/reasons/", data={**base, **data})

    assert answer.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', answer.text)
    assert error and message in error[1], answer.text
    assert await audit_rows("reason.") == []


async def test_editing_an_unknown_reason_is_refused(admin: tuple[httpx.AsyncClient, User]) -> None:
    answer = await admin[0].post("/admin/reasons/nothing_here", data={"label": "X"})
    assert answer.status_code == 422 and "There is no reason “nothing_here”" in answer.text


async def test_the_cli_lists_and_sets_reasons(
    cli: Callable[..., str], engine: AsyncEngine, audit_rows: Audit
) -> None:
    assert "goodwill" in cli("reasons", "list") and "max 20 %" in cli("reasons", "list")

    added = cli("reasons", "set", "late_delivery", "--label", "Late delivery", "--ticket-required")
    changed = cli("reasons", "set", "goodwill", "--inactive", "--max-percent", "none")

    assert "Added late_delivery: Late delivery (needs ticket)" in added
    assert "Saved goodwill: Goodwill gesture (needs note)" in changed
    async with session_scope(engine) as session:
        goodwill = await session.get(RefundReason, "goodwill")
        assert goodwill is not None and not goodwill.active and goodwill.max_percent is None
        assert goodwill.note_required  # what was not given stays as it was
    assert "from 1 to 100" in cli("reasons", "set", "other", "--max-percent", "200", ok=False)
    assert "Enter a label" in cli("reasons", "set", "brand_new", ok=False)
    assert [r.actor_label for r in await audit_rows("reason.")] == ["cli", "cli"]


# ---------------------------------------------------------------- CSRF and permissions


CHANGES = [
    ("/admin/limits/", {"subject": "role:agent", "currency": "USD", "max_single": "1"}),
    ("/admin/limits/{pk}/remove", {}),
    ("/admin/reasons/", {"code": "new_one", "label": "New", "active": "on"}),
    ("/admin/reasons/goodwill", {"label": "Changed"}),
]


@pytest.mark.parametrize(("path", "data"), CHANGES)
async def test_every_change_needs_the_csrf_token(
    admin: tuple[httpx.AsyncClient, User],
    engine: AsyncEngine,
    audit_rows: Audit,
    path: str,
    data: dict[str, str],
) -> None:
    client, _ = admin
    await client.post(
        "/admin/limits/",
        data={"subject": "role:lead", "currency": "EUR", "max_single": "5"},
    )
    [(_, _, _, _, _)] = await limit_rows(engine)
    async with session_scope(engine) as session:
        [row] = (await session.exec(select(SpendingLimit))).all()
    before = len(await audit_rows())
    client.headers.pop("x-csrftoken")

    answer = await client.post(path.format(pk=row.id), data=data)

    assert answer.status_code == 403
    assert len(await audit_rows()) == before
    assert len(await limit_rows(engine)) == 1


@pytest.mark.parametrize("role", ["agent", "lead"])
async def test_only_admins_open_limits_reasons_and_permissions(
    signed_in: SignedIn, role: str
) -> None:
    client, _ = await signed_in(role=role)

    for path in ("/admin/limits/", "/admin/reasons/", "/admin/permissions"):
        assert (await client.get(path)).status_code == 403, path
    index = await client.get("/admin")
    assert index.status_code == 200 and "opens none of the admin pages" in index.text
    assert 'href="/admin"' not in (await client.get("/account")).text  # no Admin in the nav


async def test_the_permissions_table_is_the_enforced_one(
    admin: tuple[httpx.AsyncClient, User],
) -> None:
    page = (await admin[0].get("/admin/permissions")).text

    for permission in Permission:
        row = re.search(rf'<tr id="permission-{permission.value}">(.*?)</tr>', page, re.S)
        assert row, permission
        assert str(escape(permission.description)) in row[1]
        for role in Role:
            cell = re.search(rf'data-role="{role}">(.*?)</td>', row[1], re.S)
            assert cell, (permission, role)
            assert ("yes" in cell[1]) is (permission in ROLE_PERMISSIONS[role]), (permission, role)


async def test_the_admin_index_lists_every_admin_page(
    admin: tuple[httpx.AsyncClient, User],
) -> None:
    client, _ = admin
    index = await client.get("/admin")
    account = await client.get("/account")

    assert {page.permission for page in ADMIN_PAGES} == set(ADMIN_AREA)
    for path in (
        "/admin/users/",
        "/admin/limits/",
        "/admin/reasons/",
        "/admin/api-keys/",
        "/admin/permissions",
    ):
        assert f'href="{path.rstrip("/")}' in index.text, path
        assert (await client.get(path)).status_code == 200, path
    assert 'href="/admin"' in account.text and ">Admin</a>" in account.text
