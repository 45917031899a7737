"""Test helpers for the simulator suite: a signing gateway client and a notification sink."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support import keys
from tests.support.net import TLS
from tests.support.simulator import SimHandle, serve
from tests.support.waiting import DEADLINE_S
from web.antom import signing
from web.antom.keys import load_public_key

ACK = {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}


def iso_now(offset: str = "+00:00") -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return stamp + ("Z" if offset == "Z" else offset)


@dataclass
class Gateway:
    """Signs requests exactly as a merchant would and checks the simulator's signatures."""

    sim: SimHandle
    private_pem: str | None = None
    client_id: str | None = None
    prefix: str = "/ams/api/v1/payments/"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self._key = keys.private_key(self.private_pem or self.sim.merchant_private_key_pem)
        self._antom = load_public_key(self.sim.antom_public_key_pem)
        self.http = httpx.Client(base_url=self.sim.base_url, timeout=self.timeout, verify=TLS)

    def close(self) -> None:
        self.http.close()

    def post(
        self,
        endpoint: str,
        body: dict[str, Any] | bytes,
        *,
        request_time: str | None = None,
        sign_body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body, indent=3).encode()
        uri = self.prefix + endpoint
        client_id = self.client_id or self.sim.client_id
        when = request_time or str(int(time.time() * 1000))
        value = signing.sign(
            self._key, uri=uri, client_id=client_id, time=when, body=sign_body or raw
        )
        sent = {
            "Content-Type": "application/json; charset=UTF-8",
            "client-id": client_id,
            "request-time": when,
            "signature": signing.signature_header(value),
            **(headers or {}),
        }
        return self.http.post(
            uri, content=raw, headers=sent, timeout=timeout if timeout else self.timeout
        )

    def verified(self, response: httpx.Response, endpoint: str) -> bool:
        h = response.headers
        if not {"client-id", "response-time", "signature"} <= set(h.keys()):
            return False
        return signing.verify(
            self._antom,
            uri=self.prefix + endpoint,
            client_id=h["client-id"],
            time=h["response-time"],
            body=response.content,
            header=h["signature"],
        )

    def call(self, endpoint: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """POST, insist on HTTP 200 and a valid signature, return the JSON body."""
        response = self.post(endpoint, body, **kw)
        assert response.status_code == 200, response.text
        assert self.verified(response, endpoint), "response signature did not verify"
        data: dict[str, Any] = response.json()
        return data

    def refund(
        self,
        payment_id: str,
        value: int,
        request_id: str,
        currency: str = "USD",
        **extra: Any,
    ) -> dict[str, Any]:
        body = {
            "refundRequestId": request_id,
            "paymentId": payment_id,
            "refundAmount": {"currency": currency, "value": str(value)},
            **extra,
        }
        return self.call("refund", body)


def code(body: dict[str, Any]) -> tuple[str, str]:
    return body["result"]["resultCode"], body["result"]["resultStatus"]


@dataclass
class Received:
    at: float
    uri: str
    headers: dict[str, str]
    body: bytes
    replied_at: float | None = None  # when the sink started its answer (None: not yet)

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Sink:
    """A notification receiver. ``fail_first`` attempts get HTTP 500 (or ``bad_reply``)."""

    url: str = ""
    fail_first: int = 0
    bad_reply: bytes | None = None
    hold: threading.Event | None = None  # answer only once this is set
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        with self._lock:
            return len(self.received)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode()
        item = Received(
            at=time.time(),
            uri=scope["path"] + (f"?{query}" if query else ""),
            headers={k.decode(): v.decode() for k, v in scope["headers"]},
            body=body,
        )
        with self._lock:
            self.received.append(item)
            count = len(self.received)
        if self.hold is not None:
            await asyncio.to_thread(self.hold.wait, DEADLINE_S)
        if count <= self.fail_first:
            status, reply = (200, self.bad_reply) if self.bad_reply else (500, b"nope")
        else:
            status, reply = 200, json.dumps(ACK).encode()
        item.replied_at = time.time()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": reply})


@contextmanager
def running_sink(path: str = "/antom/notify", **kw: Any) -> Iterator[Sink]:
    sink = Sink(**kw)
    with serve(sink) as base:
        sink.url = base + path
        yield sink
