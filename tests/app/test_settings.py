"""Settings: parsing the environment, validation messages, and secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.keys import ANTOM_PUBLIC_PEM, MERCHANT_PRIVATE_PEM
from web.antom.keys import bare_base64
from web.settings import ConfigError, Settings, normalise_database_url

STRONG_KEY = "Vb3q9Zt1xK7mN2pR8sL4wY6cH0jD5fGaQeTuIoP"


def env_for(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"REFUND_DESK_DATA_DIR": str(tmp_path), **values}


def production_env(tmp_path: Path, **values: str) -> dict[str, str]:
    complete = {
        "APP_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "DATABASE_URL": "postgres://desk:pw@db.internal:5432/desk",
        "PUBLIC_BASE_URL": "https://desk.example.com/",
        "ANTOM_GATEWAY_URL": "https://open-sea-global.alipay.com",
        "ANTOM_CLIENT_ID": "SANDBOX_5YBV2N2Z2Q0X",
        "ANTOM_MERCHANT_PRIVATE_KEY": MERCHANT_PRIVATE_PEM,
        "ANTOM_PUBLIC_KEY": ANTOM_PUBLIC_PEM,
    }
    return env_for(tmp_path, **{**complete, **values})


def test_defaults_give_a_sqlite_file_in_the_data_folder(tmp_path: Path) -> None:
    settings = Settings.from_env(env_for(tmp_path)).validate()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'refund-desk.sqlite3'}"
    assert settings.environment == "development"
    assert settings.port == 8000
    assert settings.instances == 1
    assert settings.public_base_url == "http://127.0.0.1:8000"
    assert settings.refund_notify_url == "http://127.0.0.1:8000/webhooks/antom"
    assert not settings.antom_configured


def test_development_without_secret_key_gets_a_random_persistent_one(tmp_path: Path) -> None:
    first = Settings.from_env(env_for(tmp_path))
    second = Settings.from_env(env_for(tmp_path))
    other = Settings.from_env(env_for(tmp_path / "other"))
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    assert first.secret_key != other.secret_key
    assert (tmp_path / ".secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:////var/data/desk.db", "sqlite+aiosqlite:////var/data/desk.db"),
        ("sqlite:///relative.db", "sqlite+aiosqlite:///relative.db"),
    ],
)
def test_database_url_is_normalised(given: str, expected: str) -> None:
    assert normalise_database_url(given, Path("/unused")) == expected


def test_unsupported_database_url_is_reported_without_echoing_it(tmp_path: Path) -> None:
    settings = Settings.from_env(env_for(tmp_path, DATABASE_URL="mysql://root:hunter22@db/x"))
    with pytest.raises(ConfigError) as info:
        settings.validate()
    assert "DATABASE_URL scheme 'mysql' is not supported" in str(info.value)
    assert "hunter22" not in str(info.value)


def test_numbers_are_parsed_and_bad_ones_reported_together(tmp_path: Path) -> None:
    ok = Settings.from_env(env_for(tmp_path, PORT="5001", ANTOM_TIMEOUT_S="7.5"))
    assert (ok.port, ok.antom_timeout_s) == (5001, 7.5)
    bad = Settings.from_env(env_for(tmp_path, PORT="eighty", ANTOM_TIMEOUT_S="-1", APP_ENV="prod"))
    problems = bad.problems()
    assert any(p.startswith("PORT must be a whole number") for p in problems)
    assert any(p.startswith("ANTOM_TIMEOUT_S must be seconds") for p in problems)
    assert any(p.startswith("APP_ENV must be one of") for p in problems)


def test_several_instances_on_sqlite_are_refused(tmp_path: Path) -> None:
    settings = Settings.from_env(env_for(tmp_path, WEB_CONCURRENCY="3"))
    with pytest.raises(ConfigError) as info:
        settings.validate()
    assert "3 instances were requested (WEB_CONCURRENCY) but DATABASE_URL is SQLite" in str(
        info.value
    )
    pg = Settings.from_env(env_for(tmp_path, WEB_CONCURRENCY="3", DATABASE_URL="postgres://h/d"))
    assert pg.validate().instances == 3


def test_complete_production_settings_validate(tmp_path: Path) -> None:
    settings = Settings.from_env(production_env(tmp_path)).validate()
    assert settings.is_production and settings.https and settings.antom_configured
    assert settings.public_base_url == "https://desk.example.com"
    assert settings.refund_notify_url == "https://desk.example.com/webhooks/antom"
    assert settings.database_url == "postgresql+psycopg://desk:pw@db.internal:5432/desk"


def test_production_refuses_a_plain_http_gateway(tmp_path: Path) -> None:
    """Refund requests and their signatures must not cross the network in clear."""
    env = production_env(tmp_path, ANTOM_GATEWAY_URL="http://open-sea-global.alipay.com")
    with pytest.raises(ConfigError, match="ANTOM_GATEWAY_URL must be an https:// address"):
        Settings.from_env(env).validate()
    # Outside production the simulator's http:// address is fine.
    local = env_for(tmp_path, ANTOM_GATEWAY_URL="http://127.0.0.1:8001")
    local |= {
        "ANTOM_CLIENT_ID": "SIM",
        "ANTOM_MERCHANT_PRIVATE_KEY": MERCHANT_PRIVATE_PEM,
        "ANTOM_PUBLIC_KEY": ANTOM_PUBLIC_PEM,
    }
    assert Settings.from_env(local).validate().antom_gateway_url == "http://127.0.0.1:8001"


def test_key_version_is_configurable_and_checked(tmp_path: Path) -> None:
    assert Settings.from_env(production_env(tmp_path)).validate().antom_key_version == "1"
    chosen = Settings.from_env(production_env(tmp_path, ANTOM_KEY_VERSION="3")).validate()
    assert chosen.antom_key_version == "3"
    with pytest.raises(ConfigError, match="ANTOM_KEY_VERSION"):
        Settings.from_env(production_env(tmp_path, ANTOM_KEY_VERSION="1,signature=x")).validate()


def test_incomplete_production_lists_every_problem_at_once(tmp_path: Path) -> None:
    settings = Settings.from_env(env_for(tmp_path, APP_ENV="production"))
    with pytest.raises(ConfigError) as info:
        settings.validate()
    message = str(info.value)
    for expected in (
        "SECRET_KEY is not set",
        "DATABASE_URL must point at PostgreSQL in production",
        "PUBLIC_BASE_URL must be the https:// address",
        "ANTOM_GATEWAY_URL is not set",
        "ANTOM_CLIENT_ID is not set",
        "ANTOM_MERCHANT_PRIVATE_KEY is not set",
        "ANTOM_PUBLIC_KEY is not set",
    ):
        assert expected in message
    assert len(info.value.problems) == 7


@pytest.mark.parametrize("weak", ["short-key", "changeme-changeme-changeme-changeme", "a" * 40])
def test_weak_secret_key_is_refused_in_production(tmp_path: Path, weak: str) -> None:
    settings = Settings.from_env(production_env(tmp_path, SECRET_KEY=weak))
    problems = settings.problems()
    assert len(problems) == 1 and problems[0].startswith("SECRET_KEY is too weak")
    assert weak not in problems[0]


def test_half_an_antom_configuration_is_refused_even_in_development(tmp_path: Path) -> None:
    settings = Settings.from_env(env_for(tmp_path, ANTOM_CLIENT_ID="SANDBOX_X"))
    assert "ANTOM_MERCHANT_PRIVATE_KEY is not set" in settings.problems()


def test_malformed_keys_are_named_and_never_echoed(tmp_path: Path) -> None:
    body = bare_base64(MERCHANT_PRIVATE_PEM)
    broken_private = body[: len(body) // 2] + "!!" + body[len(body) // 2 :]
    settings = Settings.from_env(
        production_env(
            tmp_path,
            ANTOM_MERCHANT_PRIVATE_KEY=broken_private,
            ANTOM_PUBLIC_KEY=MERCHANT_PRIVATE_PEM,  # a private key where a public one goes
            ANTOM_PUBLIC_KEY_NEXT="bm90IGEga2V5",
        )
    )
    problems = settings.problems()
    text = "\n".join(problems)
    assert any(p.startswith("ANTOM_MERCHANT_PRIVATE_KEY") for p in problems)
    assert any(p.startswith("ANTOM_PUBLIC_KEY ") for p in problems)
    assert any(p.startswith("ANTOM_PUBLIC_KEY_NEXT") for p in problems)
    for secret_line in MERCHANT_PRIVATE_PEM.splitlines()[1:-1]:
        assert secret_line not in text
    assert body[:40] not in text


def test_repr_hides_secrets_and_database_password(tmp_path: Path) -> None:
    settings = Settings.from_env(production_env(tmp_path))
    text = repr(settings)
    assert STRONG_KEY not in text
    assert bare_base64(MERCHANT_PRIVATE_PEM)[:40] not in text
    assert bare_base64(ANTOM_PUBLIC_PEM)[:40] not in text
    assert ":pw@" not in text
    assert "postgresql+psycopg://desk:***@db.internal:5432/desk" in text
    assert "SANDBOX_5YBV2N2Z2Q0X" in text  # not a secret, useful when debugging


def test_rotation_key_is_accepted_alongside_the_current_one(tmp_path: Path) -> None:
    settings = Settings.from_env(production_env(tmp_path, ANTOM_PUBLIC_KEY_NEXT=ANTOM_PUBLIC_PEM))
    assert settings.validate().antom_public_keys == (
        ANTOM_PUBLIC_PEM.strip(),
        ANTOM_PUBLIC_PEM.strip(),
    )


def test_sla_per_payment_method_is_parsed_and_bad_entries_reported_together(
    tmp_path: Path,
) -> None:
    ok = Settings.from_env(
        env_for(
            tmp_path,
            REFUND_DESK_SLA_HOURS=" card=48, GCASH=0.5 ,",
            REFUND_DESK_POLL_STUCK_AFTER_S="600",
        )
    )
    assert ok.problems() == []
    assert ok.poller.sla_s == (("CARD", 48 * 3600.0), ("GCASH", 1800.0))
    assert ok.poller.sla_for("CARD") == 48 * 3600.0
    assert ok.poller.sla_for("card") == 48 * 3600.0
    assert ok.poller.sla_for("ALIPAY_CN") == 600.0  # no SLA of its own: the default

    bad = Settings.from_env(
        env_for(
            tmp_path, REFUND_DESK_SLA_HOURS="CARD, DANA=0, GCASH=x, 9X=1, KAKAOPAY=2, kakaopay=3"
        )
    )
    problems = [p for p in bad.problems() if "REFUND_DESK_SLA_HOURS" in p]
    assert problems == [
        "REFUND_DESK_SLA_HOURS entries look like METHOD=hours (e.g. CARD=48), got 'CARD'",
        "REFUND_DESK_SLA_HOURS: DANA needs hours above 0 and at most 8784, got '0'",
        "REFUND_DESK_SLA_HOURS: GCASH needs hours above 0 and at most 8784, got 'x'",
        "REFUND_DESK_SLA_HOURS entries look like METHOD=hours (e.g. CARD=48), got '9X=1'",
        "REFUND_DESK_SLA_HOURS gives KAKAOPAY twice",
    ]
    assert bad.poller.sla_s == (("KAKAOPAY", 7200.0),)
