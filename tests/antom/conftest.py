from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.antom.keypairs import keypair
from tests.antom.scripted_server import ScriptedServer, running_scripted_server
from web.antom.client import AntomClient
from web.antom.messages import Exchange

CLIENT_ID = "TEST_CLIENT_1"


@pytest.fixture(scope="session")
def _scripted_server_session() -> Iterator[ScriptedServer]:
    with running_scripted_server() as server:
        yield server


@pytest.fixture(name="server")
def fx_server(_scripted_server_session: ScriptedServer) -> Iterator[ScriptedServer]:
    _scripted_server_session.reset()
    yield _scripted_server_session
    _scripted_server_session.reset()


@pytest.fixture(name="recorded")
def fx_recorded() -> list[Exchange]:
    return []


def _client(server: ScriptedServer, recorded: list[Exchange], timeout: float) -> AntomClient:
    return AntomClient(
        gateway_url=server.base_url,
        client_id=CLIENT_ID,
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key(), keypair("antom-next").public_key()],
        timeout=timeout,
        recorder=recorded.append,
    )


@pytest.fixture(name="client")
async def fx_client(server: ScriptedServer, recorded: list[Exchange]) -> AsyncIterator[AntomClient]:
    # Patient: on a busy machine an answer can take a while; only a hang should time out.
    client = _client(server, recorded, timeout=10.0)
    yield client
    await client.aclose()


@pytest.fixture(name="impatient_client")
async def fx_impatient_client(
    server: ScriptedServer, recorded: list[Exchange]
) -> AsyncIterator[AntomClient]:
    """Gives up after half a second: for the tests of a gateway that does not answer."""
    client = _client(server, recorded, timeout=0.5)
    yield client
    await client.aclose()
