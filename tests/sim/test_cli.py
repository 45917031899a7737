"""``refund-desk sim``: configuration from the environment and generated keys."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import httpx

from tests.support import keys
from tests.support.net import free_port, serving_process
from web.antom.keys import load_private_key, load_public_key, public_key_pem
from web.sim.cli import MERCHANT_PRIVATE, MERCHANT_PUBLIC, SIM_PRIVATE, SIM_PUBLIC, resolve_config


def test_generates_both_key_pairs_once_with_private_files_0600(tmp_path: Path) -> None:
    config, notes = resolve_config(tmp_path, {})
    for name in (SIM_PRIVATE, MERCHANT_PRIVATE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    for name in (SIM_PUBLIC, MERCHANT_PUBLIC):
        assert (tmp_path / name).exists()
    sim_key = load_private_key((tmp_path / SIM_PRIVATE).read_text())
    assert public_key_pem(sim_key.public_key()) == (tmp_path / SIM_PUBLIC).read_text()
    merchant = load_private_key((tmp_path / MERCHANT_PRIVATE).read_text())
    assert config.merchant_public_key_pem == public_key_pem(merchant.public_key())
    assert config.db_path == tmp_path / "sim.sqlite3"
    # notes name files, never key material
    text = "\n".join(notes)
    assert str(tmp_path / SIM_PRIVATE) in text and "BEGIN" not in text
    again, notes2 = resolve_config(tmp_path, {})
    assert again.antom_private_key_pem == config.antom_private_key_pem
    assert all("generated" not in n for n in notes2)


def test_environment_wins(tmp_path: Path) -> None:
    env = {
        "ANTOM_SIM_CLIENT_ID": "MY_CLIENT",
        "ANTOM_SIM_PRIVATE_KEY": keys.ANTOM_PRIVATE_PEM,
        "ANTOM_SIM_MERCHANT_PUBLIC_KEY": keys.MERCHANT_PUBLIC_PEM,
        "ANTOM_SIM_NOTIFY_URL": "http://desk.local/webhooks/antom",
        "ANTOM_SIM_DB": str(tmp_path / "elsewhere.db"),
        "ANTOM_SIM_TIME_SCALE": "0.01",
        "ANTOM_SIM_REFUND_DELAY_S": "5",
        "ANTOM_SIM_RATE_LIMIT": "7.5",
        "ANTOM_SIM_RATE_BURST": "3",
        "ANTOM_SIM_MAGIC_AMOUNTS": "0",
    }
    config, notes = resolve_config(tmp_path, env)
    assert notes == [] and list(tmp_path.iterdir()) == []
    assert config.client_id == "MY_CLIENT"
    assert config.notify_url == "http://desk.local/webhooks/antom"
    assert config.db_path == tmp_path / "elsewhere.db"
    assert (config.time_scale, config.refund_delay_s) == (0.01, 5.0)
    assert (config.rate_limit_per_s, config.rate_limit_burst) == (7.5, 3)
    assert config.magic_amounts is False
    load_public_key(config.merchant_public_key_pem)


def test_sim_command_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "ANTOM_SIM_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "web.sim.cli", "--port", str(port)]
    config_url = f"http://127.0.0.1:{port}/sim/api/config"
    with serving_process(command, env, config_url) as proc:
        assert httpx.get(config_url, timeout=5).json()["clientId"] == "SIM_CLIENT_0001"
        assert (tmp_path / SIM_PRIVATE).exists()
    output = proc.stdout.read() if proc.stdout else ""
    assert str(tmp_path / SIM_PRIVATE) in output
    assert "PRIVATE KEY-----" not in output
