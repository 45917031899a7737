"""Generated RSA key pairs for tests, made once per test session (import time).

The merchant pair signs requests (the app) and verifies them (the simulator); the Antom
pair signs responses and notifications (the simulator) and verifies them (the app).
"""

from __future__ import annotations

from web.antom.keys import generate_private_key, private_key_pem, public_key_pem


def _pair() -> tuple[str, str]:
    key = generate_private_key()
    return private_key_pem(key), public_key_pem(key.public_key())


MERCHANT_PRIVATE_PEM, MERCHANT_PUBLIC_PEM = _pair()
ANTOM_PRIVATE_PEM, ANTOM_PUBLIC_PEM = _pair()
# A third pair that belongs to nobody: for "signed with the wrong key" tests.
STRANGER_PRIVATE_PEM, STRANGER_PUBLIC_PEM = _pair()
