"""RSA key loading that accepts what merchants actually paste.

Antom's Dashboard shows keys as a bare base64 body; people also paste full PEM files
(PKCS#1 ``RSA PRIVATE KEY``, PKCS#8 ``PRIVATE KEY``, SPKI ``PUBLIC KEY``) with stray
whitespace or Windows line endings. Errors name the key but never echo its material.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_KEY_BITS = 2048

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.DOTALL)


class AntomKeyError(ValueError):
    """A configured key is missing or malformed. The message names the key only."""


def _der_from_text(text: str, name: str) -> tuple[str | None, bytes]:
    cleaned = text.strip().replace("\\n", "\n")
    if not cleaned:
        raise AntomKeyError(f"{name} is empty")
    match = _PEM_BLOCK.search(cleaned)
    label = match.group(1).strip() if match else None
    body = match.group(2) if match else cleaned
    body = re.sub(r"\s+", "", body)
    try:
        return label, base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise AntomKeyError(f"{name} is not valid base64 or PEM") from None


def load_private_key(text: str, name: str = "private key") -> rsa.RSAPrivateKey:
    """Load an RSA private key from PEM (PKCS#1 or PKCS#8) or a bare base64 DER body."""
    label, der = _der_from_text(text, name)
    try:
        # DER loading accepts both PKCS#8 and PKCS#1 ("traditional") encodings.
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        kind = f" (labelled {label})" if label else ""
        raise AntomKeyError(f"{name}{kind} could not be parsed as an RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AntomKeyError(f"{name} is not an RSA key")
    if key.key_size < MIN_KEY_BITS:
        raise AntomKeyError(f"{name} is {key.key_size}-bit; Antom requires {MIN_KEY_BITS}-bit RSA")
    return key


def load_public_key(text: str, name: str = "public key") -> rsa.RSAPublicKey:
    """Load an RSA public key from PEM (SPKI or PKCS#1) or a bare base64 DER body."""
    label, der = _der_from_text(text, name)
    key = None
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        try:
            key = serialization.load_pem_public_key(
                b"-----BEGIN RSA PUBLIC KEY-----\n"
                + base64.encodebytes(der)
                + b"-----END RSA PUBLIC KEY-----\n"
            )
        except (ValueError, TypeError):
            key = None
    if key is None:
        if label and "PRIVATE" in label:
            raise AntomKeyError(f"{name} is a private key; a public key is expected here")
        raise AntomKeyError(f"{name} could not be parsed as an RSA public key")
    if not isinstance(key, rsa.RSAPublicKey):
        raise AntomKeyError(f"{name} is not an RSA key")
    return key


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM, the form the Antom Dashboard and Java/Go SDKs use."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def bare_base64(pem: str) -> str:
    """The base64 body of a PEM block, as the Antom Dashboard displays keys."""
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
