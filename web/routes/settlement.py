"""Antom settlement reports for leads: upload one, watch it import, read its report; and a
lead's decision on a reversed refund ("make refundable again").

The upload is copied to a temporary file as it arrives (never held in memory) and
imported by a background task after the answer; the page polls the import's counts.
What a row does is web/services/settlement.py's business.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, MultipartBody, URLEncodedBody
from litestar.plugins.flash import flash
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import REFUSED, page_or_fragment, wants_fragment
from web.models import SettlementImport, User
from web.rules.access import Permission
from web.services import listing, settlement, uploads
from web.services.audit import Actor

MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # a report of about 600,000 rows


@dataclass
class UploadForm:
    file: UploadFile | None = None


@dataclass
class ReleaseForm:
    note: str = ""


def _import_context(job: SettlementImport) -> dict[str, Any]:
    return {"job": job, "stale": uploads.is_stale(job)}


def _keep_upload(upload: UploadFile) -> Path:
    """Copy the upload (a spooled file) to a file of our own, block by block."""
    handle, name = tempfile.mkstemp(prefix="settlement-", suffix=".csv")
    with open(handle, "wb") as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return Path(name)


class SettlementImportController(Controller):
    path = "/settlement"
    guards = (requires(Permission.IMPORT_SETTLEMENT),)
    include_in_schema = False

    @get("/import", name="settlement:import")
    async def index(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> Template:
        return await _index(db_session, request)

    @post(
        "/import",
        name="settlement:import_upload",
        request_max_body_size=MAX_UPLOAD_BYTES,
        status_code=200,
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        data: MultipartBody[UploadForm],
        db_session: NamedDependency[AsyncSession],
        engine: NamedDependency[AsyncEngine],
        current_user: NamedDependency[User],
        actor: NamedDependency[Actor],
    ) -> Template | Redirect:
        if data.file is None or not data.file.filename:
            return await _index(db_session, request, errors=["Choose a settlement file to upload"])
        path = await anyio.to_thread.run_sync(_keep_upload, data.file)
        job = await settlement.start_import(
            db_session,
            filename=settlement.shown_name(data.file.filename),
            path=path,
            user_pk=current_user.id,
        )
        assert job.id is not None
        # Imported after this answer is sent (the job row is committed by then).
        task = BackgroundTask(settlement.run_import, engine, job.id, path, actor, remove=True)
        if not wants_fragment(request):
            return Redirect(
                request.app.route_reverse("settlement:import_detail", import_pk=job.id),
                status_code=303,
                background=task,
            )
        return Template(
            template_name="settlement/_import.html", context=_import_context(job), background=task
        )

    @get("/imports/{import_pk:int}", name="settlement:import_detail")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        import_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        job = await settlement.get_import(db_session, import_pk)
        if job is None:
            raise NotFoundException(f"No import {import_pk}")
        return page_or_fragment(
            request,
            page="settlement/import_detail.html",
            fragment="settlement/_import.html",
            context=_import_context(job),
        )


class ReversalController(Controller):
    """A lead decides what is refundable after a reversal (APPROVE: a decision about
    money that can be refunded again, like approving a refund)."""

    path = "/refunds"
    guards = (requires(Permission.APPROVE),)
    include_in_schema = False

    @post("/{refund_pk:int}/refundable-again", name="refunds:refundable_again", status_code=200)
    async def release(
        self,
        request: Request[Any, Any, Any],
        refund_pk: FromPath[int],
        data: URLEncodedBody[ReleaseForm],
        db_session: NamedDependency[AsyncSession],
        actor: NamedDependency[Actor],
    ) -> Redirect:
        refund = await listing.refund_by_pk(db_session, refund_pk)
        if refund is None:
            raise NotFoundException("No such refund")
        try:
            await settlement.make_refundable_again(
                db_session, refund_pk, actor=actor, note=data.note
            )
        except settlement.ReleaseError as exc:
            flash(request, str(exc), category="error")
        else:
            flash(request, "The reversed amount is refundable again", category="success")
        return Redirect(
            request.app.route_reverse("payments:detail", payment_pk=refund.payment_pk),
            status_code=303,
        )


async def _index(
    session: AsyncSession, request: Request[Any, Any, Any], errors: list[str] | None = None
) -> Template:
    """The upload page; an htmx upload that was refused gets only its messages."""
    return page_or_fragment(
        request,
        page="settlement/import.html",
        fragment="orders/_upload_errors.html",
        context={
            "errors": errors or [],
            "imports": await settlement.recent_imports(session),
            "stale": uploads.is_stale,
            "max_mb": MAX_UPLOAD_BYTES // (1024 * 1024),
        },
        status_code=REFUSED if errors else 200,
    )


ROUTES = [SettlementImportController, ReversalController]
