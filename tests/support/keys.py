"""Generated RSA key pairs for tests, made once per test session (import time).

The merchant pair signs requests (the app) and verifies them (the simulator); the Antom
pair signs responses and notifications (the simulator) and verifies them (the app).
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from web.antom.keys import generate_private_key, load_private_key, private_key_pem, public_key_pem


def _pair() -> tuple[str, str]:
    key = generate_private_key()
    return private_key_pem(key), public_key_pem(key.public_key())


MERCHANT_PRIVATE_PEM, MERCHANT_PUBLIC_PEM = _pair()
ANTOM_PRIVATE_PEM, ANTOM_PUBLIC_PEM = _pair()
# A third pair that belongs to nobody: for "signed with the wrong key" tests.
STRANGER_PRIVATE_PEM, STRANGER_PUBLIC_PEM = _pair()


@functools.cache
def private_key(pem: str) -> RSAPrivateKey:
    """``load_private_key(pem)`` once per process: parsing and checking an RSA private key
    takes about 35 ms, and tests that sign many messages would pay it for each one."""
    return load_private_key(pem)
