"""Local staff accounts: password hashing, sign-in checks, roles, limits, revocation.

No Litestar here: the web layer (web/auth.py, web/routes/session.py) and the CLI both
call these functions with an ``AsyncSession``.

Passwords are Argon2id with OWASP's minimum parameters (19 MiB, t=2, p=1); a hash made
with other parameters is upgraded the next time its owner signs in.

Sessions live in the database (``UserSession``): sign-in stores the SHA-256 of a random
token and the cookie carries the token. Every request reads the session and its user
in one query, so a session revoked on one instance is refused by all of them at once:
signing out revokes that session, and bumping ``User.session_version`` (sign out
everywhere, deactivation) revokes every session of the user. Sessions end after
``IDLE_TIMEOUT_S`` without a request and ``ABSOLUTE_TIMEOUT_S`` after sign-in,
measured on the server's clock and rows, never on what the cookie claims.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

import argon2
from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import Role, User, UserSession, utcnow

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256

IDLE_TIMEOUT_S = 30 * 60
ABSOLUTE_TIMEOUT_S = 12 * 60 * 60
# last_seen_at is written at most this often, so most requests cost one read only.
TOUCH_EVERY_S = 60
# Ended sessions are kept this long (who signed in from where) and then deleted.
KEEP_SESSIONS_FOR = timedelta(days=30)
_TOKEN_BYTES = 32  # 256 random bits: unguessable, and a plain hash suffices to store it

_hasher = argon2.PasswordHasher(
    time_cost=2, memory_cost=19 * 1024, parallelism=1, type=argon2.Type.ID
)
# Verified against when the email is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash("refund-desk timing equaliser")


class UserError(ValueError):
    """A request about users that cannot be carried out; ``str()`` is fit to show."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except argon2.exceptions.InvalidHashError:
        return True


def password_problems(password: str) -> list[str]:
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"The password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"The password must be at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password or not password.strip():
        problems.append("The password must not start or end with spaces")
    return problems


def normalise_email(email: str) -> str:
    return email.strip().lower()


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise UserError(f"Unknown role {text!r}; use one of {allowed}") from None


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.exec(select(User).where(User.email == normalise_email(email)))
    return result.first()


async def require_user(session: AsyncSession, email: str) -> User:
    user = await get_user_by_email(session, email)
    if user is None:
        raise UserError(f"No user with email {normalise_email(email)!r}")
    return user


async def create_user(
    session: AsyncSession, *, email: str, name: str, role: Role | str, password: str
) -> User:
    email = normalise_email(email)
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise UserError(f"{email!r} is not an email address")
    if not name.strip():
        raise UserError("The name must not be empty")
    problems = password_problems(password)
    if problems:
        raise UserError("; ".join(problems))
    if await get_user_by_email(session, email) is not None:
        raise UserError(f"A user with email {email!r} already exists")
    user = User(
        email=email,
        name=name.strip(),
        role=parse_role(role) if isinstance(role, str) else role,
        password_hash=hash_password(password),
    )
    session.add(user)
    await session.flush()
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The active user with this email and password, else None (same time either way)."""
    user = await get_user_by_email(session, email)
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
        await session.flush()
    return user


def hash_session_token(token: str) -> str:
    """What the database keeps of a session token (hex SHA-256).

    The token is random, so a fast unsalted hash is enough: nothing to brute-force.
    """
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(
    session: AsyncSession,
    user: User,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> str:
    """Record a new sign-in for ``user``; the token to put in the cookie."""
    assert user.id is not None
    now = now or utcnow()
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    # Prune this user's long-dead sessions here: cheap (one user's rows, indexed) and
    # keeps the table bounded without a background job.
    await session.exec(
        delete(UserSession).where(
            col(UserSession.user_id) == user.id,
            col(UserSession.created_at) < now - KEEP_SESSIONS_FOR,
        )
    )
    session.add(
        UserSession(
            token_hash=hash_session_token(token),
            user_id=user.id,
            session_version=user.session_version,
            created_at=now,
            last_seen_at=now,
            ip=ip[:64] if ip else None,
            user_agent=user_agent[:256] if user_agent else None,
        )
    )
    await session.flush()
    return token


def _session_is_live(row: UserSession, user: User, now: datetime) -> bool:
    return (
        row.revoked_at is None
        and user.active
        and row.session_version == user.session_version
        and now - row.created_at <= timedelta(seconds=ABSOLUTE_TIMEOUT_S)
        and now - row.last_seen_at <= timedelta(seconds=IDLE_TIMEOUT_S)
    )


async def get_signed_in_user(
    session: AsyncSession, token: str, now: datetime | None = None
) -> User | None:
    """The user a session token belongs to, if that session is still live.

    One query reads the session and its user together; a write follows only when the
    idle clock has to move (at most once a ``TOUCH_EVERY_S``).
    """
    now = now or utcnow()
    result = await session.exec(
        select(UserSession, User)
        .join(User, col(User.id) == col(UserSession.user_id))
        .where(col(UserSession.token_hash) == hash_session_token(token))
    )
    found = result.first()
    if found is None:
        return None
    row, user = found
    if not _session_is_live(row, user, now):
        return None
    if now - row.last_seen_at > timedelta(seconds=TOUCH_EVERY_S):
        # Guarded by revoked_at IS NULL: a sign-out committed since the read wins, and
        # nothing ever clears revoked_at, so a revoked session cannot come back.
        await session.exec(
            update(UserSession)
            .where(col(UserSession.id) == row.id, col(UserSession.revoked_at).is_(None))
            .values(last_seen_at=now)
        )
    return user


async def end_session(session: AsyncSession, token: str, now: datetime | None = None) -> None:
    """Sign out one session: its cookie is refused from now on, on every instance."""
    await session.exec(
        update(UserSession)
        .where(
            col(UserSession.token_hash) == hash_session_token(token),
            col(UserSession.revoked_at).is_(None),
        )
        .values(revoked_at=now or utcnow())
    )


async def _end_all_sessions(session: AsyncSession, user: User) -> None:
    # The version bump alone already refuses every older session; revoked_at makes
    # the rows say so too (and keeps them dead if the version were ever reset).
    user.session_version += 1
    session.add(user)
    await session.exec(
        update(UserSession)
        .where(col(UserSession.user_id) == user.id, col(UserSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    await session.flush()


async def revoke_sessions(session: AsyncSession, user_id: int) -> User:
    """Sign the user out everywhere: every existing session cookie stops working."""
    user = await session.get(User, user_id)
    if user is None:
        raise UserError("No such user")
    await _end_all_sessions(session, user)
    return user


async def deactivate(session: AsyncSession, email: str) -> User:
    user = await require_user(session, email)
    user.active = False
    await _end_all_sessions(session, user)
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    result = await session.exec(select(User).order_by(col(User.email)))
    return result.all()
