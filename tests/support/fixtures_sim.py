"""Simulator fixtures: ``simulator`` is a real, empty Antom simulator per test.

Override ``simulator_config`` (a dict of ``SimConfig`` fields) in a test module or
conftest to change it, e.g. ``{"notify_url": ..., "time_scale": 0.0001}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.simulator import SimHandle, running_simulator


@pytest.fixture
def simulator_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def simulator(tmp_path: Path, simulator_config: dict[str, Any]) -> Iterator[SimHandle]:
    with running_simulator(tmp_path / "sim", **simulator_config) as handle:
        yield handle
