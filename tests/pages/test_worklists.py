"""The worklists over HTTP: which items each queue lists (membership), and working an
item (assign, comment, close, reopen), each change a thread entry and an audit row, the
page and the navigation's count kept true by the live version."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from html import unescape

import httpx
from sqlmodel import col, select

from tests.pages.conftest import Desk
from tests.pages.factories import add_payment, add_refund
from web.live import parse_watch, since_seen, worklist_version
from web.models import Alert, AlertKind, AlertNote, AuditEvent, RefundStatus, User
from web.rules.worklists import Queue, queue_of

SignIn = Callable[..., Awaitable[tuple[httpx.AsyncClient, User]]]
HTMX = {"HX-Request": "true"}
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def _listed(html: str) -> set[int]:
    return {int(pk) for pk in re.findall(r'<tr id="item-(\d+)"', html)}


def _tab_counts(html: str) -> dict[str, int]:
    found = re.findall(
        r'data-queue="([a-z]+)".*?<span class="queue-count[^"]*">(\d+)</span>', html, re.S
    )
    return {queue: int(n) for queue, n in found}


async def _post(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
    return await client.post(url, data=data, headers=HTMX)


async def test_worklist_membership_each_queue_lists_exactly_its_items(
    desk: Desk, signed_in: SignIn
) -> None:
    lead, _ = await signed_in(role="lead")
    # One open item of every kind the desk raises and one no table names yet (it lands
    # in Discrepancies), a closed item, and a refund waiting for approval.
    kinds: list[str] = [k.value for k in AlertKind] + ["settlement_mismatch"]
    async with desk.session() as s:
        payment = await add_payment(s, created_at=START)
        refund = await add_refund(s, payment, status=RefundStatus.FAILED)
        awaiting = await add_refund(
            s, payment, status=RefundStatus.AWAITING_APPROVAL, refund_id=None
        )
        items: dict[str, Alert] = {}
        for n, kind in enumerate(kinds):
            items[kind] = Alert(
                dedupe_key=f"{kind}:refund:{refund.id}",
                kind=kind,  # type: ignore[arg-type]  # any kind, as stored
                refund_pk=refund.id,
                payment_pk=payment.id,
                message=f"about {kind}",
                created_at=START + timedelta(minutes=n),
            )
            s.add(items[kind])
        closed = Alert(
            dedupe_key="stuck:refund:closed",
            kind=AlertKind.STUCK,
            message="settled long ago",
            created_at=START,
            resolved_at=START + timedelta(minutes=30),
        )
        s.add(closed)
        await s.commit()

    expected: dict[Queue, set[int]] = {q: set() for q in Queue}
    for kind, alert in items.items():
        expected[queue_of(kind)].add(alert.id or 0)
    assert expected[Queue.FAILED] == {items["refund_failed"].id}
    assert expected[Queue.REVERSED] == {items["reversed"].id}
    assert items["settlement_mismatch"].id in expected[Queue.DISCREPANCY]

    first = (await lead.get("/worklists")).text
    counts = _tab_counts(first)
    assert counts == {q.value: len(ids) for q, ids in expected.items()} | {"approval": 1}
    for queue in Queue:
        if queue.derived:
            continue
        page = (await lead.get(f"/worklists?queue={queue.value}")).text
        assert _listed(page) == expected[queue], queue
    assert _listed((await lead.get("/worklists?queue=overdue&show=closed")).text) == {closed.id}
    # Awaiting approval is the refunds that wait: deciding takes one off.
    approvals = (await lead.get("/worklists?queue=approval")).text
    assert f'href="/refunds/{awaiting.id}"' in approvals
    async with desk.session() as s:
        row = await s.get(type(awaiting), awaiting.id)
        assert row is not None
        row.status = RefundStatus.REJECTED
        await s.commit()
    approvals = (await lead.get("/worklists?queue=approval")).text
    assert f'href="/refunds/{awaiting.id}"' not in approvals
    assert _tab_counts(approvals)["approval"] == 0
    # The navigation counts every open raised item.
    count = (await lead.get("/worklists/count", headers=HTMX)).text
    assert f">{len(kinds)}<" in count.replace('<span class="sr-only"> open</span>', "<")


async def test_an_item_is_assigned_commented_closed_and_reopened_with_who_and_when(
    desk: Desk, signed_in: SignIn
) -> None:
    ana, ana_user = await signed_in(role="lead", name="Ana Lead")
    bo, bo_user = await signed_in(role="admin", name="Bo Admin")
    async with desk.session() as s:
        alert = Alert(dedupe_key="stuck:refund:x", kind=AlertKind.STUCK, message="slow one")
        s.add(alert)
        await s.commit()
    url = f"/worklists/{alert.id}"

    # Only people who work the worklists can be given an item.
    refused = await _post(ana, f"{url}/assign", {"assignee": str(desk.agent.id)})
    assert refused.status_code == 422 and "only be assigned to active team leads" in refused.text
    assigned = await _post(ana, f"{url}/assign", {"assignee": str(bo_user.id)})
    assert assigned.status_code == 200 and assigned.headers["hx-trigger"] == "desk:stale"
    assert "Bo Admin" in _text(
        re.search(r"<dd data-assignee>.*?</dd>", assigned.text, re.S).group(0)
    )  # type: ignore[union-attr]
    mine = (await bo.get("/worklists?queue=overdue&who=mine")).text
    assert _listed(mine) == {alert.id}
    assert _listed((await ana.get("/worklists?queue=overdue&who=mine")).text) == set()
    assert _listed((await ana.get("/worklists?queue=overdue&who=unassigned")).text) == set()

    commented = await _post(bo, f"{url}/comment", {"note": "Asked Antom <support>"})
    assert commented.status_code == 200
    assert "Asked Antom &lt;support&gt;" in commented.text  # escaped
    blank = await _post(bo, f"{url}/close", {"note": "   "})
    assert blank.status_code == 422 and "Say what was done before closing it" in blank.text
    closed = await _post(bo, f"{url}/close", {"note": "Antom settled it by hand"})
    assert closed.status_code == 200 and 'data-state="closed"' in closed.text
    again = await _post(ana, f"{url}/close", {"note": "me too"})
    assert again.status_code == 422 and "Bo Admin closed it already" in again.text
    assert _listed((await ana.get("/worklists?queue=overdue")).text) == set()
    assert _listed((await ana.get("/worklists?queue=overdue&show=closed")).text) == {alert.id}
    reopened = await _post(ana, f"{url}/reopen", {"note": "It came back"})
    assert reopened.status_code == 200 and 'data-state="open"' in reopened.text
    assert _listed((await ana.get("/worklists?queue=overdue")).text) == {alert.id}

    # The thread: every change, in order, with who.
    page = await ana.get(url)
    thread = re.findall(
        r'data-note-kind="(\w+)">\s*<div class="timeline-head"><strong>([^<]+)</strong>', page.text
    )
    assert thread == [
        ("assign", "Ana Lead"),
        ("comment", "Bo Admin"),
        ("close", "Bo Admin"),
        ("reopen", "Ana Lead"),
    ]
    async with desk.session() as s:
        stored = await s.get(Alert, alert.id)
        assert stored is not None
        assert (stored.resolved_at, stored.resolved_by, stored.assignee_id) == (
            None,
            None,
            bo_user.id,
        )
        notes = (await s.exec(select(AlertNote).order_by(col(AlertNote.id)))).all()
        assert [n.body for n in notes] == [
            "Assigned to Bo Admin",
            "Asked Antom <support>",
            "Antom settled it by hand",
            "It came back",
        ]
        rows = (
            await s.exec(
                select(AuditEvent)
                .where(col(AuditEvent.object_type) == "worklist_item")
                .order_by(col(AuditEvent.id))
            )
        ).all()
    assert [(r.action, r.actor_id, r.object_id) for r in rows] == [
        ("worklist.assigned", ana_user.id, str(alert.id)),
        ("worklist.commented", bo_user.id, str(alert.id)),
        ("worklist.closed", bo_user.id, str(alert.id)),
        ("worklist.reopened", ana_user.id, str(alert.id)),
    ]
    assert rows[0].before == {"assignee_id": None} and rows[0].after == {"assignee_id": bo_user.id}
    assert all(r.request_id and r.actor_label for r in rows)


async def test_a_plain_form_post_redirects_back_to_the_item_with_a_message(
    desk: Desk, signed_in: SignIn
) -> None:
    lead, _ = await signed_in(role="lead")
    async with desk.session() as s:
        alert = Alert(dedupe_key="mismatch:x", kind=AlertKind.MISMATCH, message="odd amount")
        s.add(alert)
        await s.commit()
    done = await lead.post(
        f"/worklists/{alert.id}/comment", data={"note": "looking"}, follow_redirects=True
    )
    assert done.status_code == 200 and str(done.url).endswith(f"/worklists/{alert.id}")
    assert "Comment added" in done.text and "looking" in done.text


async def test_old_alerts_links_land_on_the_worklists(desk: Desk, signed_in: SignIn) -> None:
    lead, _ = await signed_in(role="lead")
    moved = await lead.get("/alerts")
    assert moved.status_code == 301 and moved.headers["location"] == "/worklists"
    assert (await desk.client.get("/alerts")).status_code == 403  # agents still not


async def test_every_change_moves_the_live_version_the_pages_watch(
    desk: Desk, signed_in: SignIn
) -> None:
    lead, _ = await signed_in(role="lead")
    async with desk.session() as s:
        alert = Alert(dedupe_key="unknown_result:x", kind=AlertKind.UNKNOWN_RESULT, message="?")
        s.add(alert)
        await s.commit()
        seen = await worklist_version(s)
    count = (await lead.get("/worklists/count", headers=HTMX)).text
    assert f'data-watch="alerts={seen}"' in count
    page = (await lead.get(f"/worklists/{alert.id}")).text
    assert f"alerts={seen}" in page  # the item watches the same version

    async def moved() -> bool:
        async with desk.session() as s:
            return (await since_seen(s, parse_watch(alerts=seen))).alerts

    assert not await moved()
    # A comment changes no count, but the version (and so every watching page) moves.
    await _post(lead, f"/worklists/{alert.id}/comment", {"note": "still looking"})
    assert await moved()
