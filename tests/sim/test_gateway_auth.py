"""Signatures, client ids, request-time formats and request targets, over real HTTP."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.sim.helpers import Gateway, code, iso_now
from tests.support import keys
from tests.support.simulator import SimHandle, running_simulator
from web.antom import signing
from web.antom.keys import load_private_key, load_public_key


@pytest.fixture
def gw(shared_gw: Gateway) -> Gateway:
    return shared_gw


def inquiry(payment_id: str = "nope") -> dict[str, str]:
    return {"paymentId": payment_id}


def test_signed_request_gets_signed_response_over_request_path(gw: Gateway) -> None:
    response = gw.post("inquiryPayment", inquiry())
    assert response.status_code == 200
    assert gw.verified(response, "inquiryPayment")
    assert response.headers["client-id"] == gw.sim.client_id
    # response-time is ISO-8601 with an explicit offset
    assert response.headers["response-time"].endswith("+00:00")
    assert code(response.json()) == ("ORDER_NOT_EXIST", "F")
    # the signature is over exactly these bytes: a changed byte no longer verifies
    antom = load_public_key(gw.sim.antom_public_key_pem)
    assert not signing.verify(
        antom,
        uri="/ams/api/v1/payments/inquiryPayment",
        client_id=response.headers["client-id"],
        time=response.headers["response-time"],
        body=response.content + b" ",
        header=response.headers["signature"],
    )


def test_response_header_names_are_lowercase_on_the_wire(shared_sim: SimHandle) -> None:
    # The Python SDK looks the three headers up case-sensitively.
    key = load_private_key(shared_sim.merchant_private_key_pem)
    body = json.dumps(inquiry()).encode()
    uri = "/ams/api/v1/payments/inquiryPayment"
    when = str(int(time.time() * 1000))
    value = signing.sign(key, uri=uri, client_id=shared_sim.client_id, time=when, body=body)
    parts = urlsplit(shared_sim.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request(
        "POST",
        uri,
        body=body,
        headers={
            "client-id": shared_sim.client_id,
            "request-time": when,
            "signature": signing.signature_header(value),
        },
    )
    names = [name for name, _ in conn.getresponse().getheaders()]
    conn.close()
    assert {"client-id", "response-time", "signature"} <= set(names)


def test_absolute_form_request_target_is_accepted_and_signed_over_the_path(
    shared_sim: SimHandle,
) -> None:
    """The Python SDK sends ``POST https://host/ams/... HTTP/1.1``."""
    key = load_private_key(shared_sim.merchant_private_key_pem)
    body = json.dumps(inquiry(), indent=3).encode()
    uri = "/ams/api/v1/payments/inquiryPayment"
    when = iso_now()
    value = signing.sign(key, uri=uri, client_id=shared_sim.client_id, time=when, body=body)
    parts = urlsplit(shared_sim.base_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request(
        "POST",
        f"https://open-sea-global.alipay.com{uri}",
        body=body,
        headers={
            "client-id": shared_sim.client_id,
            "request-time": when,
            "signature": signing.signature_header(value),
        },
    )
    response = conn.getresponse()
    headers = dict(response.getheaders())
    raw = response.read()
    conn.close()
    assert response.status == 200
    assert json.loads(raw)["result"]["resultCode"] == "ORDER_NOT_EXIST"
    assert signing.verify(
        load_public_key(shared_sim.antom_public_key_pem),
        uri=uri,
        client_id=headers["client-id"],
        time=headers["response-time"],
        body=raw,
        header=headers["signature"],
    )


def test_sandbox_path_alias_signs_over_sandbox_path(shared_sim: SimHandle) -> None:
    gateway = Gateway(shared_sim, prefix="/ams/sandbox/api/v1/payments/")
    body = gateway.call("inquiryRefund", {"refundRequestId": "none"})
    assert code(body) == ("REFUND_NOT_EXIST", "F")
    gateway.close()


def _assert_unsigned_invalid_signature(response: object) -> None:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert code(response.json()) == ("INVALID_SIGNATURE", "F")
    for name in ("signature", "response-time", "client-id"):
        assert name not in response.headers


def test_wrong_key_is_invalid_signature_unsigned(shared_sim: SimHandle) -> None:
    stranger = Gateway(shared_sim, private_pem=keys.STRANGER_PRIVATE_PEM)
    _assert_unsigned_invalid_signature(stranger.post("inquiryPayment", inquiry()))
    stranger.close()


def test_body_changed_after_signing_is_invalid_signature(gw: Gateway) -> None:
    signed_body = json.dumps({"paymentId": "a"}).encode()
    sent = json.dumps({"paymentId": "b"}).encode()
    _assert_unsigned_invalid_signature(gw.post("inquiryPayment", sent, sign_body=signed_body))


def test_reformatted_body_is_invalid_signature(gw: Gateway) -> None:
    """Whitespace matters: the signature covers the exact bytes, not the JSON value."""
    signed_body = json.dumps(inquiry(), indent=3).encode()
    sent = json.dumps(inquiry(), separators=(",", ":")).encode()
    _assert_unsigned_invalid_signature(gw.post("inquiryPayment", sent, sign_body=signed_body))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "algorithm=RSA256,keyVersion=1",
        "algorithm=RSA256,keyVersion=1,signature=not*base64",
        "algorithm=ECC224,keyVersion=1,signature=AAAA",
    ],
)
def test_missing_or_malformed_signature_header(gw: Gateway, header: str) -> None:
    _assert_unsigned_invalid_signature(
        gw.post("inquiryPayment", inquiry(), headers={"signature": header})
    )


def test_missing_request_time_is_invalid_signature(gw: Gateway) -> None:
    _assert_unsigned_invalid_signature(
        gw.post("inquiryPayment", inquiry(), headers={"request-time": ""})
    )


def test_signature_header_with_spaces_is_accepted(gw: Gateway) -> None:
    body = json.dumps(inquiry()).encode()
    when = str(int(time.time() * 1000))
    key = load_private_key(gw.sim.merchant_private_key_pem)
    uri = "/ams/api/v1/payments/inquiryPayment"
    value = signing.sign(key, uri=uri, client_id=gw.sim.client_id, time=when, body=body)
    response = gw.post(
        "inquiryPayment",
        body,
        request_time=when,
        headers={"signature": f"algorithm=RSA256, keyVersion=1, signature={value}"},
    )
    assert code(response.json()) == ("ORDER_NOT_EXIST", "F")


def test_unknown_client_id_is_invalid_client_and_signed(shared_sim: SimHandle) -> None:
    gateway = Gateway(shared_sim, client_id="SOMEONE_ELSE")
    response = gateway.post("inquiryPayment", inquiry())
    assert response.status_code == 200
    assert code(response.json()) == ("INVALID_CLIENT", "F")
    assert gateway.verified(response, "inquiryPayment")
    gateway.close()


# Stamped when the test runs, not when it is collected: the ids stay the same in every
# pytest-xdist worker, and a stamp never waits in a queue.
@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param(lambda: str(int(time.time() * 1000)), id="epoch-ms"),  # Java / Go SDKs
        pytest.param(lambda: iso_now("+00:00"), id="iso+00:00"),  # Python SDK
        pytest.param(lambda: iso_now("+0000"), id="iso+0000"),  # PHP SDK
        pytest.param(lambda: iso_now("Z"), id="isoZ"),
        pytest.param(lambda: "2026-11-25T20:12:12.345+08:00", id="iso-millis+08:00"),
    ],
)
def test_request_time_formats(gw: Gateway, stamp: Callable[[], str]) -> None:
    body = gw.call("inquiryPayment", inquiry(), request_time=stamp())
    assert code(body) == ("ORDER_NOT_EXIST", "F")


@pytest.mark.parametrize("request_time", ["yesterday", "2026-11-25T20:12:12", "12:00"])
def test_unparseable_request_time_is_param_illegal(gw: Gateway, request_time: str) -> None:
    assert code(gw.call("inquiryPayment", inquiry(), request_time=request_time)) == (
        "PARAM_ILLEGAL",
        "F",
    )


def test_clock_skew_check_is_optional_and_enforced_when_set(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    with running_simulator(tmp_path, max_clock_skew_s=300) as sim:
        gateway = Gateway(sim)
        stale = str(int((time.time() - 3600) * 1000))
        assert code(gateway.call("inquiryPayment", inquiry(), request_time=stale)) == (
            "PARAM_ILLEGAL",
            "F",
        )
        fresh = gateway.call("inquiryPayment", inquiry())
        assert code(fresh) == ("ORDER_NOT_EXIST", "F")
        gateway.close()


def test_unknown_endpoint_is_no_interface_def(gw: Gateway) -> None:
    assert code(gw.call("teleport", {})) == ("NO_INTERFACE_DEF", "F")


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
def test_body_that_is_not_a_json_object_is_param_illegal(gw: Gateway, raw: bytes) -> None:
    assert code(gw.call("inquiryPayment", raw)) == ("PARAM_ILLEGAL", "F")  # type: ignore[arg-type]
