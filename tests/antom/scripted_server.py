"""A tiny scripted HTTP server: real uvicorn on 127.0.0.1, answers chosen by the test.

Each request is recorded exactly as received (raw target, headers, body bytes) and
answered by the current ``responder``. ``antom_response`` builds replies signed the way
Antom signs them, so tests can play Antom's gateway without the simulator.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.support.net import bound_socket
from tests.support.waiting import DEADLINE_S, wait_for
from web.antom import signing


@dataclass(frozen=True)
class Received:
    method: str
    target: str  # the request target as sent: origin form, or absolute form (Antom's SDK)
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def uri(self) -> str:
        """Path plus query with any scheme and host removed: what Antom signs and verifies."""
        if self.target.startswith("/"):
            return self.target
        parts = urlsplit(self.target)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Scripted:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    hold: threading.Event | None = None  # answer only once this is set (client timeouts)


Responder = Callable[[Received], Scripted]


def antom_response(
    request: Received,
    payload: dict[str, Any] | bytes,
    *,
    key: RSAPrivateKey | None,
    client_id: str | None = None,
    response_time: str = "2026-11-25T12:00:00+08:00",
    sent_body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Scripted:
    """A 200 reply signed over the request's own path, as Antom's gateway signs.

    ``key=None`` sends no signature headers at all; ``sent_body`` replaces the body
    after signing (a tampered reply); ``headers`` replaces the signature headers.
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    cid = client_id or request.headers.get("client-id", "")
    out: list[tuple[str, str]] = [("content-type", "application/json; charset=UTF-8")]
    if headers is not None:
        out += headers
    elif key is not None:
        value = signing.sign(key, uri=request.uri, client_id=cid, time=response_time, body=body)
        out += [
            ("client-id", cid),
            ("response-time", response_time),
            ("signature", signing.signature_header(value)),
        ]
    return Scripted(200, body if sent_body is None else sent_body, out)


class ScriptedServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.responder: Responder = lambda _request: Scripted(404, b"no script")
        self.base_url = ""
        self._server: uvicorn.Server | None = None

    def reply(self, responder: Responder | Scripted) -> None:
        self.responder = responder if callable(responder) else (lambda _r: responder)

    def reset(self) -> None:
        self.received.clear()
        self.reply(Scripted(404, b"no script"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        target = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        request = Received(
            method=scope["method"],
            target=target,
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        self.received.append(request)
        scripted = self.responder(request)
        if scripted.hold is not None:
            await asyncio.to_thread(scripted.hold.wait, DEADLINE_S)
        await send(
            {
                "type": "http.response.start",
                "status": scripted.status,
                "headers": [(k.encode(), v.encode()) for k, v in scripted.headers],
            }
        )
        await send({"type": "http.response.body", "body": scripted.body})


@contextmanager
def running_scripted_server() -> Iterator[ScriptedServer]:
    app = ScriptedServer()
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), what="the scripted server")
    if not server.started:
        raise RuntimeError("scripted server did not start")
    app.base_url = f"http://127.0.0.1:{port}"
    try:
        yield app
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
