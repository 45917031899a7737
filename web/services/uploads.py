"""What the two file imports share (orders, web/services/orders.py; Antom settlement
reports, web/services/settlement.py): header names, the capped per-line report, and
telling an import whose process stopped from one that is still running."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Protocol

from web.models import OrderImportStatus, utcnow

MAX_REPORTED_LINES = 500  # lines with problems kept in an import's report
STALE_IMPORT = timedelta(minutes=2)  # no progress for this long: its process has stopped


class ImportJob(Protocol):
    status: OrderImportStatus
    updated_at: datetime
    problems: list[dict[str, Any]]


def normalise_header(text: str) -> str:
    """``Buyer E-mail``, ``buyer_email`` and ``buyerEmail`` are one name."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def is_stale(job: ImportJob) -> bool:
    """Running, but its process has stopped moving it (e.g. the instance restarted)."""
    return job.status == OrderImportStatus.RUNNING and utcnow() - job.updated_at > STALE_IMPORT


def report_line(job: ImportJob, line: int, errors: list[dict[str, str]]) -> None:
    """Add one rejected line to the job's report (``{"line", "errors": [{"field",
    "message"}]}``), keeping at most ``MAX_REPORTED_LINES``."""
    if len(job.problems) < MAX_REPORTED_LINES:
        # A new list: SQLAlchemy only notices a JSON column change by assignment.
        job.problems = [*job.problems, {"line": line, "errors": errors}]
