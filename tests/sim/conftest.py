"""Simulator-suite fixtures. ``shared_sim`` is one simulator per module for tests that
only read or create their own payments; tests that need a pristine one use ``simulator``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sim.helpers import Gateway
from tests.support.simulator import SimHandle, running_simulator


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHandle]:
    with running_simulator(tmp_path_factory.mktemp("shared-sim")) as handle:
        yield handle


@pytest.fixture(scope="module")
def shared_gw(shared_sim: SimHandle) -> Iterator[Gateway]:
    gateway = Gateway(shared_sim)
    yield gateway
    gateway.close()


@pytest.fixture
def gw(simulator: SimHandle) -> Iterator[Gateway]:
    gateway = Gateway(simulator)
    yield gateway
    gateway.close()
