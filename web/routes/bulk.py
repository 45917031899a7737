"""Bulk refunds at the edge: upload, preview, the requester's edits, four eyes, cancel,
live progress and the result file.

Thin: every rule (who may approve, what a row is expected to do, what the run sends) is
``web.services.bulk`` / ``web.services.bulk_run``'s. Changes answer with a redirect to
the batch's page and a flash message; the batch's state part re-reads itself live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State, UploadFile
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, MultipartBody, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Response, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import REFUSED, page_or_fragment, request_time
from web.live import batch_version
from web.models import BulkBatch, BulkStatus, User
from web.rules.access import Permission, can, may_approve
from web.services import bulk, listing
from web.services.audit import Actor
from web.services.bulk_run import BulkRunner
from web.services.reasons import catalogue
from web.settings import Settings

MAX_UPLOAD_BYTES = bulk.MAX_CSV_BYTES + 64 * 1024
ROWS_SHOWN = 500


@dataclass
class UploadForm:
    file: UploadFile | None = None


@dataclass
class RevisionForm:
    revision: int = -1
    comment: str = ""


@dataclass
class ExcludeForm:
    revision: int = -1
    excluded: str = "1"


@dataclass
class RowForm:
    revision: int = -1
    amount: str = ""
    reason: str = ""
    note: str = ""


def _back(request: Request[Any, Any, Any], batch_pk: int) -> Redirect:
    return Redirect(request.app.route_reverse("bulk:detail", batch_pk=batch_pk), status_code=303)


async def state_context(session: AsyncSession, batch: BulkBatch, user: User) -> dict[str, Any]:
    """What the live part of a batch's page shows: status, progress, what one may do."""
    assert batch.id is not None
    version = await batch_version(session, batch.id)  # reloads the row
    batch = bulk.typed(batch)
    progress = await bulk.progress(session, batch, request_time())
    requester = await session.get(User, batch.created_by)
    decider = await session.get(User, batch.decided_by) if batch.decided_by else None
    awaiting = batch.status is BulkStatus.AWAITING
    return {
        "batch": batch,
        "progress": progress,
        "requester": requester,
        "decider": decider,
        "version": version,
        "own": user.id == batch.created_by,
        "may_decide": awaiting and may_approve(user, batch.created_by),
        "may_cancel": not batch.status.final and can(user, Permission.RUN_BULK),
    }


class BulkController(Controller):
    path = "/bulk"
    guards = (requires(Permission.RUN_BULK),)
    include_in_schema = False

    @get("/", name="bulk:index")
    async def index(self, db_session: NamedDependency[AsyncSession]) -> Template:
        return await _index(db_session)

    @post("/", name="bulk:upload", request_max_body_size=MAX_UPLOAD_BYTES, status_code=200)
    async def upload(
        self,
        request: Request[Any, Any, Any],
        data: MultipartBody[UploadForm],
        db_session: NamedDependency[AsyncSession],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        if data.file is None or not data.file.filename:
            return await _index(db_session, ["Choose a CSV file to upload"])
        parsed = bulk.parse_csv(await data.file.read(), max_rows=settings.bulk.max_rows)
        if parsed.errors:
            return await _index(db_session, parsed.errors)
        try:
            batch = await bulk.create_batch(
                engine,
                user=current_user,
                inputs=bulk.rows_of(parsed),
                source="csv",
                filename=data.file.filename,
                now=request_time(),
                who=actor,
                recent_days=settings.bulk.recent_days,
            )
        except bulk.BulkError as exc:
            return await _index(db_session, [str(exc)])
        if parsed.ignored_columns:
            flash(
                request,
                "Columns the desk does not use were ignored: " + ", ".join(parsed.ignored_columns),
                category="info",
            )
        return _back(request, batch.id or 0)

    @post("/selection", name="bulk:from_selection", status_code=200)
    async def from_selection(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        """Payments ticked on the payments list (or all those its filters match), each
        refunded in full for one reason: a batch awaiting approval, like an upload."""
        form = await request.form()
        limit = settings.bulk.max_rows
        if form.get("all") == "1":
            filters = listing.payment_filters(
                **{k: str(form.get(f"f_{k}", "")) for k in _FILTER_FIELDS},
                zone=current_user.time_zone,
            )
            keys = await listing.payment_ids_matching(db_session, filters, limit=limit + 1)
        else:
            ticked = [int(v) for v in form.getall("payment", []) if str(v).isdigit()]
            keys = await listing.payment_ids_of(db_session, ticked[: limit + 1])
        if not keys:
            return await _index(db_session, ["Tick at least one payment on the payments list"])
        if len(keys) > limit:
            return await _index(db_session, [f"More than {limit:,} payments: narrow the filter"])
        reason, note = str(form.get("reason", "")), str(form.get("note", ""))
        inputs = [
            bulk.RowInput(line=i + 1, key=key, key_kind="payment_id", amount_text=bulk.FULL,
                          reason=reason, note=note)
            for i, key in enumerate(keys)
        ]  # fmt: skip
        await db_session.rollback()  # the batch is written in its own transaction
        try:
            batch = await bulk.create_batch(
                engine,
                user=current_user,
                inputs=inputs,
                source="selection",
                filename=None,
                now=request_time(),
                who=actor,
                recent_days=settings.bulk.recent_days,
            )
        except bulk.BulkError as exc:
            return await _index(db_session, [str(exc)])
        return _back(request, batch.id or 0)

    @get("/{batch_pk:int}", name="bulk:detail")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        batch_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        batch = await _batch(db_session, batch_pk)
        rows = await bulk.rows_of_batch(db_session, batch_pk)
        # Rows that need a look first, then the rest in file order.
        shown = sorted(rows, key=lambda r: (r.expect == "ok" and not r.excluded, r.line))
        context = await state_context(db_session, batch, current_user)
        context |= {
            "rows": shown[:ROWS_SHOWN],
            "hidden_rows": max(0, len(rows) - ROWS_SHOWN),
            "row_count": len(rows),
            "totals": bulk.totals_of(rows),
            "reasons": [r for r in await catalogue(db_session) if r.active],
            "may_edit": context["own"] and batch.status is BulkStatus.AWAITING,
            # A fragment answers the page's own refresh of its rows: swapped by id.
            "oob": True,
        }
        return page_or_fragment(
            request, page="bulk/detail.html", fragment="bulk/_rows.html", context=context
        )

    @get("/{batch_pk:int}/state", name="bulk:state")
    async def state(
        self,
        request: Request[Any, Any, Any],
        batch_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
        current_user: NamedDependency[User],
    ) -> Template:
        """The live part of the page (fetched on every ``bulk-<id>`` hint)."""
        batch = await _batch(db_session, batch_pk)
        return Template(
            template_name="bulk/_state.html",
            context=await state_context(db_session, batch, current_user),
        )

    @get("/{batch_pk:int}/results.csv", name="bulk:results")
    async def results(
        self, batch_pk: FromPath[int], db_session: NamedDependency[AsyncSession]
    ) -> Response[str]:
        await _batch(db_session, batch_pk)
        return Response(
            await bulk.result_csv(db_session, batch_pk),
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": f'attachment; filename="bulk-{batch_pk}-results.csv"',
                "cache-control": "no-store",
            },
        )

    @post("/{batch_pk:int}/rows/{row_pk:int}/exclude", name="bulk:row_exclude")
    async def exclude(
        self,
        request: Request[Any, Any, Any],
        batch_pk: FromPath[int],
        row_pk: FromPath[int],
        data: URLEncodedBody[ExcludeForm],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        try:
            await bulk.set_excluded(
                engine,
                batch_pk=batch_pk,
                row_pk=row_pk,
                excluded=data.excluded != "0",
                user=current_user,
                revision=data.revision,
                now=request_time(),
                who=actor,
                recent_days=settings.bulk.recent_days,
            )
        except bulk.BulkError as exc:
            flash(request, str(exc), category="error")
        return _back(request, batch_pk)

    @post("/{batch_pk:int}/rows/{row_pk:int}/edit", name="bulk:row_edit")
    async def edit(
        self,
        request: Request[Any, Any, Any],
        batch_pk: FromPath[int],
        row_pk: FromPath[int],
        data: URLEncodedBody[RowForm],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        try:
            await bulk.edit_row(
                engine,
                batch_pk=batch_pk,
                row_pk=row_pk,
                user=current_user,
                revision=data.revision,
                amount_text=data.amount,
                reason=data.reason,
                note=data.note,
                now=request_time(),
                who=actor,
                recent_days=settings.bulk.recent_days,
            )
        except bulk.BulkError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(request, "Row changed; the batch was judged again", category="info")
        return _back(request, batch_pk)

    @post("/{batch_pk:int}/approve", name="bulk:approve", guards=[requires(Permission.APPROVE)])
    async def approve(
        self,
        request: Request[Any, Any, Any],
        batch_pk: FromPath[int],
        data: URLEncodedBody[RevisionForm],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
        settings: NamedDependency[Settings],
        state: State,
    ) -> Redirect:
        try:
            batch = await bulk.approve(
                engine,
                batch_pk=batch_pk,
                approver=current_user,
                revision=data.revision,
                comment=data.comment,
                now=request_time(),
                who=actor,
                recent_days=settings.bulk.recent_days,
            )
        except bulk.BulkError as exc:
            flash(request, str(exc), category="error")
            return _back(request, batch_pk)
        runner = getattr(state, "bulk", None)
        if not isinstance(runner, BulkRunner):
            flash(request, "Approved. Antom is not configured here: nothing is sent", "error")
            return _back(request, batch_pk)
        flash(request, "Approved. The batch is running; progress shows below", category="info")
        # Driven after this answer (any instance's driver would resume it otherwise).
        return Redirect(
            request.app.route_reverse("bulk:detail", batch_pk=batch_pk),
            status_code=303,
            background=BackgroundTask(runner.drive, batch.id or batch_pk),
        )

    @post("/{batch_pk:int}/reject", name="bulk:reject", guards=[requires(Permission.APPROVE)])
    async def reject(
        self,
        request: Request[Any, Any, Any],
        batch_pk: FromPath[int],
        data: URLEncodedBody[RevisionForm],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Redirect:
        try:
            await bulk.reject(
                engine,
                batch_pk=batch_pk,
                approver=current_user,
                revision=data.revision,
                comment=data.comment,
                who=actor,
            )
        except bulk.BulkError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(request, "Rejected. Nothing was sent", category="info")
        return _back(request, batch_pk)

    @post("/{batch_pk:int}/cancel", name="bulk:cancel")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        batch_pk: FromPath[int],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Redirect:
        try:
            await bulk.cancel(engine, batch_pk=batch_pk, user=current_user, who=actor)
        except bulk.BulkError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(
                request,
                "Cancelled: no further row is sent. Rows already sent are shown below",
                category="info",
            )
        return _back(request, batch_pk)


_FILTER_FIELDS = (
    "q",
    "status",
    "method",
    "currency",
    "date_field",
    "date_from",
    "date_to",
    "has_refunds",
)


async def _batch(session: AsyncSession, batch_pk: int) -> BulkBatch:
    batch = await bulk.get_batch(session, batch_pk)
    if batch is None:
        raise NotFoundException(f"No bulk batch {batch_pk}")
    return batch


async def _index(session: AsyncSession, errors: list[str] | None = None) -> Template:
    return Template(
        template_name="bulk/index.html",
        context={
            "errors": errors or [],
            "batches": await bulk.recent_batches(session),
            "max_mb": bulk.MAX_CSV_BYTES // (1024 * 1024),
        },
        status_code=REFUSED if errors else 200,
    )


ROUTES = [BulkController]
