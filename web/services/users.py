"""Local staff accounts: password hashing, sign-in checks, roles, invitations, revocation.

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

Admins (the /admin/users page and ``refund-desk users ...``) invite people, change
roles, disable and enable them and reset passwords. Nobody's password is ever chosen,
shown or sent by anyone but its owner: an invitation or a reset gives the user an
unusable password and a one-time link (``PasswordToken``: only the SHA-256 of a random
token is stored, the link works once, for ``LINK_LIFETIME``, while the user is active),
on which they choose one. Every such change writes one audit row with before/after;
changing a role, disabling and resetting end the user's sessions at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import argon2
import sqlalchemy as sa
from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import PasswordToken, Role, User, UserSession, utcnow
from web.services import audit
from web.services.audit import Action, Actor

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256

IDLE_TIMEOUT_S = 30 * 60
ABSOLUTE_TIMEOUT_S = 12 * 60 * 60
# last_seen_at is written at most this often, so most requests cost one read only.
TOUCH_EVERY_S = 60
# Ended sessions are kept this long (who signed in from where) and then deleted.
KEEP_SESSIONS_FOR = timedelta(days=30)
_TOKEN_BYTES = 32  # 256 random bits: unguessable, and a plain hash suffices to store it
# A one-time set-password link (invitation or reset) works this long, once.
LINK_LIFETIME = timedelta(hours=48)
# A password hash starting with this matches no password (invited, or reset by an admin).
UNUSABLE_PREFIX = "!"

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


class UserFormError(UserError):
    """A new user's details with mistakes: one message per field (email, name, role)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


async def _new_user_problems(
    session: AsyncSession, email: str, name: str, role: Role | str
) -> dict[str, str]:
    errors: dict[str, str] = {}
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        errors["email"] = f"{email!r} is not an email address" if email else "Enter an email"
    elif await get_user_by_email(session, email) is not None:
        errors["email"] = f"A user with email {email!r} already exists"
    if not name.strip():
        errors["name"] = "The name must not be empty"
    elif len(name.strip()) > 120:
        errors["name"] = "The name must be at most 120 characters"
    if isinstance(role, str):
        try:
            parse_role(role)
        except UserError as exc:
            errors["role"] = str(exc)
    return errors


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    role: Role | str,
    password: str,
    actor: Actor | None = None,
) -> User:
    """A user who signs in with ``password``; with ``actor`` the creation is audited."""
    email = normalise_email(email)
    errors = await _new_user_problems(session, email, name, role)
    problems = password_problems(password)
    if problems:
        errors["password"] = "; ".join(problems)
    if errors:
        raise UserFormError(errors)
    user = User(
        email=email,
        name=name.strip(),
        role=parse_role(role) if isinstance(role, str) else role,
        password_hash=hash_password(password),
    )
    session.add(user)
    await session.flush()
    if actor is not None:
        await _audit_created(session, user, actor, invited=False)
    return user


def _summary(user: User) -> dict[str, object]:
    return {"email": user.email, "name": user.name, "role": str(user.role), "active": user.active}


async def _audit_created(session: AsyncSession, user: User, actor: Actor, *, invited: bool) -> None:
    await audit.record(
        session,
        Action.USER_CREATED,
        actor,
        object_type="user",
        object_id=user.id,
        after=_summary(user),
        detail={"invited": invited},
    )


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    """The active user with this email and password, else None (same time either way)."""
    user = await get_user_by_email(session, email)
    if user is None or not user.active or not has_password(user):
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


async def deactivate(session: AsyncSession, email: str, actor: Actor | None = None) -> User:
    user = await require_user(session, email)
    assert user.id is not None
    return await disable_user(session, user.id, actor=actor or Actor(label="cli"))


async def list_users(session: AsyncSession) -> Sequence[User]:
    result = await session.exec(select(User).order_by(col(User.email)))
    return result.all()


# ---------------------------------------------------------------- admin: the user list


def has_password(user: User) -> bool:
    """False while an invitation or a reset waits for its link to be used."""
    return not user.password_hash.startswith(UNUSABLE_PREFIX)


def _unusable_password() -> str:
    return UNUSABLE_PREFIX + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class UserRow:
    """One line of the admin's user list."""

    user: User
    last_sign_in: datetime | None
    has_password: bool
    link_expires_at: datetime | None  # an unused, unexpired set-password link


async def user_rows(session: AsyncSession, now: datetime | None = None) -> list[UserRow]:
    """Every user, by email, with their last sign-in and whether a link is waiting."""
    now = now or utcnow()
    last: dict[int | None, datetime] = dict(
        (
            await session.exec(
                select(UserSession.user_id, sa.func.max(UserSession.created_at)).group_by(
                    col(UserSession.user_id)
                )
            )
        ).all()
    )
    links: dict[int | None, datetime] = dict(
        (
            await session.exec(
                select(PasswordToken.user_id, sa.func.max(PasswordToken.expires_at))
                .where(col(PasswordToken.used_at).is_(None), col(PasswordToken.expires_at) > now)
                .group_by(col(PasswordToken.user_id))
            )
        ).all()
    )
    return [
        UserRow(
            user=u,
            last_sign_in=_aware(last.get(u.id)),
            has_password=has_password(u),
            link_expires_at=_aware(links.get(u.id)),
        )
        for u in await list_users(session)
    ]


def _aware(value: datetime | None) -> datetime | None:
    # An aggregate skips the column's type on SQLite: the value comes back naive UTC.
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserError("There is no such user")
    return user


def _not_oneself(user: User, actor: Actor, doing: str) -> None:
    if actor.user_id is not None and actor.user_id == user.id:
        raise UserError(f"You cannot {doing} yourself; ask another admin to do it")


async def change_role(
    session: AsyncSession, user_id: int, role: Role | str, *, actor: Actor
) -> User:
    """Give the user another role; their sessions end (they sign in again under it)."""
    user = await get_user(session, user_id)
    new = parse_role(role) if isinstance(role, str) else role
    if new == user.role:
        return user
    _not_oneself(user, actor, "change the role of")
    before = {"role": str(user.role)}
    user.role = new
    await _end_all_sessions(session, user)
    await audit.record(
        session,
        Action.USER_ROLE_CHANGED,
        actor,
        object_type="user",
        object_id=user.id,
        before=before,
        after={"role": str(new)},
    )
    return user


async def disable_user(session: AsyncSession, user_id: int, *, actor: Actor) -> User:
    """Stop the user signing in; every session of theirs ends now, and any link."""
    user = await get_user(session, user_id)
    if not user.active:
        return user
    _not_oneself(user, actor, "disable")
    user.active = False
    await _end_all_sessions(session, user)
    await session.exec(delete(PasswordToken).where(col(PasswordToken.user_id) == user.id))
    await audit.record(
        session,
        Action.USER_DISABLED,
        actor,
        object_type="user",
        object_id=user.id,
        before={"active": True},
        after={"active": False},
    )
    return user


async def enable_user(session: AsyncSession, user_id: int, *, actor: Actor) -> User:
    user = await get_user(session, user_id)
    if user.active:
        return user
    user.active = True
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        Action.USER_ENABLED,
        actor,
        object_type="user",
        object_id=user.id,
        before={"active": False},
        after={"active": True},
    )
    return user


# ---------------------------------------------------------------- one-time links


@dataclass(frozen=True, slots=True)
class PasswordLink:
    """A new one-time link: ``token`` goes in the URL, shown once, never stored."""

    user: User
    token: str
    expires_at: datetime


class LinkError(UserError):
    """A set-password link that cannot be used (unknown, used, expired, user disabled)."""


LINK_UNUSABLE = (
    "This link cannot be used: it was already used, it has expired or it was replaced. "
    "Ask a desk admin for a new one."
)


async def _issue_link(
    session: AsyncSession, user: User, purpose: str, actor: Actor, now: datetime | None
) -> PasswordLink:
    assert user.id is not None
    now = now or utcnow()
    # One live link per user: a new one replaces any the user has not used.
    await session.exec(
        delete(PasswordToken).where(
            col(PasswordToken.user_id) == user.id, col(PasswordToken.used_at).is_(None)
        )
    )
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    expires = now + LINK_LIFETIME
    session.add(
        PasswordToken(
            token_hash=hash_session_token(token),
            user_id=user.id,
            purpose=purpose,
            created_at=now,
            expires_at=expires,
            created_by=actor.user_id,
        )
    )
    await session.flush()
    return PasswordLink(user=user, token=token, expires_at=expires)


async def invite_user(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    role: Role | str,
    actor: Actor,
    now: datetime | None = None,
) -> PasswordLink:
    """Create a user with no usable password, and their one-time link to choose one.

    Raises ``UserFormError`` with a message per field (email, name, role)."""
    email = normalise_email(email)
    errors = await _new_user_problems(session, email, name, role)
    if errors:
        raise UserFormError(errors)
    user = User(
        email=email,
        name=name.strip(),
        role=parse_role(role) if isinstance(role, str) else role,
        password_hash=_unusable_password(),
    )
    session.add(user)
    await session.flush()
    await _audit_created(session, user, actor, invited=True)
    return await _issue_link(session, user, "invite", actor, now)


async def reset_password(
    session: AsyncSession, user_id: int, *, actor: Actor, now: datetime | None = None
) -> PasswordLink:
    """The old password stops working and every session ends; a new one-time link
    lets the user choose a new password."""
    user = await get_user(session, user_id)
    if not user.active:
        raise UserError(f"{user.email} is disabled; enable them first")
    before = {"password": "set" if has_password(user) else "not set"}
    user.password_hash = _unusable_password()
    await _end_all_sessions(session, user)
    link = await _issue_link(session, user, "reset", actor, now)
    await audit.record(
        session,
        Action.USER_PASSWORD_RESET,
        actor,
        object_type="user",
        object_id=user.id,
        before=before,
        after={"password": "not set"},
        detail={"link_expires_at": link.expires_at.isoformat()},
    )
    return link


async def _live_token(
    session: AsyncSession, token: str, now: datetime
) -> tuple[PasswordToken, User] | None:
    if not token or len(token) > 128:
        return None
    found = (
        await session.exec(
            select(PasswordToken, User)
            .join(User, col(User.id) == col(PasswordToken.user_id))
            .where(col(PasswordToken.token_hash) == hash_session_token(token))
        )
    ).first()
    if found is None:
        return None
    row, user = found
    if row.used_at is not None or row.expires_at <= now or not user.active:
        return None
    return row, user


async def link_user(session: AsyncSession, token: str, now: datetime | None = None) -> User | None:
    """Whose link this is, if it can still be used (the set-password page's question)."""
    found = await _live_token(session, token, now or utcnow())
    return None if found is None else found[1]


async def set_password_with_link(
    session: AsyncSession,
    token: str,
    password: str,
    *,
    actor: Actor,
    now: datetime | None = None,
) -> User:
    """Use a one-time link: the user's password becomes ``password``, the link is spent.

    Raises ``LinkError`` for a link that cannot be used and ``UserError`` (the password
    rules, one sentence each) for a password that will not do; the link stays usable then.
    """
    now = now or utcnow()
    found = await _live_token(session, token, now)
    if found is None:
        raise LinkError(LINK_UNUSABLE)
    row, user = found
    problems = password_problems(password)
    if problems:
        raise UserError(". ".join(problems) + ".")
    # Spent first, guarded: two submissions of one link cannot both set a password.
    spent = await session.exec(
        update(PasswordToken)
        .where(col(PasswordToken.id) == row.id, col(PasswordToken.used_at).is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:
        raise LinkError(LINK_UNUSABLE)
    before = {"password": "set" if has_password(user) else "not set"}
    user.password_hash = hash_password(password)
    await _end_all_sessions(session, user)
    await audit.record(
        session,
        Action.USER_PASSWORD_SET,
        dataclasses.replace(actor, user_id=user.id, label=user.email),
        object_type="user",
        object_id=user.id,
        before=before,
        after={"password": "set"},
        detail={"via": f"{row.purpose} link"},
    )
    return user
