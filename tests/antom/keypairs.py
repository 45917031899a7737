"""Test RSA key pairs, generated once per test session (2048-bit generation is slow)."""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from web.antom.keys import generate_private_key


@cache
def keypair(name: str) -> RSAPrivateKey:
    """``keypair("merchant")``, ``keypair("antom")``, ``keypair("antom-next")``, …"""
    return generate_private_key()
