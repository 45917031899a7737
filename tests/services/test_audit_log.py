"""Reading the audit trail (web/services/audit_log.py): filters, days in the reader's time
zone, keyset pages newest first on (at, id), and the compact before/after view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from web.db import session_scope
from web.models import AuditEvent
from web.services import audit_log
from web.services.audit import Action
from web.settings import Settings

T0 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # 2026-03-02 07:30 in Singapore


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


async def add(engine: AsyncEngine, *events: dict[str, Any]) -> list[int]:
    async with session_scope(engine) as session:
        made = [
            AuditEvent(**({"at": T0, "action": Action.SIGN_IN.value} | fields)) for fields in events
        ]
        session.add_all(made)
        await session.flush()
        return [e.id or 0 for e in made]


async def listed(engine: AsyncEngine, page_size: int = 25, **filters: str) -> list[int]:
    async with session_scope(engine) as session:
        page = await audit_log.list_events(
            session, audit_log.audit_filters(**filters), page_size=page_size
        )
    return [e.id or 0 for e in page.rows]


async def test_pages_cover_every_row_once_newest_first_in_both_directions(
    engine: AsyncEngine,
) -> None:
    # Ties on ``at`` (rows recorded in one transaction share it) are broken by id.
    times = [T0 + timedelta(seconds=s) for s in (0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4)]
    ids = await add(engine, *({"at": t} for t in times))
    expected = [i for _, i in sorted(zip(times, ids, strict=True), reverse=True)]

    forward: list[list[int]] = []
    cursor = ""
    async with session_scope(engine) as session:
        while True:
            f = audit_log.audit_filters(cursor=cursor)
            page = await audit_log.list_events(session, f, page_size=3)
            forward.append([e.id or 0 for e in page.rows])
            assert page.total == len(ids)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert [i for p in forward for i in p] == expected
        assert [len(p) for p in forward] == [3, 3, 3, 2]

        # Back from the last page with the previous links: the same pages, reversed.
        backward = [forward[-1]]
        prev = page.prev_cursor
        while prev is not None:
            page = await audit_log.list_events(
                session, audit_log.audit_filters(cursor=prev), page_size=3
            )
            backward.append([e.id or 0 for e in page.rows])
            prev = page.prev_cursor
    assert backward[::-1] == forward


async def test_a_row_recorded_while_paging_does_not_shift_the_pages(engine: AsyncEngine) -> None:
    ids = await add(engine, *({"at": T0 + timedelta(seconds=s)} for s in range(6)))
    async with session_scope(engine) as session:
        first = await audit_log.list_events(session, audit_log.audit_filters(), page_size=3)
    assert first.next_cursor is not None
    await add(engine, {"at": T0 + timedelta(minutes=5)})  # newer than everything
    async with session_scope(engine) as session:
        second = await audit_log.list_events(
            session, audit_log.audit_filters(cursor=first.next_cursor), page_size=3
        )
    assert [e.id for e in second.rows] == ids[2::-1]


async def test_filters_by_actor_action_and_object(engine: AsyncEngine) -> None:
    mei, sam, key, refund = await add(
        engine,
        {"actor_label": "Mei.Chen@desk.test", "object_type": "user", "object_id": "7"},
        {"actor_label": "sam_100%@desk.test", "action": Action.SIGN_OUT.value},
        {
            "actor_label": "API key “Shop” (rdk_abc123…)",
            "action": Action.IMPORTED.value,
            "object_type": "api_key",
            "object_id": "3",
        },
        {"actor_label": "poller", "action": Action.REFUND_RESULT.value, "object_type": "refund"},
    )
    assert await listed(engine, actor="mei.chen") == [mei]  # any case, any part
    assert await listed(engine, actor="100%") == [sam]  # % is a plain character
    assert await listed(engine, actor="_1") == [sam]
    assert await listed(engine, actor="desk.test") == [sam, mei]
    assert await listed(engine, action=Action.IMPORTED.value) == [key]
    assert await listed(engine, object_type="api_key", object_id="3") == [key]
    assert await listed(engine, object_type="user") == [mei]
    assert await listed(engine, object_type="refund") == [refund]
    assert await listed(engine, object_id="3") == [key]
    assert await listed(engine, object_type="api_key", object_id="7") == []
    # What the form can hold but the trail does not know is ignored, not an error.
    assert await listed(engine, action="auth.nonsense") == [refund, key, sam, mei]


async def test_days_are_whole_days_in_the_readers_time_zone(engine: AsyncEngine) -> None:
    late, next_day = await add(engine, {"at": T0}, {"at": T0 + timedelta(hours=1)})
    # T0 is 23:30 on 1 March in UTC, and 07:30 on 2 March in Singapore.
    assert await listed(engine, date_from="2026-03-01", date_to="2026-03-01") == [late]
    assert await listed(engine, date_from="2026-03-02", date_to="2026-03-02") == [next_day]
    singapore = {"zone": "Asia/Singapore", "date_from": "2026-03-02", "date_to": "2026-03-02"}
    assert await listed(engine, **singapore) == [next_day, late]
    assert await listed(engine, zone="Asia/Singapore", date_to="2026-03-01") == []
    assert await listed(engine, date_from="2026-13-40") == [next_day, late]  # malformed


def test_filters_make_the_links_that_keep_them() -> None:
    f = audit_log.audit_filters(
        actor=" mei ", action="auth.sign_in", object_type="user", date_from="2026-03-02"
    )
    assert f.active
    assert f.query_params(cursor="abc") == {
        "actor": "mei",
        "action": "auth.sign_in",
        "object_type": "user",
        "date_from": "2026-03-02",
        "cursor": "abc",
    }
    assert not audit_log.audit_filters(cursor="abc").active


def test_before_and_after_show_only_what_changed() -> None:
    event = AuditEvent(
        action=Action.USER_ROLE_CHANGED.value,
        before={"role": "agent", "name": "Mei", "gone": 1},
        after={"role": "lead", "name": "Mei", "limits": {"USD": 5000}, "note": "x" * 200},
    )
    shown = [(c.field, c.before, c.after) for c in audit_log.changes(event)]
    assert shown[:3] == [
        ("role", "agent", "lead"),
        ("gone", "1", None),
        ("limits", None, '{"USD": 5000}'),
    ]
    field, before, after = shown[3]
    assert (field, before) == ("note", None)
    assert after is not None and len(after) == 80 and after.endswith("…")
    created = AuditEvent(action=Action.API_KEY_CREATED.value, after={"name": "Shop"})
    assert [(c.before, c.after) for c in audit_log.changes(created)] == [(None, "Shop")]
    assert audit_log.details(AuditEvent(action="x", detail={"records": 2})) == [("records", "2")]
