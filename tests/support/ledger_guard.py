"""The one-ledger rule, watched in every test: only ``web/services/ledger.py`` may move a
refund's status or a payment's money.

Every SQL statement any engine in this process runs is looked at: an UPDATE that sets
``refunds.status`` or one of the money columns of ``payments``, or an INSERT of either
row, must have ``web/services/ledger.py`` on its call stack whenever desk code (``web/``,
the simulator's own tables aside) issued it. Test code arranging rows directly is not
desk code. A statement that breaks the rule fails the test that ran it, naming the
module that issued it (``tests/services/test_ledger_only_writer.py`` checks the guard).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import greenlet
import pytest
import sqlalchemy as sa

WEB = Path(__file__).resolve().parents[2] / "web"
LEDGER = WEB / "services" / "ledger.py"
SIMULATOR = WEB / "sim"
DB = WEB / "db.py"
MONEY_COLUMNS = {
    "refunds": {"status"},
    "payments": {"captured_minor", "reserved_minor", "refunded_minor", "refund_count"},
}
_UPDATE = re.compile(
    r"^\s*UPDATE\s+(\w+)\s+SET\s+(.*?)(?:\s+WHERE\s|\s+RETURNING\s|$)", re.I | re.S
)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\b", re.I)
_ASSIGNED = re.compile(r"(\w+)\s*=")

violations: list[str] = []


def _frames() -> Iterator[FrameType]:
    """This thread's stack, then the stacks of the greenlets waiting on this one: an
    AsyncSession runs its SQL in a child greenlet whose own stack starts at the switch."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        yield frame
        frame = frame.f_back
    current = greenlet.getcurrent().parent
    while current is not None:
        frame = current.gr_frame
        while frame is not None:
            yield frame
            frame = frame.f_back
        current = current.parent


def touches_the_ledger(statement: str) -> str | None:
    """What ``statement`` changes that only the ledger may change, or None."""
    if match := _INSERT.match(statement):
        table = match.group(1).lower()
        return f"a new {table} row" if table in MONEY_COLUMNS else None
    if match := _UPDATE.match(statement):
        table = match.group(1).lower()
        columns = {name.lower() for name in _ASSIGNED.findall(match.group(2))}
        hit = columns & MONEY_COLUMNS.get(table, set())
        return f"{table}.{', '.join(sorted(hit))}" if hit else None
    return None


def offender(statement: str) -> str | None:
    """The desk module that issued a ledger-only statement outside the ledger, or None."""
    what = touches_the_ledger(statement)
    if what is None:
        return None
    desk_code: Path | None = None
    for frame in _frames():
        path = Path(frame.f_code.co_filename)
        if path == LEDGER:
            return None
        if path.is_relative_to(SIMULATOR):
            return None  # the simulator keeps its own books in its own database
        # The session helper commits for whoever asked (tests arranging rows included):
        # the module that asked decides.
        if desk_code is None and path.is_relative_to(WEB) and path != DB:
            desk_code = path
    if desk_code is None:
        return None  # a test arranging rows directly
    return f"{desk_code.relative_to(WEB.parent)} changed {what} outside the ledger"


def _watch(
    _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
) -> None:
    found = offender(statement)
    if found is not None:
        violations.append(found)


@pytest.fixture(scope="session", autouse=True)
def _ledger_guard() -> Iterator[None]:
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", _watch)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", _watch)


@pytest.fixture(autouse=True)
def _no_writes_outside_the_ledger(_ledger_guard: None) -> Iterator[None]:
    violations.clear()
    yield
    found, violations[:] = list(violations), []
    assert not found, "only web/services/ledger.py may do this: " + "; ".join(sorted(set(found)))
