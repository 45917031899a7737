"""The audit trail page (/admin/audit): admins only, filters in the address bar, pages
that follow each other without repeats or gaps, and rows shown escaped and compact."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from web.db import session_scope
from web.models import AuditEvent, User
from web.services.audit import Action
from web.services.listing import PAGE_SIZE
from web.settings import Settings

SignedIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
ROW = re.compile(r'id="audit-row-(\d+)"')
NEXT = re.compile(r'href="([^"]+)" rel="next"')
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
def in_process() -> bool:
    return True


@pytest.fixture
async def admin(signed_in: SignedIn) -> httpx.AsyncClient:
    client, _ = await signed_in(role="admin")
    return client


async def add(engine: AsyncEngine, *events: AuditEvent) -> list[int]:
    async with session_scope(engine) as session:
        session.add_all(events)
        await session.flush()
        return [e.id or 0 for e in events]


def shown(page: str) -> list[int]:
    return [int(i) for i in ROW.findall(page)]


async def test_admins_page_through_everything_once_newest_first(
    admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # Three rows to a second: ties on ``at`` are broken by id.
    ids = await add(
        engine,
        *(
            AuditEvent(at=T0 + timedelta(seconds=n // 3), action=Action.REFUND_SENT.value)
            for n in range(2 * PAGE_SIZE + 4)
        ),
    )
    seen: list[int] = []
    url: str | None = "/admin/audit?action=refund.sent"
    while url is not None:
        answer = await admin.get(url, headers={"HX-Request": "true"})
        assert answer.status_code == 200
        assert "<html" not in answer.text  # the table alone, for htmx
        seen.extend(shown(answer.text))
        found = NEXT.search(answer.text)
        url = html.unescape(found[1]) if found else None
        if url is not None:
            assert "action=refund.sent" in url  # the filters ride along
    times = {i: T0 + timedelta(seconds=n // 3) for n, i in enumerate(ids)}
    assert seen == sorted(ids, key=lambda i: (times[i], i), reverse=True)


async def test_filters_narrow_the_rows_and_stay_in_the_form(
    admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    mei, _sam, key = await add(
        engine,
        AuditEvent(at=T0, action=Action.SIGN_IN.value, actor_label="mei@desk.test"),
        AuditEvent(at=T0, action=Action.SIGN_IN.value, actor_label="sam@desk.test"),
        AuditEvent(
            at=T0 + timedelta(days=1),
            action=Action.API_KEY_REVOKED.value,
            actor_label="mei@desk.test",
            object_type="api_key",
            object_id="12",
            before={"revoked": False},
            after={"revoked": True},
            detail={"name": "Shop", "prefix": "rdk_abc123"},
        ),
    )
    page = await admin.get("/admin/audit?actor=MEI&date_to=2026-03-01")
    assert page.status_code == 200
    assert shown(page.text) == [mei]
    assert 'value="MEI"' in page.text and 'value="2026-03-01"' in page.text
    assert "1 event matches" in page.text

    page = await admin.get("/admin/audit?object_type=api_key&object_id=12")
    assert shown(page.text) == [key]
    assert '<option value="api_key" selected>' in page.text
    row = page.text.split(f'id="audit-row-{key}"', 1)[1].split("</tr>", 1)[0]
    assert "<del>false</del> → <ins>true</ins>" in row  # before → after, compactly
    assert "rdk_abc123" in row

    nothing = await admin.get("/admin/audit?action=user.created")
    assert shown(nothing.text) == [] and "No event matches these filters" in nothing.text


async def test_what_a_row_holds_is_shown_escaped(
    admin: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await add(
        engine,
        AuditEvent(
            at=T0,
            action=Action.SIGN_IN_FAILED.value,
            actor_label="<script>alert(1)</script>@x.test",
            user_agent='"><img src=x onerror=alert(1)>',
            detail={"reason": "<b>bold</b>"},
        ),
    )
    page = await admin.get("/admin/audit?action=auth.sign_in_failed")
    assert "<script>alert(1)" not in page.text and "<b>bold</b>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@x.test" in page.text
    assert "<img src=x" not in page.text


@pytest.mark.parametrize("role", ["agent", "lead"])
async def test_only_admins_see_the_trail_or_its_link(signed_in: SignedIn, role: str) -> None:
    client, _ = await signed_in(role=role)
    assert (await client.get("/admin/audit")).status_code == 403
    assert 'href="/admin/audit"' not in (await client.get("/payments")).text


async def test_the_admin_area_links_admins_to_the_trail(admin: httpx.AsyncClient) -> None:
    page = await admin.get("/admin/audit")
    assert re.search(r'<a href="/admin"[^>]*aria-current="page">Admin</a>', page.text)
    assert 'href="/admin/audit"' in (await admin.get("/admin")).text
