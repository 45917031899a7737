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


@pytest.fixture(name="client")
async def fx_client(server: ScriptedServer, recorded: list[Exchange]) -> AsyncIterator[AntomClient]:
    client = AntomClient(
        gateway_url=server.base_url,
        client_id=CLIENT_ID,
        merchant_private_key=keypair("merchant"),
        antom_public_keys=[keypair("antom").public_key(), keypair("antom-next").public_key()],
        timeout=0.5,
        recorder=recorded.append,
    )
    yield client
    await client.aclose()
