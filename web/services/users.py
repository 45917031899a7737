"""Local staff accounts: password hashing, sign-in checks, roles, limits, revocation.

No Litestar here: the web layer (web/auth.py, web/routes/session.py) and the CLI both
call these functions with an ``AsyncSession``.

Passwords are Argon2id with OWASP's minimum parameters (19 MiB, t=2, p=1); a hash made
with other parameters is upgraded the next time its owner signs in. Sessions are
revoked by bumping ``User.session_version``: every request compares it with the
version the session cookie carries, so revocation reaches every instance at once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import argon2
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.antom.money import MoneyError, exponent
from web.models import AgentLimit, Role, User

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256

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


async def get_signed_in_user(session: AsyncSession, user_id: int, version: int) -> User | None:
    """The user a session cookie names, if that session has not been revoked."""
    user = await session.get(User, user_id)
    if user is None or not user.active or user.session_version != version:
        return None
    return user


async def revoke_sessions(session: AsyncSession, user_id: int) -> User:
    """Sign the user out everywhere: every existing session cookie stops working."""
    user = await session.get(User, user_id)
    if user is None:
        raise UserError("No such user")
    user.session_version += 1
    session.add(user)
    await session.flush()
    return user


async def deactivate(session: AsyncSession, email: str) -> User:
    user = await require_user(session, email)
    user.active = False
    user.session_version += 1
    session.add(user)
    await session.flush()
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    result = await session.exec(select(User).order_by(col(User.email)))
    return result.all()


async def limits_for(session: AsyncSession, user_id: int) -> Sequence[AgentLimit]:
    result = await session.exec(
        select(AgentLimit).where(AgentLimit.user_id == user_id).order_by(col(AgentLimit.currency))
    )
    return result.all()


async def set_limit(
    session: AsyncSession, *, email: str, currency: str, max_minor: int | None
) -> AgentLimit | None:
    """Set (or with ``max_minor=None`` remove) the user's largest single refund."""
    currency = currency.strip().upper()
    try:
        exponent(currency)
    except MoneyError as exc:
        raise UserError(str(exc)) from None
    if max_minor is not None and max_minor < 0:
        raise UserError("The limit cannot be negative")
    user = await require_user(session, email)
    assert user.id is not None
    result = await session.exec(
        select(AgentLimit).where(AgentLimit.user_id == user.id, AgentLimit.currency == currency)
    )
    limit = result.first()
    if max_minor is None:
        if limit is not None:
            await session.delete(limit)
            await session.flush()
        return None
    if limit is None:
        limit = AgentLimit(user_id=user.id, currency=currency, max_minor=max_minor)
    limit.max_minor = max_minor
    session.add(limit)
    await session.flush()
    return limit


@dataclass
class LoginThrottle:
    """Refuses sign-in for an email after repeated failures within a time window.

    Kept per process, keyed by the normalised email whether or not it exists, so the
    answer never reveals which emails have accounts. With N instances an attacker
    gets at most N times the budget, still far from a useful guessing rate.
    """

    max_failures: int = 5
    window_s: float = 15 * 60
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, email: str, now: float) -> deque[float]:
        attempts = self._failures.setdefault(normalise_email(email), deque())
        while attempts and attempts[0] <= now - self.window_s:
            attempts.popleft()
        return attempts

    def retry_after(self, email: str, now: float | None = None) -> float:
        """Seconds until this email may try again; 0 when it may try now."""
        now = time.monotonic() if now is None else now
        attempts = self._recent(email, now)
        if len(attempts) < self.max_failures:
            return 0.0
        return attempts[0] + self.window_s - now

    def failed(self, email: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._recent(email, now).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of random emails
            self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, email: str) -> None:
        self._failures.pop(normalise_email(email), None)
