"""Run batches of checks through Antom's official Python SDK in an isolated environment."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from web.antom.keys import bare_base64, public_key_pem

SDK = "global-open-sdk-python==1.7.1"
SCRIPT = Path(__file__).with_name("sdk_oracle.py")


def run_oracle(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One subprocess for the whole batch (the isolated env is cached by uv)."""
    uv = shutil.which("uv")
    assert uv, "uv is needed to run the SDK oracle"
    proc = subprocess.run(
        [uv, "run", "--no-project", "--isolated", "--with", SDK, "python", str(SCRIPT)],
        input=json.dumps({"checks": checks}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    assert len(results) == len(checks)
    return results


def sdk_private_key(key: RSAPrivateKey) -> str:
    """The SDK wraps the key in an RSA PRIVATE KEY label, so give it a PKCS#1 body."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return bare_base64(pem)


def sdk_public_key(key: RSAPublicKey) -> str:
    """Bare base64 SubjectPublicKeyInfo, as the Antom Dashboard shows it."""
    return bare_base64(public_key_pem(key))
