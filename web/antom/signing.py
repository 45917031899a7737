"""Antom message signatures: requests, responses and notifications share one scheme.

Signed content is ``POST <uri>\\n<client-id>.<time>.<raw body>``; the value is RSA-SHA256
(PKCS#1 v1.5), standard base64, then URL-encoded. The body is always the exact bytes
on the wire: re-serialised JSON would change whitespace or escaping and break it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHM = "RSA256"
DEFAULT_KEY_VERSION = "1"


def sign_content(uri: str, client_id: str, time: str, body: bytes, method: str = "POST") -> bytes:
    return f"{method} {uri}\n{client_id}.{time}.".encode() + body


def sign(
    private_key: rsa.RSAPrivateKey,
    *,
    uri: str,
    client_id: str,
    time: str,
    body: bytes,
    method: str = "POST",
) -> str:
    """The URL-encoded base64 signature value (what follows ``signature=``)."""
    raw = private_key.sign(
        sign_content(uri, client_id, time, body, method), padding.PKCS1v15(), hashes.SHA256()
    )
    return quote_plus(base64.b64encode(raw).decode("ascii"))


def signature_header(value: str, key_version: str = DEFAULT_KEY_VERSION) -> str:
    return f"algorithm={ALGORITHM},keyVersion={key_version},signature={value}"


@dataclass(frozen=True, slots=True)
class SignatureHeader:
    algorithm: str
    key_version: str
    signature: bytes


class SignatureHeaderError(ValueError):
    pass


_PAIR = re.compile(r"\s*([A-Za-z]+)\s*=\s*(.*)\s*")


def parse_signature_header(header: str) -> SignatureHeader:
    """Parse ``algorithm=RSA256, keyVersion=1, signature=...`` leniently (spaces, case)."""
    fields: dict[str, str] = {}
    # The signature value is URL-encoded, so it contains no comma; split on them safely.
    for part in header.split(","):
        match = _PAIR.fullmatch(part)
        if not match:
            continue
        fields[match.group(1).lower()] = match.group(2).strip()
    value = fields.get("signature")
    if not value:
        raise SignatureHeaderError("signature header has no signature= value")
    algorithm = fields.get("algorithm", ALGORITHM).upper()
    if algorithm != ALGORITHM:
        raise SignatureHeaderError(f"unsupported signature algorithm {algorithm!r}")
    try:
        raw = base64.b64decode(unquote_plus(value), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureHeaderError("signature value is not URL-encoded base64") from None
    return SignatureHeader(algorithm, fields.get("keyversion", DEFAULT_KEY_VERSION), raw)


def verify(
    public_key: rsa.RSAPublicKey,
    *,
    uri: str,
    client_id: str,
    time: str,
    body: bytes,
    header: str,
    method: str = "POST",
) -> bool:
    """True only when ``header`` is a well-formed signature over exactly these bytes."""
    try:
        parsed = parse_signature_header(header)
        public_key.verify(
            parsed.signature,
            sign_content(uri, client_id, time, body, method),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (SignatureHeaderError, InvalidSignature):
        return False
    return True


def verify_any(
    public_keys: list[rsa.RSAPublicKey],
    *,
    uri: str,
    client_id: str,
    time: str,
    body: bytes,
    header: str,
    method: str = "POST",
) -> bool:
    """Verify against several keys, for the overlap while Antom rotates its key."""
    return any(
        verify(k, uri=uri, client_id=client_id, time=time, body=body, header=header, method=method)
        for k in public_keys
    )
