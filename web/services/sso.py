"""Single sign-on with OpenID Connect: the authorization code flow, with PKCE.

No Litestar here: web/routes/sso.py keeps the ``Pending`` sign-in in the encrypted
session cookie between the two legs and calls these functions.

1. ``begin``: a fresh ``state`` (binds the answer to this browser), ``nonce`` (binds the
   ID token to this sign-in) and PKCE verifier; the provider's authorization URL.
2. ``finish``: checks ``state``, exchanges the code for tokens at the provider's token
   endpoint (client secret and PKCE verifier), verifies the ID token (RS256/ES256
   signature against the provider's JWKS, ``iss``, ``aud``, ``exp``, ``nonce``).
3. ``role_for``: the desk role of the token's groups (``OIDCConfig.role_map``); no
   mapped group, no sign-in. When several map, the strongest wins.
4. ``user_for``: the desk user with that email, created on first sign-in. The role
   follows the IdP at every sign-in; a user deactivated in the desk stays refused.

The discovery document and keys are fetched on each sign-in (two small requests), so a
key rotation at the provider needs nothing from the desk.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

# authlib ships no type information; these three functions take and return strings.
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Role, User
from web.services.users import create_user, get_user_by_email
from web.settings import OIDCConfig

SCOPES = "openid email profile"
ALGORITHMS = ["RS256", "ES256"]
TIMEOUT_S = 10.0
# Strongest first: a person in both the agents' and the leads' group is a lead.
_RANK = [Role.ADMIN, Role.LEAD, Role.AGENT]


class SSOError(Exception):
    """Single sign-on did not succeed; ``str()`` is fit to show on the sign-in page."""


@dataclass(frozen=True, slots=True)
class Pending:
    """What the browser's session holds between leaving for the provider and coming back."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "state": self.state,
            "nonce": self.nonce,
            "code_verifier": self.code_verifier,
            "next": self.next_path,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Pending | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                state=str(data["state"]),
                nonce=str(data["nonce"]),
                code_verifier=str(data["code_verifier"]),
                next_path=str(data.get("next", "")),
            )
        except KeyError:
            return None


@dataclass(frozen=True, slots=True)
class Identity:
    email: str
    name: str
    groups: tuple[str, ...]


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await http.get(url, timeout=TIMEOUT_S)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError):
        raise SSOError("The sign-on provider could not be reached. Try again shortly.") from None
    if not isinstance(data, dict):
        raise SSOError("The sign-on provider gave an answer the desk cannot read.")
    return data


async def discover(http: httpx.AsyncClient, config: OIDCConfig) -> dict[str, Any]:
    metadata = await _get_json(http, config.discovery_url)
    needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
    if any(not isinstance(metadata.get(k), str) for k in needed):
        raise SSOError("The sign-on provider's configuration is incomplete.")
    return metadata


async def begin(
    http: httpx.AsyncClient, config: OIDCConfig, redirect_uri: str, next_path: str = ""
) -> tuple[str, Pending]:
    """The provider URL to send the browser to, and what to remember until it returns."""
    metadata = await discover(http, config)
    pending = Pending(
        state=generate_token(32),
        nonce=generate_token(32),
        code_verifier=generate_token(64),  # RFC 7636: 43-128 characters
        next_path=next_path,
    )
    url = prepare_grant_uri(
        metadata["authorization_endpoint"],
        config.client_id,
        "code",
        redirect_uri=redirect_uri,
        scope=SCOPES,
        state=pending.state,
        nonce=pending.nonce,
        code_challenge=create_s256_code_challenge(pending.code_verifier),
        code_challenge_method="S256",
    )
    return url, pending


async def finish(
    http: httpx.AsyncClient,
    config: OIDCConfig,
    redirect_uri: str,
    pending: Pending | None,
    *,
    code: str,
    state: str,
) -> dict[str, Any]:
    """The verified ID token claims for the provider's answer, or ``SSOError``."""
    # compare_digest: the state is a secret of this browser; no timing hints about it.
    if pending is None or not state or not hmac.compare_digest(pending.state, state):
        raise SSOError("That sign-on answer does not belong to this browser. Start again.")
    if not code:
        raise SSOError("The sign-on provider did not sign you in.")
    metadata = await discover(http, config)
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=pending.code_verifier,
        client_id=config.client_id,
    )
    try:
        response = await http.post(
            metadata["token_endpoint"],
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=(config.client_id, config.client_secret),
            timeout=TIMEOUT_S,
        )
        tokens = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        raise SSOError("The sign-on provider could not be reached. Try again shortly.") from None
    id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
    if not isinstance(id_token, str):
        raise SSOError("The sign-on provider refused the sign-in. Start again.")
    keys = await _get_json(http, metadata["jwks_uri"])
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=ALGORITHMS)  # type: ignore[arg-type]
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": config.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": pending.nonce},
        ).validate(token.claims)
    except (JoseError, ValueError, KeyError):
        raise SSOError(
            "The sign-on provider's answer could not be verified. Start again."
        ) from None
    return dict(token.claims)


def identity(config: OIDCConfig, claims: dict[str, Any]) -> Identity:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise SSOError("Your sign-on account has no email address; the desk needs one.")
    if claims.get("email_verified") is False:
        # An unverified address could name someone else's desk account.
        raise SSOError("Your sign-on account's email address is not verified.")
    raw = claims.get(config.group_claim, [])
    groups = (raw,) if isinstance(raw, str) else tuple(str(g) for g in raw or ())
    name = claims.get("name")
    return Identity(
        email=email, name=name if isinstance(name, str) and name.strip() else email, groups=groups
    )


def role_for(config: OIDCConfig, person: Identity) -> Role:
    mapped = {Role(role) for group, role in config.role_map if group in person.groups}
    for role in _RANK:
        if role in mapped:
            return role
    raise SSOError(
        "Your sign-on account is not in a group that may use Refund Desk. "
        "Ask a desk admin to add you to one."
    )


async def user_for(session: AsyncSession, person: Identity, role: Role) -> User:
    user = await get_user_by_email(session, person.email)
    if user is None:
        # Signs in through the provider only: the password is random and never shown.
        return await create_user(
            session,
            email=person.email,
            name=person.name,
            role=role,
            password=secrets.token_urlsafe(32),
        )
    if not user.active:
        raise SSOError("Your desk account is deactivated. Ask a desk admin.")
    if user.role != role:
        user.role = role
        session.add(user)
        await session.flush()
    return user
