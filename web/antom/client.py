"""Async Antom client for refund, inquiryRefund and inquiryPayment.

The body is serialised once and those exact bytes are signed and sent. A response is
trusted only when its signature verifies against one of Antom's public keys, or when
it is unsigned and says ``F``/``U`` (the SDK 1.7.1 rule: Antom cannot sign some error
replies, e.g. INVALID_SIGNATURE). An unsigned or badly signed ``S`` is never trusted.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from web.antom import signing
from web.antom.messages import (
    GATEWAY_REFUSALS,
    Exchange,
    InquiryPaymentResult,
    InquiryRefundResult,
    RefundCallResult,
    RefundRequest,
    Reply,
    inquiry_payment_result,
    inquiry_refund_result,
    refund_call_result,
)

log = logging.getLogger(__name__)

# Protocol notes §1: the recommended ("-global", accelerated) domain per region.
GATEWAYS: dict[str, str] = {
    "na": "https://open-na-global.alipay.com",
    "sea": "https://open-sea-global.alipay.com",
    "eu": "https://open-de-global.alipay.com",
    "us": "https://open.antglobal-us.com",
}

REFUND_PATH = "/ams/api/v1/payments/refund"
INQUIRY_REFUND_PATH = "/ams/api/v1/payments/inquiryRefund"
INQUIRY_PAYMENT_PATH = "/ams/api/v1/payments/inquiryPayment"

SANDBOX_PREFIX = "SANDBOX_"
CONTENT_TYPE = "application/json; charset=UTF-8"
REDACTED = "[redacted]"
DEFAULT_CONNECT_TIMEOUT = 5.0
# An HTML error page from a proxy can be large; the timeline needs only its start.
MAX_RECORDED_BODY = 65_536

_SIGNATURE_VALUE = re.compile(r"(?:^|,)\s*signature\s*=\s*([^,]*)", re.IGNORECASE)
_SIGNATURE_PART = re.compile(r"((?:^|,)\s*signature\s*=\s*)[^,]*", re.IGNORECASE)


def api_path(path: str, client_id: str) -> str:
    """Sandbox client ids use ``/ams/sandbox/api`` (the official SDKs' rule)."""
    if client_id.startswith(SANDBOX_PREFIX):
        return path.replace("/ams/api", "/ams/sandbox/api", 1)
    return path


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the one serialisation that is both signed and sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header copy fit for storage: the signature value is replaced, the rest kept."""
    return {
        name: _redact_signature(value) if name.lower() == "signature" else value
        for name, value in headers.items()
    }


def _redact_signature(value: str) -> str:
    redacted, count = _SIGNATURE_PART.subn(rf"\g<1>{REDACTED}", value)
    return redacted if count else REDACTED


def _signature_value(header: str | None) -> str:
    if not header:
        return ""
    match = _SIGNATURE_VALUE.search(header)
    return match.group(1).strip() if match else ""


def judge_signature(
    public_keys: list[RSAPublicKey],
    *,
    uri: str,
    fallback_client_id: str,
    headers: Mapping[str, str],
    body: bytes,
    result_status: str | None,
    result_code: str | None,
) -> tuple[bool, bool, str | None]:
    """(trusted, verified, reason) for a 200 response. ``headers`` must be case-insensitive.

    Signed (a signature value or response-time present): trusted only if it verifies.
    Unsigned, as in global-open-sdk-python 1.7.1: only when the signature headers are
    present but empty (headers missing altogether make the SDK raise), and then only for
    a gateway-level refusal (an F that says the request never ran) or a ``U``, neither of
    which can move money. An unsigned ``S`` or business-level ``F`` is never trusted.
    """
    header = headers.get("signature")
    response_time = headers.get("response-time")
    value = _signature_value(header)
    if value or response_time:
        if not (value and response_time):
            return False, False, "response signature headers are incomplete"
        client_id = headers.get("client-id") or fallback_client_id
        ok = signing.verify_any(
            public_keys,
            uri=uri,
            client_id=client_id,
            time=response_time,
            body=body,
            header=header or "",
        )
        if ok:
            return True, True, None
        return False, False, "response signature did not verify"
    if header is None and response_time is None:
        return False, False, "unsigned response: it carries no signature headers"
    if result_status == "U" or (result_status == "F" and result_code in GATEWAY_REFUSALS):
        return True, False, None
    return (
        False,
        False,
        (
            f"unsigned response with resultStatus={result_status} "
            f"resultCode={result_code} is not trusted"
        ),
    )


class AntomClient:
    def __init__(
        self,
        *,
        gateway_url: str,
        client_id: str,
        merchant_private_key: RSAPrivateKey,
        antom_public_keys: list[RSAPublicKey],
        timeout: float = 15.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        recorder: Callable[[Exchange], None] | None = None,
        http: httpx.AsyncClient | None = None,
        key_version: str = signing.DEFAULT_KEY_VERSION,
    ) -> None:
        if not antom_public_keys:
            raise ValueError("at least one Antom public key is needed to verify responses")
        self.gateway_url = gateway_url.rstrip("/")
        self.client_id = client_id
        self._private_key = merchant_private_key
        self._public_keys = list(antom_public_keys)
        self._timeout = httpx.Timeout(timeout, connect=min(connect_timeout, timeout))
        self._recorder = recorder
        # Antom resolves it against the keys registered for the client id (protocol notes §16).
        self.key_version = key_version
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient()

    @property
    def sandbox(self) -> bool:
        return self.client_id.startswith(SANDBOX_PREFIX)

    async def refund(self, req: RefundRequest) -> RefundCallResult:
        return refund_call_result(*await self._call(REFUND_PATH, req.to_wire()))

    async def inquiry_refund(
        self, *, refund_request_id: str | None = None, refund_id: str | None = None
    ) -> InquiryRefundResult:
        body = _ids(refundRequestId=refund_request_id, refundId=refund_id)
        return inquiry_refund_result(*await self._call(INQUIRY_REFUND_PATH, body))

    async def inquiry_payment(
        self, *, payment_id: str | None = None, payment_request_id: str | None = None
    ) -> InquiryPaymentResult:
        body = _ids(paymentId=payment_id, paymentRequestId=payment_request_id)
        return inquiry_payment_result(*await self._call(INQUIRY_PAYMENT_PATH, body))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _call(self, path: str, payload: Mapping[str, Any]) -> tuple[Reply, Exchange]:
        path = api_path(path, self.client_id)
        url = httpx.URL(self.gateway_url + path)
        # The URI signed is the path actually requested (a gateway prefix included).
        uri = url.raw_path.decode("ascii")
        body = encode_body(payload)
        request_time = str(time.time_ns() // 1_000_000)
        signature = signing.sign(
            self._private_key, uri=uri, client_id=self.client_id, time=request_time, body=body
        )
        headers = {
            "Content-Type": CONTENT_TYPE,
            "client-id": self.client_id,
            "request-time": request_time,
            "signature": signing.signature_header(signature, self.key_version),
        }
        started = time.perf_counter()
        response: httpx.Response | None = None
        error: str | None = None
        try:
            response = await self._http.post(
                url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            error = f"{type(exc).__name__}: no answer within the timeout"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = round((time.perf_counter() - started) * 1000)

        if response is None:
            reply = Reply(transport_error=True, http_status=None, error=error)
        else:
            reply = self._read(response, uri=uri)
        exchange = Exchange(
            method="POST",
            url=str(url),
            request_headers=redact_headers(headers),
            request_body=body.decode("utf-8"),
            status=reply.http_status,
            response_headers=redact_headers(response.headers) if response is not None else {},
            response_body=(
                response.content[:MAX_RECORDED_BODY].decode("utf-8", errors="replace")
                if response is not None
                else None
            ),
            latency_ms=latency_ms,
            error=reply.error,
        )
        log.info(
            "antom %s status=%s code=%s trusted=%s latency_ms=%d error=%s",
            path,
            reply.http_status,
            reply.result_code,
            reply.trusted,
            latency_ms,
            reply.error,
        )
        if self._recorder is not None:
            try:
                self._recorder(exchange)
            except Exception:
                # The call already happened at Antom; losing its result over a storage
                # hiccup would be worse. The exchange is also on the returned result.
                log.exception("antom exchange recorder failed for %s", path)
        return reply, exchange

    def _read(self, response: httpx.Response, *, uri: str) -> Reply:
        status_code = response.status_code
        try:
            parsed: object = json.loads(response.content)
        except ValueError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        if status_code != 200:
            return Reply(False, status_code, body, error=f"HTTP {status_code} from Antom")
        if not isinstance(parsed, dict):
            return Reply(False, status_code, error="response is not a JSON object")
        result = body.get("result")
        result = result if isinstance(result, dict) else {}
        status = _str_or_none(result.get("resultStatus"))
        trusted, verified, reason = judge_signature(
            self._public_keys,
            uri=uri,
            fallback_client_id=self.client_id,
            headers=response.headers,
            body=response.content,
            result_status=status,
            result_code=_str_or_none(result.get("resultCode")),
        )
        if not trusted:
            return Reply(False, status_code, body, error=reason)
        return Reply(
            False,
            status_code,
            body,
            trusted=True,
            verified=verified,
            result_status=status,
            result_code=_str_or_none(result.get("resultCode")),
            result_message=_str_or_none(result.get("resultMessage")),
            error=None if status else "response has no result.resultStatus",
        )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _ids(**ids: str | None) -> dict[str, str]:
    present = {name: value for name, value in ids.items() if value}
    if not present:
        raise ValueError(f"give at least one of {', '.join(ids)}")
    return present
