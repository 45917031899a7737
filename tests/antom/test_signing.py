"""Signing primitives: content layout, header format, lenient parsing, strict verifying."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.antom.keypairs import keypair
from web.antom import signing
from web.antom.signing import SignatureHeaderError, parse_signature_header

KEY = keypair("merchant")
URI = "/ams/api/v1/payments/refund"
CID = "SANDBOX_5X00000000000000"
TIME = "1685599933871"
BODY = b'{"refundRequestId":"r1","paymentId":"p1","refundAmount":{"currency":"USD","value":"100"}}'


def sign(body: bytes = BODY) -> str:
    return signing.sign(KEY, uri=URI, client_id=CID, time=TIME, body=body)


def check(header: str, **changes: object) -> bool:
    args: dict[str, object] = {"uri": URI, "client_id": CID, "time": TIME, "body": BODY}
    args.update(changes)
    return signing.verify(KEY.public_key(), header=header, **args)  # type: ignore[arg-type]


def test_sign_content_layout() -> None:
    assert signing.sign_content(URI, CID, TIME, b"{}") == (
        b"POST /ams/api/v1/payments/refund\nSANDBOX_5X00000000000000.1685599933871.{}"
    )


def test_signature_is_urlencoded_rsa_sha256_of_the_content() -> None:
    value = sign()
    raw = KEY.sign(signing.sign_content(URI, CID, TIME, BODY), padding.PKCS1v15(), hashes.SHA256())
    assert value == quote(base64.b64encode(raw).decode(), safe="")
    assert not set("+/=") & set(value)
    assert signing.signature_header(value) == f"algorithm=RSA256,keyVersion=1,signature={value}"


def test_roundtrip() -> None:
    assert check(signing.signature_header(sign()))


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY + b" "},
        {"body": BODY.replace(b"100", b"101")},
        {"time": "1685599933872"},
        {"client_id": "SANDBOX_5X00000000000001"},
        {"uri": "/ams/sandbox/api/v1/payments/refund"},
    ],
    ids=["whitespace", "amount", "time", "client", "uri"],
)
def test_any_change_breaks_the_signature(change: dict[str, object]) -> None:
    assert not check(signing.signature_header(sign()), **change)


def test_crlf_body_does_not_verify_lf_signature() -> None:
    body = b'{\n "a": "1"\n}'
    header = signing.signature_header(sign(body))
    assert check(header, body=body)
    assert not check(header, body=body.replace(b"\n", b"\r\n"))


@pytest.mark.parametrize(
    "template",
    [
        "algorithm=RSA256,keyVersion=1,signature={}",
        "algorithm=RSA256, keyVersion=1, signature={}",
        "Algorithm = rsa256 ,KEYVERSION=1 , Signature={} ",
        "signature={}",
        "signature={},keyVersion=1,algorithm=RSA256",
    ],
    ids=["compact", "doc-spaces", "case-and-spaces", "value-only", "reordered"],
)
def test_header_parsing_is_lenient_about_layout(template: str) -> None:
    assert check(template.format(sign()))


def test_header_fields() -> None:
    parsed = parse_signature_header("algorithm=RSA256, keyVersion=3, signature=" + sign())
    assert parsed.algorithm == "RSA256"
    assert parsed.key_version == "3"
    assert len(parsed.signature) == 256  # 2048-bit RSA
    assert parse_signature_header("signature=" + sign()).key_version == "1"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("algorithm=RSA256,keyVersion=1", "no signature= value"),
        ("algorithm=RSA256,keyVersion=1,signature=", "no signature= value"),
        ("", "no signature= value"),
        ("algorithm=ECC224,keyVersion=1,signature=AAAA", "unsupported signature algorithm"),
        ("algorithm=RSA256,signature=%%%%", "not URL-encoded base64"),
    ],
)
def test_header_parsing_rejects(header: str, message: str) -> None:
    with pytest.raises(SignatureHeaderError, match=message):
        parse_signature_header(header)
    assert not check(header)


def test_raw_base64_signature_is_rejected_like_the_sdk() -> None:
    # Decoding as quote_plus turns '+' into a space, so raw base64 with '+' cannot verify.
    body = next(b for n in range(100) if "%2B" in sign(b := BODY + b" " * n))
    raw = sign(body).replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    assert check("signature=" + sign(body), body=body)
    assert not check("signature=" + raw, body=body)


def test_short_or_garbled_signature_is_false_not_an_error() -> None:
    value = sign()
    assert not check("signature=" + value[:40])
    assert not check("signature=" + base64.b64encode(b"x" * 256).decode())


def test_verify_any_accepts_any_configured_key() -> None:
    header = signing.signature_header(sign())
    others = [keypair("antom").public_key(), keypair("antom-next").public_key()]
    args = {"uri": URI, "client_id": CID, "time": TIME, "body": BODY, "header": header}
    assert signing.verify_any([*others, KEY.public_key()], **args)  # type: ignore[arg-type]
    assert not signing.verify_any(others, **args)  # type: ignore[arg-type]
    assert not signing.verify_any([], **args)  # type: ignore[arg-type]
