"""The streamed CSV export keeps its memory flat: a million refunds through the real
export in a child process, whose peak RSS is read after the first 20,000 rows and at the
end (``ru_maxrss``; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from web.services.exports import _major

SCRIPT = Path(__file__).with_name("export_memory.py")
ROWS = 1_000_000
# Holding the rows would take hundreds of MiB (a CSV line alone is ~250 bytes); a flat
# stream grows by allocator noise only.
MAX_GROWTH_KIB = 16 * 1024


def test_a_million_rows_stream_with_flat_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "export.sqlite3"), "--rows", str(ROWS)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rows"] == ROWS
    assert report["warm_kib"] > 0
    assert report["end_kib"] - report["warm_kib"] < MAX_GROWTH_KIB, report


def test_major_units_by_integer_arithmetic() -> None:
    assert _major(123_456, 2) == "1234.56"
    assert _major(5, 2) == "0.05"
    assert _major(-5, 3) == "-0.005"
    assert _major(120_000, 0) == "120000"
