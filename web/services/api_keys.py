"""API keys for the merchant's systems: create (shown once), list, revoke, authenticate.

A key is ``rdk_`` followed by 43 random URL-safe characters (256 bits). The database keeps
its SHA-256 only, and a short prefix to tell keys apart on the admin page; the whole key
is returned once, by ``create_key``, and never again: not by ``list_keys``, not in an
error, not in a log line. Each key carries one scope (``ApiKeyScope``), so a key made for
the order feed opens nothing else. Revoking is immediate: every request looks its key up.

Creating and revoking a key each add an audit row (web/services/audit.py) naming the
key by its name, prefix and scope: never the key, nor its hash.

No Litestar here; ``web/routes/api.py`` turns ``KeyRefused`` into a 401.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import ApiKey, ApiKeyScope, utcnow
from web.services import audit
from web.services.audit import Action, Actor

KEY_PREFIX = "rdk_"
_KEY_BYTES = 32
# What the admin page shows of a key: "rdk_" and the next 6 characters.
_SHOWN_CHARS = len(KEY_PREFIX) + 6
# Longer than any key we make; anything longer is refused unhashed.
_MAX_KEY_CHARS = 128
NAME_MAX = 80
# ``last_used_at`` is a hint for admins ("is this key still in use?"); writing it on every
# request would turn each feed call into two writes. Minute precision is plenty.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyError(Exception):
    """A request about keys that cannot be done (empty name, unknown key)."""


class KeyRefused(Exception):
    """The presented key does not open this endpoint. The message never contains the key."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key: ``secret`` is the only copy there will ever be."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    """What the database keeps of a key. The key is random, so no salt or slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _clean_name(name: str) -> str:
    text = " ".join(name.split())
    if not text:
        raise ApiKeyError("Give the key a name that says who uses it, e.g. “Shop backend”")
    if len(text) > NAME_MAX:
        raise ApiKeyError(f"A key's name can be at most {NAME_MAX} characters")
    return text


def _described(key: ApiKey) -> dict[str, str]:
    """What the audit trail says about a key: enough to tell it apart, nothing to use."""
    return {"name": key.name, "prefix": key.prefix, "scope": str(key.scope)}


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scope: ApiKeyScope = ApiKeyScope.ORDERS_WRITE,
    actor: Actor | None = None,
) -> NewKey:
    """A new key, made by ``actor`` (the admin's request, or the CLI)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)
    key = ApiKey(
        name=_clean_name(name),
        prefix=secret[:_SHOWN_CHARS],
        key_hash=hash_key(secret),
        scope=scope,
        created_by=actor.user_id if actor else None,
    )
    session.add(key)
    await session.flush()
    await audit.record(
        session,
        Action.API_KEY_CREATED,
        actor,
        object_type="api_key",
        object_id=key.id,
        after=_described(key),
    )
    return NewKey(key, secret)


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    """Every key, live ones first, newest first."""
    result = await session.exec(
        select(ApiKey).order_by(
            col(ApiKey.revoked_at).is_not(None), col(ApiKey.created_at).desc(), col(ApiKey.id)
        )
    )
    return result.all()


async def revoke_key(session: AsyncSession, key_pk: int, *, actor: Actor | None = None) -> ApiKey:
    """Revoke a key now; revoking a revoked key keeps its first revocation (and adds no
    audit row: nothing changed)."""
    key = await session.get(ApiKey, key_pk)
    if key is None:
        raise ApiKeyError(f"There is no API key {key_pk}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        key.revoked_by = actor.user_id if actor else None
        session.add(key)
        await session.flush()
        await audit.record(
            session,
            Action.API_KEY_REVOKED,
            actor,
            object_type="api_key",
            object_id=key.id,
            before={"revoked": False},
            after={"revoked": True},
            detail=_described(key),
        )
    return key


async def authenticate(
    session: AsyncSession, secret: str | None, scope: ApiKeyScope, now: datetime | None = None
) -> ApiKey:
    """The live key ``secret`` is, if it carries ``scope``; else ``KeyRefused``."""
    if not secret:
        raise KeyRefused("Send the API key as “Authorization: Bearer <key>”")
    if len(secret) > _MAX_KEY_CHARS or not secret.startswith(KEY_PREFIX):
        raise KeyRefused("This is not a Refund Desk API key")
    key = (
        await session.exec(select(ApiKey).where(col(ApiKey.key_hash) == hash_key(secret)))
    ).first()
    if key is None:
        raise KeyRefused("Unknown API key")
    if key.revoked_at is not None:
        raise KeyRefused("This API key has been revoked")
    if key.scope != scope:
        raise KeyRefused(f"This API key is not allowed here (it is for {key.scope})")
    now = now or utcnow()
    if key.last_used_at is None or now - key.last_used_at >= _LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.add(key)
        await session.flush()
    return key


def bearer_token(authorization: str | None) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
