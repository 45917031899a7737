"""Simulator configuration: one frozen value, built from keyword arguments or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Antom's documented resend intervals after a notification is not acknowledged
# (protocol notes §4.4): up to 8 retries, each counted from the previous attempt.
RETRY_SCHEDULE_S: tuple[float, ...] = (0, 120, 600, 600, 3600, 7200, 21600, 54000)

DEFAULT_CLIENT_ID = "SIM_CLIENT_0001"

# Antom's sandbox client ids start with this (the official SDKs switch to the
# /ams/sandbox/api paths on it); the sandbox never re-sends notifications.
SANDBOX_CLIENT_PREFIX = "SANDBOX_"
SANDBOX_PATH_PREFIX = "/ams/sandbox/"


def is_sandbox_client(client_id: str) -> bool:
    return client_id.startswith(SANDBOX_CLIENT_PREFIX)


@dataclass(frozen=True, slots=True)
class SimConfig:
    client_id: str
    antom_private_key_pem: str  # the simulator signs responses and notifications with it
    merchant_public_key_pem: str  # verifies the merchant's request signatures
    db_path: Path
    notify_url: str | None = None  # "Dashboard" notification address (refunds may override)
    # Multiplies every simulated business delay (refund settlement, reversal, notification
    # retries); 0.001 turns the 24-hour retry schedule into about 90 seconds.
    time_scale: float = 1.0
    refund_delay_s: float = 60.0  # nominal time an async refund stays PROCESSING
    reversal_delay_s: float = 600.0  # nominal time before a doomed refund is reversed
    # Real seconds the "lost response" fault holds a connection (longer than the client's
    # timeout, so the client gives up first).
    hang_s: float = 20.0
    rate_limit_per_s: float | None = None  # token bucket refill rate; None = no limit
    rate_limit_burst: int = 20
    magic_amounts: bool = True
    max_clock_skew_s: float | None = None  # None: request-time is not checked for freshness
    notify_timeout_s: float = 10.0
    retry_schedule_s: tuple[float, ...] = RETRY_SCHEDULE_S
    seed: int | None = None  # for the random global fault rates
    extra_client_ids: tuple[str, ...] = field(default_factory=tuple)

    def scaled(self, nominal_s: float) -> float:
        return nominal_s * self.time_scale

    @property
    def client_ids(self) -> frozenset[str]:
        return frozenset((self.client_id, *self.extra_client_ids))


ENV_VARS: dict[str, str] = {
    "ANTOM_SIM_CLIENT_ID": f"client id merchants use (default {DEFAULT_CLIENT_ID})",
    "ANTOM_SIM_PRIVATE_KEY": "the simulator's own (Antom) RSA private key, PEM or base64",
    "ANTOM_SIM_MERCHANT_PUBLIC_KEY": "the merchant public key requests are verified with",
    "ANTOM_SIM_NOTIFY_URL": "default notification URL (Dashboard setting)",
    "ANTOM_SIM_DB": "SQLite file (default <data dir>/sim.sqlite3)",
    "ANTOM_SIM_DATA_DIR": "where generated keys and the database live (default ./.sim)",
    "ANTOM_SIM_TIME_SCALE": "multiplier for simulated delays (default 1)",
    "ANTOM_SIM_REFUND_DELAY_S": "nominal seconds an async refund stays PROCESSING (default 60)",
    "ANTOM_SIM_REVERSAL_DELAY_S": "nominal seconds before a reversal (default 600)",
    "ANTOM_SIM_HANG_S": "real seconds a lost response holds the connection (default 20)",
    "ANTOM_SIM_RATE_LIMIT": "requests per second allowed (token bucket); unset = unlimited",
    "ANTOM_SIM_RATE_BURST": "token bucket capacity (default 20)",
    "ANTOM_SIM_MAGIC_AMOUNTS": "0 disables the magic-amount fault table (default 1)",
}


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return float(raw) if raw else default


def config_from_env(
    env: dict[str, str] | None = None,
    *,
    antom_private_key_pem: str,
    merchant_public_key_pem: str,
    data_dir: Path,
) -> SimConfig:
    """Everything but the keys (resolved by the CLI, which may generate them)."""
    e = dict(os.environ) if env is None else env
    rate = e.get("ANTOM_SIM_RATE_LIMIT", "").strip()
    db = e.get("ANTOM_SIM_DB", "").strip()
    return SimConfig(
        client_id=e.get("ANTOM_SIM_CLIENT_ID", "").strip() or DEFAULT_CLIENT_ID,
        antom_private_key_pem=antom_private_key_pem,
        merchant_public_key_pem=merchant_public_key_pem,
        db_path=Path(db) if db else data_dir / "sim.sqlite3",
        notify_url=e.get("ANTOM_SIM_NOTIFY_URL", "").strip() or None,
        time_scale=_float(e, "ANTOM_SIM_TIME_SCALE", 1.0),
        refund_delay_s=_float(e, "ANTOM_SIM_REFUND_DELAY_S", 60.0),
        reversal_delay_s=_float(e, "ANTOM_SIM_REVERSAL_DELAY_S", 600.0),
        hang_s=_float(e, "ANTOM_SIM_HANG_S", 20.0),
        rate_limit_per_s=float(rate) if rate else None,
        rate_limit_burst=int(_float(e, "ANTOM_SIM_RATE_BURST", 20)),
        magic_amounts=e.get("ANTOM_SIM_MAGIC_AMOUNTS", "1").strip() not in ("0", "false", "no"),
    )
