"""The audit rows of signing in and out (web/services/audit.py records them).

No Litestar here: the routes (web/routes/session.py, web/routes/sso.py) and web/auth.py
pass the request's ``Actor`` and what happened. Never a password: a failed or throttled
sign-in names the email that was tried, normalised, and only when it is shaped like an
email (people type their password into the email field; that text is not kept).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import User
from web.services import audit
from web.services.audit import Action, Actor
from web.services.throttle import Refusal
from web.services.users import normalise_email

Method = Literal["password", "sso"]
_EMAIL_MAX = 254


def attempted_email(text: str) -> str | None:
    """The email a sign-in tried, normalised; None when the text is not shaped like one."""
    email = normalise_email(text)
    if "@" not in email or len(email) > _EMAIL_MAX or any(c.isspace() for c in email):
        return None
    return email


def _claimed(actor: Actor, email: str | None) -> Actor:
    # Nobody is signed in: the row names whom the attempt claimed to be, not a user.
    return replace(actor, user_id=None, label=email)


async def signed_in(session: AsyncSession, actor: Actor, user: User, *, method: Method) -> None:
    await audit.record(
        session,
        Action.SIGN_IN,
        replace(actor, user_id=user.id, label=user.email),
        object_type="user",
        object_id=user.id,
        detail={"method": method, "role": str(user.role)},
    )


async def sign_in_failed(
    session: AsyncSession,
    actor: Actor,
    *,
    method: Method,
    email: str = "",
    reason: str | None = None,
) -> None:
    """A refused sign-in: wrong email or password, or single sign-on refused (``reason``
    is the message the person was shown, never what they typed)."""
    tried = attempted_email(email) if email else None
    detail: dict[str, str | bool] = {"method": method}
    if email:
        detail["email_shaped"] = tried is not None
    if reason:
        detail["reason"] = reason
    await audit.record(session, Action.SIGN_IN_FAILED, _claimed(actor, tried), detail=detail)


async def sign_in_throttled(
    session: AsyncSession, actor: Actor, *, email: str, refusal: Refusal
) -> None:
    """A sign-in refused before its password was checked: too many recent failures."""
    tried = attempted_email(email)
    await audit.record(
        session,
        Action.SIGN_IN_THROTTLED,
        _claimed(actor, tried),
        detail={
            "method": "password",
            "email_shaped": tried is not None,
            "scope": refusal.scope.value,
            "retry_after_minutes": refusal.minutes,
        },
    )


async def signed_out(session: AsyncSession, actor: Actor, *, everywhere: bool = False) -> None:
    """This browser's session ended, or (``everywhere``) every session of the person."""
    await audit.record(
        session,
        Action.SIGN_OUT_EVERYWHERE if everywhere else Action.SIGN_OUT,
        actor,
        object_type="user",
        object_id=actor.user_id,
    )
