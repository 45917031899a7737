"""``refund-desk sim``: run the Antom simulator with uvicorn."""

from __future__ import annotations

import os
from pathlib import Path

import click

from web.antom.keys import (
    generate_private_key,
    load_private_key,
    private_key_pem,
    public_key_pem,
)
from web.sim.config import ENV_VARS, SimConfig, config_from_env

# Generated when no keys are configured. The simulator's own pair plays Antom; the merchant
# pair is a convenience for the desk (ANTOM_MERCHANT_PRIVATE_KEY / ANTOM_PUBLIC_KEY).
SIM_PRIVATE = "sim-antom-private.pem"
SIM_PUBLIC = "sim-antom-public.pem"
MERCHANT_PRIVATE = "merchant-private.pem"
MERCHANT_PUBLIC = "merchant-public.pem"


def _write(path: Path, text: str, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create with 0600 from the start: a private key must never be readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if private:
        path.chmod(0o600)


def _pair(data_dir: Path, private_name: str, public_name: str) -> tuple[str, str, bool]:
    """Load the key pair stored in ``data_dir`` or create it; returns (private, public, new)."""
    private_path, public_path = data_dir / private_name, data_dir / public_name
    if private_path.exists():
        private = private_path.read_text()
        public = public_key_pem(load_private_key(private, private_name).public_key())
        if not public_path.exists():
            _write(public_path, public, private=False)
        return private, public, False
    key = generate_private_key()
    private, public = private_key_pem(key), public_key_pem(key.public_key())
    _write(private_path, private, private=True)
    _write(public_path, public, private=False)
    return private, public, True


def resolve_config(data_dir: Path, env: dict[str, str]) -> tuple[SimConfig, list[str]]:
    """The configuration plus human-readable notes (file paths only, never key material)."""
    notes: list[str] = []
    sim_private = env.get("ANTOM_SIM_PRIVATE_KEY", "").strip()
    if not sim_private:
        sim_private, _, created = _pair(data_dir, SIM_PRIVATE, SIM_PUBLIC)
        verb = "generated" if created else "using"
        notes.append(f"{verb} the simulator (Antom) key pair: {data_dir / SIM_PRIVATE}")
        notes.append(f"  give the desk its public key as ANTOM_PUBLIC_KEY: {data_dir / SIM_PUBLIC}")
    merchant_public = env.get("ANTOM_SIM_MERCHANT_PUBLIC_KEY", "").strip()
    if not merchant_public:
        _, merchant_public, created = _pair(data_dir, MERCHANT_PRIVATE, MERCHANT_PUBLIC)
        verb = "generated" if created else "using"
        notes.append(f"{verb} a merchant key pair: {data_dir / MERCHANT_PRIVATE}")
        notes.append("  give the desk that private key as ANTOM_MERCHANT_PRIVATE_KEY")
    config = config_from_env(
        env,
        antom_private_key_pem=sim_private,
        merchant_public_key_pem=merchant_public,
        data_dir=data_dir,
    )
    return config, notes


def _env_help() -> str:
    return "\n".join(f"  {name:34} {text}" for name, text in ENV_VARS.items())


@click.command(
    "sim",
    # "\b" stops click from re-wrapping the table.
    epilog="\b\nEnvironment:\n" + _env_help(),
    context_settings={"max_content_width": 120},
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keys and database (default $ANTOM_SIM_DATA_DIR or ./.sim).",
)
def sim(host: str, port: int, data_dir: Path | None) -> None:
    """Run the Antom simulator: a signed gateway at /ams/... and an admin page at /sim."""
    import uvicorn

    from web.sim.app import create_sim_app

    env = dict(os.environ)
    folder = data_dir or Path(env.get("ANTOM_SIM_DATA_DIR", "").strip() or ".sim")
    config, notes = resolve_config(folder.resolve(), env)
    for note in notes:
        click.echo(note)
    click.echo(f"client id {config.client_id}; database {config.db_path}")
    click.echo(f"gateway http://{host}:{port}  admin http://{host}:{port}/sim")
    uvicorn.run(create_sim_app(config), host=host, port=port, log_level="info")


if __name__ == "__main__":
    sim()
