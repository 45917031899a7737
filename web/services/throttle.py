"""Sign-in throttling per account and per client address, shared by every instance.

Each failed sign-in is a ``SignInFailure`` row for the account (the normalised email,
whether or not an account has it, so the answer never tells which emails exist) and
one for the client address. A sign-in is refused while either key has ``max_failures``
failures within its sliding window; it may try again once the oldest of them ages out.
A success clears the account's failures, never the address's: otherwise one valid
account would let an attacker reset their address between guesses at others.

Two requests racing on different instances may both pass the check before either
records its failure, so a burst can get a few guesses beyond the limit; the limit
still caps the sustained guessing rate, which is what brute force needs.

The clock is a parameter (``now``) so tests move time without waiting.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from web.models import SignInFailure, utcnow


class Scope(StrEnum):
    ACCOUNT = "account"
    ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class Policy:
    max_failures: int
    window: timedelta


# OWASP's guidance: lock after a handful of failures, for minutes, not for ever (a
# permanent lock would let anyone lock any staff member out).
ACCOUNT_POLICY = Policy(max_failures=5, window=timedelta(minutes=15))
# An office behind one NAT address shares this budget, so it is larger; it stops one
# address spraying a common password over many accounts.
ADDRESS_POLICY = Policy(max_failures=20, window=timedelta(minutes=15))
POLICIES = {Scope.ACCOUNT: ACCOUNT_POLICY, Scope.ADDRESS: ADDRESS_POLICY}
# Rows are only useful inside the longest window.
_KEEP_FOR = max(p.window for p in POLICIES.values())


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a sign-in may not be tried now, and for how long."""

    scope: Scope
    retry_after: timedelta

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after.total_seconds() / 60))

    @property
    def message(self) -> str:
        # The same words whether or not the account exists.
        who = "for this account" if self.scope is Scope.ACCOUNT else "from your network"
        unit = "minute" if self.minutes == 1 else "minutes"
        return f"Too many failed sign-ins {who}; try again in {self.minutes} {unit}."


def _key_hash(scope: Scope, key: str) -> str:
    text = key.strip().lower() if scope is Scope.ACCOUNT else key.strip()
    return hashlib.sha256(f"{scope.value}:{text}".encode()).hexdigest()


def _keys(email: str, ip: str | None) -> list[tuple[Scope, str]]:
    keys = [(Scope.ACCOUNT, _key_hash(Scope.ACCOUNT, email))]
    if ip:
        keys.append((Scope.ADDRESS, _key_hash(Scope.ADDRESS, ip)))
    return keys


async def refusal(
    session: AsyncSession, email: str, ip: str | None, now: datetime | None = None
) -> Refusal | None:
    """A refusal if this account or address has failed too often lately, else None."""
    now = now or utcnow()
    for scope, key_hash in _keys(email, ip):
        policy = POLICIES[scope]
        result = await session.exec(
            select(func.count(), func.min(col(SignInFailure.failed_at))).where(
                col(SignInFailure.scope) == scope.value,
                col(SignInFailure.key_hash) == key_hash,
                col(SignInFailure.failed_at) > now - policy.window,
            )
        )
        count, oldest = result.one()
        if count >= policy.max_failures and oldest is not None:
            # Sliding window: the oldest counted failure leaving it frees one try.
            return Refusal(scope=scope, retry_after=oldest + policy.window - now)
    return None


async def record_failure(
    session: AsyncSession, email: str, ip: str | None, now: datetime | None = None
) -> None:
    """Count a failed sign-in against the account and the address."""
    now = now or utcnow()
    # Pruning here bounds the table (a spray of random emails included) without a job;
    # it is a range delete on the indexed failed_at.
    await session.exec(delete(SignInFailure).where(col(SignInFailure.failed_at) <= now - _KEEP_FOR))
    for scope, key_hash in _keys(email, ip):
        session.add(SignInFailure(scope=scope.value, key_hash=key_hash, failed_at=now))
    await session.flush()


async def record_success(session: AsyncSession, email: str) -> None:
    """Clear the account's failures (the address keeps its count)."""
    await session.exec(
        delete(SignInFailure).where(
            col(SignInFailure.scope) == Scope.ACCOUNT.value,
            col(SignInFailure.key_hash) == _key_hash(Scope.ACCOUNT, email),
        )
    )


async def count_rows(session: AsyncSession) -> int:
    """How many failures are stored (for tests and operators)."""
    result = await session.exec(select(func.count()).select_from(SignInFailure))
    return int(result.one())
