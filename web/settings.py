"""Configuration, read once from the environment into one frozen ``Settings``.

Every environment variable the app reads is listed in ``Settings.from_env``; nothing
else in the code base calls ``os.environ``. ``validate()`` refuses to start with a
message that lists every problem at once, so an operator fixes a deploy in one go.
Secret values are excluded from ``repr()`` and never appear in error messages.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from dataclasses import replace as dataclass_replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from web.antom.keys import AntomKeyError, load_private_key, load_public_key
from web.antom.signing import DEFAULT_KEY_VERSION

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
DB_FILENAME = "refund-desk.sqlite3"

Environment = Literal["development", "production", "test"]
ENVIRONMENTS: tuple[Environment, ...] = ("development", "production", "test")

# Placeholder until from_env() picks a real key; validate() refuses it in production.
UNSET_SECRET_KEY = "unset"  # noqa: S105  (a marker, never used to sign anything)
SECRET_KEY_FILE = ".secret_key"  # noqa: S105  (a file name)
MIN_SECRET_KEY_LENGTH = 32
# Substrings long enough that a random key never contains them by chance.
_WEAK_SECRET = re.compile(r"(change.?me|secret|password|example|default|insecure)", re.I)


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` lists each reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Refund Desk cannot start; fix the configuration:\n{lines}")


def normalise_database_url(url: str, data_dir: Path) -> str:
    """The async SQLAlchemy URL for ``DATABASE_URL`` (PaaS style ``postgres://`` included)."""
    url = url.strip()
    if not url:
        return f"sqlite+aiosqlite:///{data_dir / DB_FILENAME}"
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(["DATABASE_URL must look like sqlite:///path or postgresql://..."])
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg_async"):
        return f"postgresql+psycopg://{rest}"
    raise ConfigError(
        [f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:// or postgresql://)"]
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for logs and ``repr``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def local_secret_key(data_dir: Path) -> str:
    """Outside production, a random key kept in the data folder (made on first use).

    Never a fixed key in the source: a desk started without APP_ENV=production and
    without SECRET_KEY must still not accept cookies anyone could forge.
    """
    path = data_dir / SECRET_KEY_FILE
    try:
        key = path.read_text().strip()
        if len(key) >= MIN_SECRET_KEY_LENGTH:
            return key
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _int(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name} must be a whole number, got {raw!r}")
        return default
    if value < 1:
        problems.append(f"{name} must be at least 1, got {value}")
        return default
    return value


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """How the inquiry poller paces itself (``web/services/poller.py``).

    Each field is read from ``REFUND_DESK_POLL_<FIELD>`` (e.g. ``REFUND_DESK_POLL_BATCH``);
    the defaults suit one desk talking to the real Antom.
    """

    # Refunds claimed per pass, and how many of them are checked at the same time.
    batch: int = 20
    concurrency: int = 4
    # How long a claimed refund stays this poller's. Longer than one Antom call (connect
    # 5 s + read 15 s) with room to spare: a lease is only renewed once half has passed.
    lease_s: float = 60.0
    # Pause after a pass that found nothing due.
    idle_s: float = 2.0
    # Backoff: a check waits about half the refund's age, between these bounds.
    base_delay_s: float = 5.0
    max_delay_s: float = 600.0
    # A PENDING row younger than this may still be in its submit request.
    pending_grace_s: float = 60.0
    # Unsettled for longer than this: raised to leads (and still polled). The default
    # SLA; ``sla_s`` overrides it per payment method (REFUND_DESK_SLA_HOURS).
    stuck_after_s: float = 2 * 3600.0
    # Requests per second this poller allows itself; halved on each rate-limit answer,
    # never below min_rate.
    max_rate: float = 20.0
    min_rate: float = 0.2
    # How often the status gauges (and stuck refunds) are refreshed from the database.
    gauges_every_s: float = 10.0
    # Inquiries in a row that teach nothing (timeouts, untrusted or unclear answers)
    # before a refund is raised to a lead; it is still polled, never failed.
    unknown_alert_after: int = 10
    # Per payment method (Antom's paymentMethodType, e.g. CARD): seconds a refund may stay
    # unsettled before it is raised; methods not listed use ``stuck_after_s``.
    sla_s: tuple[tuple[str, float], ...] = ()

    def sla_for(self, method: str) -> float:
        """Seconds a refund paid by ``method`` may stay unsettled before it is raised."""
        return dict(self.sla_s).get(method.upper(), self.stuck_after_s)

    @property
    def stalled_after_s(self) -> float:
        """No finished pass for this long means the poller is stuck, not busy: passes are
        at most ``idle_s`` apart and one check holds its lease at most ``lease_s``."""
        return max(120.0, 2 * (self.idle_s + self.lease_s))

    @classmethod
    def from_env(cls, env: Mapping[str, str], problems: list[str]) -> PollerConfig:
        """``REFUND_DESK_POLL_<FIELD>`` overrides a field; bad values go to ``problems``."""
        values: dict[str, Any] = {}
        defaults = cls()
        for f in fields(cls):
            if f.name not in _POLL_BOUNDS:
                continue
            name = f"REFUND_DESK_POLL_{f.name.upper()}"
            raw = env.get(name, "").strip()
            if not raw:
                continue
            minimum, inclusive, unit = _POLL_BOUNDS[f.name]
            whole = isinstance(getattr(defaults, f.name), int)
            bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"
            try:
                value: float = int(raw) if whole else float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or (value < minimum if inclusive else value <= minimum):
                kind = "a whole number" if whole else "a number"
                problems.append(f"{name} must be {kind} of {unit}, {bound}; got {raw!r}")
                continue
            values[f.name] = value
        values["sla_s"] = parse_sla_hours(env.get(SLA_VARIABLE, ""), problems)
        config = cls(**values)
        if config.max_delay_s < config.base_delay_s:
            problems.append(
                "REFUND_DESK_POLL_MAX_DELAY_S must not be below REFUND_DESK_POLL_BASE_DELAY_S "
                f"({config.max_delay_s:g} < {config.base_delay_s:g})"
            )
        if config.min_rate > config.max_rate:
            problems.append(
                "REFUND_DESK_POLL_MIN_RATE must not be above REFUND_DESK_POLL_MAX_RATE "
                f"({config.min_rate:g} > {config.max_rate:g})"
            )
        return config


@dataclass(frozen=True, slots=True)
class BulkConfig:
    """How bulk refund runs pace themselves (``web/services/bulk_run.py``).

    ``REFUND_DESK_BULK_<FIELD>`` overrides a field (e.g. ``REFUND_DESK_BULK_MAX_RATE``).
    """

    # Refund calls per second one run allows itself; lowered to what Antom lets through
    # on REQUEST_TRAFFIC_EXCEED_LIMIT (the poller's RateLimiter), never below min_rate.
    max_rate: float = 10.0
    min_rate: float = 0.2
    # Rows in flight at once (a slow answer does not hold the others up).
    concurrency: int = 8
    # The batch's lease (one driver at a time across instances); renewed as rows go.
    lease_s: float = 60.0
    # The preview flags a payment refunded within this many days.
    recent_days: int = 30
    # Rows one batch may hold.
    max_rows: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str], problems: list[str]) -> BulkConfig:
        values: dict[str, Any] = {}
        defaults = cls()
        for f in fields(cls):
            name = f"REFUND_DESK_BULK_{f.name.upper()}"
            raw = env.get(name, "").strip()
            if not raw:
                continue
            whole = isinstance(getattr(defaults, f.name), int)
            try:
                value: float = int(raw) if whole else float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be a positive number, got {raw!r}")
                continue
            values[f.name] = value
        config = cls(**values)
        if config.min_rate > config.max_rate:
            problems.append("REFUND_DESK_BULK_MIN_RATE must not be above REFUND_DESK_BULK_MAX_RATE")
        return config


# Per PollerConfig field: the lowest value allowed, whether it is allowed itself, the unit.
_POLL_BOUNDS: dict[str, tuple[float, bool, str]] = {
    "batch": (1, True, "refunds"),
    "concurrency": (1, True, "checks"),
    "lease_s": (0, False, "seconds"),
    "idle_s": (0, False, "seconds"),
    "base_delay_s": (0, True, "seconds"),
    "max_delay_s": (0, True, "seconds"),
    "pending_grace_s": (0, True, "seconds"),
    "stuck_after_s": (0, False, "seconds"),
    "max_rate": (0, False, "requests per second"),
    "min_rate": (0, False, "requests per second"),
    "gauges_every_s": (0, True, "seconds"),
    "unknown_alert_after": (1, True, "inquiries"),
}
SLA_VARIABLE = "REFUND_DESK_SLA_HOURS"
_METHOD = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
# A year: beyond that an SLA is a typo (and a refund is long settled or long lost).
_SLA_MAX_HOURS = 24 * 366


def parse_sla_hours(raw: str, problems: list[str]) -> tuple[tuple[str, float], ...]:
    """``"CARD=48, GCASH=12.5"`` -> ``(("CARD", 172800.0), ("GCASH", 45000.0))``: hours per
    payment method; each bad entry is one problem (and left out)."""
    found: dict[str, float] = {}
    for item in raw.split(","):
        entry = item.strip()
        if not entry:
            continue
        method, sep, hours_text = (part.strip() for part in entry.partition("="))
        method = method.upper()
        if not sep or not _METHOD.fullmatch(method):
            problems.append(
                f"{SLA_VARIABLE} entries look like METHOD=hours (e.g. CARD=48), got {entry[:80]!r}"
            )
            continue
        try:
            hours = float(hours_text)
        except ValueError:
            hours = math.nan
        if not math.isfinite(hours) or not 0 < hours <= _SLA_MAX_HOURS:
            problems.append(
                f"{SLA_VARIABLE}: {method} needs hours above 0 and at most {_SLA_MAX_HOURS}, "
                f"got {hours_text[:20]!r}"
            )
            continue
        if method in found:
            problems.append(f"{SLA_VARIABLE} gives {method} twice")
            continue
        found[method] = hours * 3600.0
    return tuple(sorted(found.items()))


_SWITCH = {"on": True, "1": True, "yes": True, "true": True}
_SWITCH |= {"off": False, "0": False, "no": False, "false": False}


ROLES = ("agent", "lead", "admin")  # web.models.Role, which this module may not import


@dataclass(frozen=True, slots=True)
class OIDCConfig:
    """Single sign-on with an OpenID Connect provider (``OIDC_*``); off when empty.

    ``role_map`` maps a value of the ID token's ``group_claim`` to a desk role, e.g.
    ``OIDC_ROLE_MAP="desk-agents=agent,desk-leads=lead,it-admins=admin"``.
    """

    discovery_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    group_claim: str = "groups"
    role_map: tuple[tuple[str, str], ...] = ()
    # The sign-in page's button: "Sign in with <label>".
    label: str = "single sign-on"

    @property
    def enabled(self) -> bool:
        return bool(self.discovery_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str], problems: list[str]) -> OIDCConfig:
        pairs: list[tuple[str, str]] = []
        for item in env.get("OIDC_ROLE_MAP", "").split(","):
            if not item.strip():
                continue
            group, sep, role = item.rpartition("=")
            if not sep or not group.strip() or role.strip().lower() not in ROLES:
                problems.append(
                    f"OIDC_ROLE_MAP entries look like group=role (role one of "
                    f"{', '.join(ROLES)}), got {item.strip()[:80]!r}"
                )
                continue
            pairs.append((group.strip(), role.strip().lower()))
        url = env.get("OIDC_DISCOVERY_URL", "").strip()
        if url and not url.endswith("/.well-known/openid-configuration"):
            # An issuer was given: its discovery document lives at a fixed place.
            url = url.rstrip("/") + "/.well-known/openid-configuration"
        return cls(
            discovery_url=url,
            client_id=env.get("OIDC_CLIENT_ID", "").strip(),
            client_secret=env.get("OIDC_CLIENT_SECRET", "").strip(),
            group_claim=env.get("OIDC_GROUP_CLAIM", "").strip() or "groups",
            role_map=tuple(pairs),
            label=env.get("OIDC_LABEL", "").strip() or "single sign-on",
        )

    def problems(self, *, production: bool) -> list[str]:
        given = {
            "OIDC_DISCOVERY_URL": self.discovery_url,
            "OIDC_CLIENT_ID": self.client_id,
            "OIDC_CLIENT_SECRET": self.client_secret,
            "OIDC_ROLE_MAP": "x" if self.role_map else "",
        }
        if not any(given.values()):
            return []
        problems = [f"{name} is not set (single sign-on)" for name, v in given.items() if not v]
        if self.discovery_url and not re.match(r"^https?://[^/\s]+", self.discovery_url):
            problems.append("OIDC_DISCOVERY_URL must be an http(s):// address")
        elif production and self.discovery_url and not self.discovery_url.startswith("https://"):
            problems.append("OIDC_DISCOVERY_URL must be an https:// address in production")
        return problems


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    port: int = 8000
    secret_key: str = field(default=UNSET_SECRET_KEY, repr=False)
    antom_gateway_url: str = ""
    antom_client_id: str = ""
    antom_merchant_private_key: str = field(default="", repr=False)
    antom_public_keys: tuple[str, ...] = field(default=(), repr=False)
    public_base_url: str = "http://127.0.0.1:8000"
    antom_timeout_s: float = 15.0
    # Sent in each request's signature header; Antom resolves it against the keys
    # registered for the client id (protocol notes §16).
    antom_key_version: str = DEFAULT_KEY_VERSION
    data_dir: Path = field(default_factory=lambda: Path.cwd() / "data")
    templates_dir: Path = TEMPLATES_DIR
    static_dir: Path = STATIC_DIR
    environment: Environment = "development"
    instances: int = 1
    # Where uvicorn trusts X-Forwarded-* headers from (``refund-desk serve``).
    forwarded_allow_ips: str = "*"
    # Whether each web process runs an inquiry poller (off when a ``worker`` runs it).
    poller_enabled: bool = True
    poller: PollerConfig = field(default_factory=PollerConfig)
    # Optional single sign-on (web/services/sso.py); on when OIDC_DISCOVERY_URL is set.
    oidc: OIDCConfig = field(default_factory=OIDCConfig)
    # A refund awaiting approval that nobody decides within this is rejected, its
    # money released (REFUND_DESK_APPROVAL_EXPIRY_HOURS, default 72).
    approval_expiry_hours: float = 72.0
    bulk: BulkConfig = field(default_factory=BulkConfig)
    # Problems found while parsing the environment, reported together by validate().
    parse_problems: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"Settings(database_url={redact_url(self.database_url)!r}, {shown})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``). Call ``validate()`` next."""
        env = os.environ if env is None else env
        problems: list[str] = []
        data_dir = Path(env.get("REFUND_DESK_DATA_DIR") or Path.cwd() / "data").resolve()
        try:
            database_url = normalise_database_url(env.get("DATABASE_URL", ""), data_dir)
        except ConfigError as exc:
            problems.extend(exc.problems)
            database_url = normalise_database_url("", data_dir)

        environment = env.get("APP_ENV", "development").strip().lower() or "development"
        if environment not in ENVIRONMENTS:
            problems.append(
                f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}"
            )
            environment = "development"

        port = _int(env, "PORT", 8000, problems)
        instances = _int(env, "WEB_CONCURRENCY", 0, problems) or _int(env, "INSTANCES", 1, problems)
        timeout_raw = env.get("ANTOM_TIMEOUT_S", "").strip()
        timeout = 15.0
        if timeout_raw:
            try:
                timeout = float(timeout_raw)
                if not 0 < timeout <= 120:
                    raise ValueError
            except ValueError:
                problems.append(
                    f"ANTOM_TIMEOUT_S must be seconds between 0 and 120, got {timeout_raw!r}"
                )
                timeout = 15.0

        secret_key = env.get("SECRET_KEY", "").strip()
        if not secret_key:
            secret_key = (
                UNSET_SECRET_KEY if environment == "production" else local_secret_key(data_dir)
            )
        switch = env.get("REFUND_DESK_POLLER", "").strip().lower() or "on"
        if switch not in _SWITCH:
            problems.append(f"REFUND_DESK_POLLER must be on or off, got {switch!r}")
        poller = PollerConfig.from_env(env, problems)
        expiry_raw = env.get("REFUND_DESK_APPROVAL_EXPIRY_HOURS", "").strip()
        expiry = 72.0
        if expiry_raw:
            try:
                expiry = float(expiry_raw)
                if not 0 < expiry <= 24 * 90:
                    raise ValueError
            except ValueError:
                problems.append(
                    "REFUND_DESK_APPROVAL_EXPIRY_HOURS must be hours between 0 and 2160, "
                    f"got {expiry_raw!r}"
                )
                expiry = 72.0
        public_keys = tuple(
            text
            for name in ("ANTOM_PUBLIC_KEY", "ANTOM_PUBLIC_KEY_NEXT")
            if (text := env.get(name, "").strip())
        )
        return cls(
            database_url=database_url,
            port=port,
            secret_key=secret_key,
            antom_gateway_url=env.get("ANTOM_GATEWAY_URL", "").strip().rstrip("/"),
            antom_client_id=env.get("ANTOM_CLIENT_ID", "").strip(),
            antom_merchant_private_key=env.get("ANTOM_MERCHANT_PRIVATE_KEY", "").strip(),
            antom_public_keys=public_keys,
            public_base_url=(
                env.get("PUBLIC_BASE_URL", "").strip().rstrip("/") or f"http://127.0.0.1:{port}"
            ),
            antom_timeout_s=timeout,
            antom_key_version=env.get("ANTOM_KEY_VERSION", "").strip() or DEFAULT_KEY_VERSION,
            data_dir=data_dir,
            environment=environment,  # type: ignore[arg-type]  # checked against ENVIRONMENTS
            instances=instances,
            forwarded_allow_ips=env.get("FORWARDED_ALLOW_IPS", "").strip() or "*",
            poller_enabled=_SWITCH.get(switch, True),
            poller=poller,
            oidc=OIDCConfig.from_env(env, problems),
            approval_expiry_hours=expiry,
            bulk=BulkConfig.from_env(env, problems),
            parse_problems=tuple(problems),
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclass_replace(self, **changes)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def https(self) -> bool:
        """Cookies get ``Secure`` (and the ``__Host-`` prefix) when served over https."""
        return self.public_base_url.startswith("https://")

    @property
    def antom_configured(self) -> bool:
        return bool(
            self.antom_gateway_url
            and self.antom_client_id
            and self.antom_merchant_private_key
            and self.antom_public_keys
        )

    @property
    def approval_ttl(self) -> timedelta:
        return timedelta(hours=self.approval_expiry_hours)

    @property
    def refund_notify_url(self) -> str:
        return self.public_base_url + "/webhooks/antom"

    def problems(self) -> list[str]:
        """Everything wrong with this configuration, one readable line each."""
        problems = list(self.parse_problems)
        prod = self.is_production
        if self.secret_key == UNSET_SECRET_KEY:
            problems.append("SECRET_KEY is not set (use at least 32 random characters)")
        elif prod and (
            len(self.secret_key) < MIN_SECRET_KEY_LENGTH
            or len(set(self.secret_key)) < 10
            or _WEAK_SECRET.search(self.secret_key)
        ):
            problems.append(
                "SECRET_KEY is too weak: use at least 32 random characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if self.instances > 1 and self.is_sqlite:
            problems.append(
                f"{self.instances} instances were requested (WEB_CONCURRENCY) but DATABASE_URL "
                "is SQLite; several instances need PostgreSQL"
            )
        if prod and self.is_sqlite:
            problems.append("DATABASE_URL must point at PostgreSQL in production")
        if prod and not self.public_base_url.startswith("https://"):
            problems.append("PUBLIC_BASE_URL must be the https:// address the desk is served on")
        elif not re.match(r"^https?://[^/\s]+", self.public_base_url):
            problems.append("PUBLIC_BASE_URL must be an http(s):// address")
        if self.poller.lease_s <= 2 * self.antom_timeout_s:
            problems.append(
                f"REFUND_DESK_POLL_LEASE_S ({self.poller.lease_s:g}) must be more than twice "
                f"ANTOM_TIMEOUT_S ({self.antom_timeout_s:g}): a poller's lease has to outlast "
                "the Antom call it covers"
            )
        problems.extend(self._antom_problems(required=prod))
        problems.extend(self.oidc.problems(production=prod))
        return problems

    def _antom_problems(self, *, required: bool) -> list[str]:
        problems: list[str] = []
        given = {
            "ANTOM_GATEWAY_URL": self.antom_gateway_url,
            "ANTOM_CLIENT_ID": self.antom_client_id,
            "ANTOM_MERCHANT_PRIVATE_KEY": self.antom_merchant_private_key,
            "ANTOM_PUBLIC_KEY": "x" if self.antom_public_keys else "",
        }
        # Half a configuration is a mistake in every environment; none at all is fine
        # outside production (the desk runs, refunds are refused with a clear message).
        if required or any(given.values()):
            problems.extend(f"{name} is not set" for name, value in given.items() if not value)
        if self.antom_gateway_url and not re.match(r"^https?://[^/\s]+", self.antom_gateway_url):
            problems.append("ANTOM_GATEWAY_URL must be an http(s):// address")
        elif (
            required
            and self.antom_gateway_url
            and not self.antom_gateway_url.startswith("https://")
        ):
            # Refunds and keys' signatures must not cross the network in clear.
            problems.append("ANTOM_GATEWAY_URL must be an https:// address in production")
        if not re.fullmatch(r"[0-9A-Za-z._-]{1,16}", self.antom_key_version):
            problems.append(
                f"ANTOM_KEY_VERSION must be a short version label such as 1, "
                f"got {self.antom_key_version[:20]!r}"
            )
        if self.antom_merchant_private_key:
            try:
                load_private_key(self.antom_merchant_private_key, "ANTOM_MERCHANT_PRIVATE_KEY")
            except AntomKeyError as exc:
                problems.append(str(exc))
        names = ("ANTOM_PUBLIC_KEY", "ANTOM_PUBLIC_KEY_NEXT")
        for name, text in zip(names, self.antom_public_keys, strict=False):
            try:
                load_public_key(text, name)
            except AntomKeyError as exc:
                problems.append(str(exc))
        return problems

    def validate(self) -> Settings:
        """Raise ``ConfigError`` listing every problem; return self when usable."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self
