"""One id per HTTP request: in the response, in log lines, on the refund timeline.

The router's ``X-Request-ID`` (Heroku and most load balancers set one) is kept when it
is a plain token, so one id follows a request from the router's log to the desk's log
and to the timeline entry it caused; otherwise the desk makes one. Every answer carries
it back in ``x-request-id``: errors, redirects and 404s too, which is why the header is
added by a ``before_send`` hook (it sees every response, middleware only routed ones).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Request
from litestar.types import Message, Scope

HEADER = "x-request-id"
_STATE_KEY = "request_id"
# It goes into log lines and the database: no spaces, quotes or control characters.
_PLAIN = re.compile(r"[A-Za-z0-9._:@+=/-]{1,64}")


def accepted_request_id(given: str | None) -> str:
    """``given`` when it is a plain token of at most 64 characters, else a fresh id."""
    if given and _PLAIN.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _request_id(scope: Scope) -> str:
    # Litestar gives every connection scope a "state" dict, shared by the scope copies
    # that routing makes: whoever asks first fixes the id for the whole request.
    state: dict[str, Any] = scope["state"]
    request_id: str | None = state.get(_STATE_KEY)
    if request_id is None:
        given = next((v for k, v in scope["headers"] if k == HEADER.encode()), b"")
        request_id = state[_STATE_KEY] = accepted_request_id(given.decode("latin-1"))
    return request_id


def request_id_of(request: Request[Any, Any, Any]) -> str:
    """This request's id, as its response's ``x-request-id`` will show it."""
    return _request_id(request.scope)


async def request_id_hook(message: Message, scope: Scope) -> None:
    """``before_send``: echo the request id in every HTTP response."""
    if message["type"] == "http.response.start":
        value = _request_id(scope).encode()
        message["headers"] = [*message.get("headers", ()), (HEADER.encode(), value)]
