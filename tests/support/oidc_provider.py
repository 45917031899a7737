"""A tiny OpenID Connect provider for tests: discovery, authorize, token, JWKS.

``running_provider(client_id, client_secret)`` serves it with uvicorn on a free port
and yields an ``OIDCProvider``. ``/authorize`` approves at once as ``provider.user``
(set it before the sign-in) and redirects back with a one-time code; ``/token`` checks
the client secret, the redirect URI and the PKCE verifier and answers with an RS256
ID token signed by a key generated at start (published at ``/jwks``). ``tamper``
changes one claim of the next ID token, to test that the desk notices.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from litestar import Litestar, Request, get, post
from litestar.response import Redirect, Response

from tests.support.fixtures_app import ServerThread
from tests.support.net import bound_socket


@dataclass
class OIDCProvider:
    base_url: str
    client_id: str
    client_secret: str
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    user: dict[str, Any] = field(default_factory=dict)
    tamper: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/.well-known/openid-configuration"

    def app(self) -> Litestar:
        provider = self

        @get("/.well-known/openid-configuration")
        async def configuration() -> dict[str, Any]:
            return {
                "issuer": provider.base_url,
                "authorization_endpoint": f"{provider.base_url}/authorize",
                "token_endpoint": f"{provider.base_url}/token",
                "jwks_uri": f"{provider.base_url}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }

        @get("/authorize")
        async def authorize(request: Request[Any, Any, Any]) -> Response[Any]:
            q = request.query_params
            if q.get("client_id") != provider.client_id or q.get("response_type") != "code":
                return Response({"error": "unauthorized_client"}, status_code=400)
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                return Response({"error": "invalid_request"}, status_code=400)
            code = secrets.token_urlsafe(16)
            provider.codes[code] = {
                "redirect_uri": q["redirect_uri"],
                "nonce": q.get("nonce"),
                "challenge": q["code_challenge"],
                "user": dict(provider.user),
            }
            target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
            return Redirect(target, status_code=302)

        @post("/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[Any]:
            provider.token_requests += 1
            form = await request.form()
            basic = request.headers.get("authorization", "")
            expected = base64.b64encode(
                f"{provider.client_id}:{provider.client_secret}".encode()
            ).decode()
            if basic != f"Basic {expected}":
                return Response({"error": "invalid_client"}, status_code=401)
            grant = provider.codes.pop(str(form.get("code")), None)  # one use only
            if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                return Response({"error": "invalid_grant"}, status_code=400)
            verifier = str(form.get("code_verifier", ""))
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
                return Response({"error": "invalid_grant", "pkce": "mismatch"}, status_code=400)
            now = int(time.time())
            claims = {
                "iss": provider.base_url,
                "aud": provider.client_id,
                "iat": now,
                "exp": now + 300,
                "nonce": grant["nonce"],
                **grant["user"],
                **provider.tamper,
            }
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, provider.key)
            return Response(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": id_token,
                }
            )

        @get("/jwks")
        async def jwks() -> dict[str, Any]:
            return KeySet([provider.key]).as_dict(private=False)

        return Litestar(route_handlers=[configuration, authorize, token, jwks], debug=False)


@contextmanager
def running_provider(client_id: str, client_secret: str) -> Iterator[OIDCProvider]:
    sock = bound_socket()
    provider = OIDCProvider(
        base_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
        client_id=client_id,
        client_secret=client_secret,
    )
    server = ServerThread(provider.app(), sock)
    server.start()
    try:
        yield provider
    finally:
        server.stop()
        sock.close()
