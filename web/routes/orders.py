"""Order data for leads and admins: upload a CSV of orders, watch it import, read its report.

The upload is parsed at once (a file that cannot be read is refused with the reason and
nothing is stored); its lines are then saved by a background task after the answer, and
the page polls the import's counts until it is done. The same rules as the API apply to
each line (web/services/orders.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, MultipartBody
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from web.auth import requires
from web.htmx import REFUSED, page_or_fragment, wants_fragment
from web.models import OrderImport, User
from web.rules.access import Permission
from web.services import orders, uploads
from web.services.audit import Actor

# The file plus the multipart envelope.
MAX_UPLOAD_BYTES = orders.MAX_CSV_BYTES + 64 * 1024


@dataclass
class UploadForm:
    file: UploadFile | None = None


def _import_context(job: OrderImport) -> dict[str, Any]:
    return {"job": job, "stale": uploads.is_stale(job), "fields": orders.FIELDS}


class OrderImportController(Controller):
    path = "/orders"
    guards = (requires(Permission.IMPORT_ORDERS),)
    include_in_schema = False

    @get("/import", name="orders:import")
    async def index(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> Template:
        return await _index(db_session, request)

    @post(
        "/import",
        name="orders:import_upload",
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
            return await _index(db_session, request, errors=["Choose a CSV file to upload"])
        parsed = orders.parse_csv(await data.file.read())
        if parsed.errors:
            return await _index(db_session, request, errors=parsed.errors)
        job = await orders.start_import(db_session, current_user, data.file.filename, parsed)
        assert job.id is not None
        # Saved after this answer is sent (the job row is committed by then).
        task = BackgroundTask(orders.run_import, engine, job.id, parsed, actor)
        if not wants_fragment(request):
            return Redirect(
                request.app.route_reverse("orders:import_detail", import_pk=job.id),
                status_code=303,
                background=task,
            )
        context = _import_context(job) | {"ignored_columns": parsed.ignored_columns}
        return Template(template_name="orders/_import.html", context=context, background=task)

    @get("/imports/{import_pk:int}", name="orders:import_detail")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        import_pk: FromPath[int],
        db_session: NamedDependency[AsyncSession],
    ) -> Template:
        job = await orders.get_import(db_session, import_pk)
        if job is None:
            raise NotFoundException(f"No import {import_pk}")
        context = _import_context(job) | {"ignored_columns": []}
        return page_or_fragment(
            request,
            page="orders/import_detail.html",
            fragment="orders/_import.html",
            context=context,
        )


async def _index(
    session: AsyncSession, request: Request[Any, Any, Any], errors: list[str] | None = None
) -> Template:
    """The upload page; an htmx upload that was refused gets only its messages."""
    return page_or_fragment(
        request,
        page="orders/import.html",
        fragment="orders/_upload_errors.html",
        context={
            "errors": errors or [],
            "imports": await orders.recent_imports(session),
            "waiting": await orders.waiting_count(session),
            "fields": orders.FIELDS,
            "stale": uploads.is_stale,
            "max_mb": orders.MAX_CSV_BYTES // (1024 * 1024),
        },
        status_code=REFUSED if errors else 200,
    )


ROUTES = [OrderImportController]
