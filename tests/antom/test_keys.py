"""Key loading accepts what merchants paste; errors name the key and never echo it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.antom.keypairs import keypair
from web.antom.keys import (
    AntomKeyError,
    bare_base64,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
)

KEY = keypair("merchant")
PKCS8 = private_key_pem(KEY)
PKCS1 = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()
SPKI = public_key_pem(KEY.public_key())
PKCS1_PUBLIC = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    .decode()
)


def same_private(loaded: rsa.RSAPrivateKey) -> bool:
    return loaded.private_numbers() == KEY.private_numbers()


def same_public(loaded: rsa.RSAPublicKey) -> bool:
    return loaded.public_numbers() == KEY.public_key().public_numbers()


@pytest.mark.parametrize(
    "text",
    [
        PKCS1,
        PKCS8,
        bare_base64(PKCS8),
        bare_base64(PKCS1),
        PKCS8.replace("\n", "\r\n"),
        PKCS1.replace("\n", "\\n"),  # a PEM squeezed into one env-var line
        "  \n" + PKCS8 + "\n\n  ",
        "Merchant key:\n" + PKCS8,  # text around the block
    ],
    ids=[
        "pkcs1",
        "pkcs8",
        "bare-pkcs8",
        "bare-pkcs1",
        "crlf",
        "escaped-newlines",
        "padded",
        "prose",
    ],
)
def test_private_key_formats(text: str) -> None:
    assert PKCS1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert same_private(load_private_key(text, "ANTOM_MERCHANT_PRIVATE_KEY"))


@pytest.mark.parametrize(
    "text",
    [SPKI, PKCS1_PUBLIC, bare_base64(SPKI), SPKI.replace("\n", "\r\n"), SPKI.replace("\n", "\\n")],
    ids=["spki", "pkcs1", "bare-spki", "crlf", "escaped-newlines"],
)
def test_public_key_formats(text: str) -> None:
    assert same_public(load_public_key(text, "ANTOM_PUBLIC_KEY"))


SMALL = rsa.generate_private_key(public_exponent=65537, key_size=1024)
EC_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ANTOM_MERCHANT_PRIVATE_KEY is empty"),
        ("   \n ", "ANTOM_MERCHANT_PRIVATE_KEY is empty"),
        ("not a key at all!", "ANTOM_MERCHANT_PRIVATE_KEY is not valid base64 or PEM"),
        (bare_base64(PKCS8)[:-40], "ANTOM_MERCHANT_PRIVATE_KEY"),
        ("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", "could not be parsed as an RSA private key"),
        (SPKI, "(labelled PUBLIC KEY) could not be parsed as an RSA private key"),
        (private_key_pem(SMALL), "is 1024-bit; Antom requires 2048-bit RSA"),
        (EC_PEM, "ANTOM_MERCHANT_PRIVATE_KEY is not an RSA key"),
    ],
    ids=["empty", "blank", "garbage", "truncated", "not-der", "public", "1024", "ec"],
)
def test_bad_private_key_is_named_not_echoed(text: str, message: str) -> None:
    with pytest.raises(AntomKeyError) as raised:
        load_private_key(text, "ANTOM_MERCHANT_PRIVATE_KEY")
    assert message in str(raised.value)
    assert_no_input_echo(text, raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ANTOM_PUBLIC_KEY is empty"),
        ("%%%", "ANTOM_PUBLIC_KEY is not valid base64 or PEM"),
        (PKCS8, "ANTOM_PUBLIC_KEY is a private key; a public key is expected here"),
        (bare_base64(SPKI)[:100], "ANTOM_PUBLIC_KEY"),
    ],
    ids=["empty", "garbage", "private", "truncated"],
)
def test_bad_public_key_is_named_not_echoed(text: str, message: str) -> None:
    with pytest.raises(AntomKeyError) as raised:
        load_public_key(text, "ANTOM_PUBLIC_KEY")
    assert message in str(raised.value)
    assert_no_input_echo(text, raised.value)


def assert_no_input_echo(text: str, exc: AntomKeyError) -> None:
    error = str(exc)
    body = bare_base64(text) if "-----" in text else text.strip()
    # No run of 6 input characters leaks out (the key name is the caller's, not input).
    fragments = {body[i : i + 6] for i in range(max(0, len(body) - 5))}
    leaked = {f for f in fragments if f in error and f not in "ANTOM_PUBLIC_KEY"}
    assert not leaked, leaked
    # The parser's own exception is not chained on, so tracebacks cannot show it either.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
