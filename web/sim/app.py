"""The simulator's Litestar app: the signed Antom gateway plus a small admin surface."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import msgspec
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.response.base import ASGIResponse
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.engine import Connection

from web.antom import signing
from web.antom.keys import load_public_key
from web.antom.money import MoneyError, exponent, format_minor
from web.sim import admin, gateway
from web.sim.config import SANDBOX_PATH_PREFIX, SimConfig, is_sandbox_client
from web.sim.db import SimDB
from web.sim.faults import Dice, Fault, FaultRates, TokenBucket
from web.sim.gateway import Context, NewPayment, Reply, reply
from web.sim.worker import Signer, Worker, time_header

T = TypeVar("T")

TEMPLATES_DIR = Path(__file__).parent / "templates"
JSON_UTF8 = "application/json; charset=UTF-8"


@dataclass(slots=True)
class SimState:
    config: SimConfig
    db: SimDB
    signer: Signer
    worker: Worker
    merchant_key: rsa.RSAPublicKey
    bucket: TokenBucket
    dice: Dice
    rates: FaultRates

    def context(self, client_id: str | None = None, *, sandbox_path: bool = False) -> Context:
        return Context(
            config=self.config,
            client_id=client_id or self.config.client_id,
            now=time.time(),
            rates=self.rates,
            dice=self.dice,
            sandbox_path=sandbox_path,
        )

    async def change(
        self, fn: Callable[[Connection, Context], T], client_id: str | None = None
    ) -> T:
        """An admin change in one transaction, then a wake-up for the work it scheduled."""
        ctx = self.context(client_id)
        out = await self.db.run(lambda conn: fn(conn, ctx))
        self.worker.wake()
        return out


def provide_sim(state: State) -> SimState:
    sim: SimState = state.sim
    return sim


# --- request-time formats -------------------------------------------------------------


def parse_request_time(value: str) -> float | None:
    """Epoch milliseconds (Java/Go SDKs) or ISO-8601 with +00:00, +0000 or Z (Python/PHP)."""
    v = value.strip()
    if v.isdigit():
        return int(v) / 1000
    try:
        parsed = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


# --- absolute-form request targets ----------------------------------------------------


def origin_form(app: ASGIApp) -> ASGIApp:
    """Turn ``POST http://host/ams/... HTTP/1.1`` (the Python SDK's request line) into a path.

    uvicorn's h11 parser hands the absolute target through as the path unchanged.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            path: str = scope["path"]
            if path.startswith(("http://", "https://")):
                rest = path.split("://", 1)[1]
                scope["path"] = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
                raw: bytes = scope.get("raw_path") or b""
                raw_rest = raw.split(b"://", 1)[-1]
                scope["raw_path"] = b"/" + raw_rest.split(b"/", 1)[1] if b"/" in raw_rest else b"/"
        await app(scope, receive, send)

    return wrapped


# --- responses that never arrive ------------------------------------------------------


class _Dropped(ASGIResponse):
    def __init__(self, hang_s: float) -> None:
        super().__init__(body=b"")
        self.hang_s = hang_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with anyio.move_on_after(self.hang_s):
            while (await receive())["type"] != "http.disconnect":
                pass
            return  # the client gave up first: nothing to send
        # Still connected: start a response and never finish it, so the server drops the socket.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", JSON_UTF8.encode()), (b"content-length", b"4096")],
            }
        )


class DropConnection(Response[bytes]):
    def __init__(self, hang_s: float) -> None:
        super().__init__(content=b"")
        self.hang_s = hang_s

    def to_asgi_response(
        self, app: Litestar | None, request: Request[Any, Any, Any], **_: Any
    ) -> ASGIResponse:
        return _Dropped(self.hang_s)


# --- the gateway ----------------------------------------------------------------------


def request_uri(request: Request[Any, Any, Any]) -> str:
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    query: bytes = request.scope.get("query_string") or b""
    return raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


def unsigned(body: Reply) -> Response[bytes]:
    return Response(content=body.body, status_code=body.http_status, media_type=JSON_UTF8)


def signed(sim: SimState, uri: str, client_id: str, body: Reply) -> Response[bytes]:
    headers = sim.signer.headers(
        uri=uri,
        client_id=client_id,
        time_value=time_header(time.time()),
        body=body.body,
        kind="response-time",
    )
    return Response(content=body.body, status_code=200, media_type=JSON_UTF8, headers=headers)


GATEWAY_PATHS = [
    "/ams/api/v1/payments/{endpoint:str}",
    "/ams/sandbox/api/v1/payments/{endpoint:str}",
]


@post(GATEWAY_PATHS, status_code=200, media_type=MediaType.JSON, include_in_schema=False)
async def gateway_call(
    request: Request[Any, Any, Any], endpoint: FromPath[str], sim: NamedDependency[SimState]
) -> Response[bytes]:
    raw = await request.body()
    uri = request_uri(request)
    client_id = request.headers.get("client-id", "").strip()
    request_time = request.headers.get("request-time", "").strip()
    signature = request.headers.get("signature", "")

    if client_id not in sim.config.client_ids:
        return signed(
            sim, uri, sim.config.client_id, reply("INVALID_CLIENT", "F", "the client is invalid")
        )
    if not request_time or not signing.verify(
        sim.merchant_key,
        uri=uri,
        client_id=client_id,
        time=request_time,
        body=raw,
        header=signature,
    ):
        # Antom cannot sign this answer: the caller has not proved who it is.
        return unsigned(reply("INVALID_SIGNATURE", "F", "the signature is invalid"))
    if not sim.bucket.take():
        return signed(
            sim,
            uri,
            client_id,
            reply("REQUEST_TRAFFIC_EXCEED_LIMIT", "U", "request traffic exceeds the limit"),
        )
    sent_at = parse_request_time(request_time)
    if sent_at is None:
        return signed(
            sim, uri, client_id, reply("PARAM_ILLEGAL", "F", "request-time is not a valid time")
        )
    skew = sim.config.max_clock_skew_s
    if skew is not None and abs(time.time() - sent_at) > skew:
        return signed(
            sim, uri, client_id, reply("PARAM_ILLEGAL", "F", "request-time is out of range")
        )
    if endpoint not in gateway.ENDPOINTS:
        return signed(sim, uri, client_id, reply("NO_INTERFACE_DEF", "F", "interface not defined"))
    if sim.dice.roll(sim.rates.http_5xx):
        return Response(
            content=b"Internal Server Error", status_code=500, media_type=MediaType.TEXT
        )
    if sim.dice.roll(sim.rates.unknown_exception):
        return signed(sim, uri, client_id, gateway.fault_reply(Fault.UNKNOWN_EXCEPTION))

    # The path as routed (origin_form has already cut an absolute target down to it).
    in_sandbox = request.scope["path"].startswith(SANDBOX_PATH_PREFIX)
    ctx = sim.context(client_id, sandbox_path=in_sandbox)
    answer = await sim.db.run(lambda conn: gateway.handle(conn, ctx, endpoint, raw))
    if answer.wake:
        sim.worker.wake()
    if answer.hang:
        return DropConnection(sim.config.hang_s)
    if answer.http_status != 200:
        return Response(
            content=answer.body, status_code=answer.http_status, media_type=MediaType.TEXT
        )
    return signed(sim, uri, client_id, answer)


# --- admin API ------------------------------------------------------------------------


class CreatePayment(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    amount_minor: int
    method: str = "ALIPAY_CN"
    currency: str = "USD"
    captured: bool = True
    paid_at: datetime | None = None
    payment_request_id: str | None = None
    buyer_email: str | None = None
    buyer_name: str | None = None
    reference_order_id: str | None = None
    notify_url: str | None = None
    client_id: str | None = None  # one of the configured client ids; default the main one


class CaptureBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    amount_minor: int | None = None


class CloseChargeback(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    result: str = "ACCEPT_BY_MERCHANT"


class SettleBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    outcome: str = "SUCCESS"


class FaultsBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    unknown_exception: float | None = None
    http_5xx: float | None = msgspec.field(default=None, name="http5xx")
    hang_after_commit: float | None = None
    async_fail: float | None = None
    reversal: float | None = None
    rate_limit_per_s: float | None = msgspec.field(default=None, name="rateLimitPerSecond")
    rate_limit_burst: int | None = None
    rate_limit_off: bool = False


class BalanceBody(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    currency: str
    balance_minor: int | None


def faults_json(rates: FaultRates) -> dict[str, Any]:
    return {
        "unknownException": rates.unknown_exception,
        "http5xx": rates.http_5xx,
        "hangAfterCommit": rates.hang_after_commit,
        "asyncFail": rates.async_fail,
        "reversal": rates.reversal,
        "rateLimitPerSecond": rates.rate_limit_per_s,
        "rateLimitBurst": rates.rate_limit_burst,
    }


def _utc(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def config_json(c: SimConfig) -> dict[str, Any]:
    """What the page and API show of the configuration: never key material."""
    return {
        "clientId": c.client_id,
        "notifyUrl": c.notify_url,
        "timeScale": c.time_scale,
        "refundDelayS": c.refund_delay_s,
        "reversalDelayS": c.reversal_delay_s,
        "hangS": c.hang_s,
        "magicAmounts": c.magic_amounts,
        "retryScheduleS": list(c.retry_schedule_s),
        # A SANDBOX_ main client id: its notifications get one attempt, no retries.
        "sandbox": is_sandbox_client(c.client_id),
    }


@get("/sim/api/config", sync_to_thread=False)
def get_config(sim: NamedDependency[SimState]) -> dict[str, Any]:
    return config_json(sim.config)


@get("/sim/api/payments")
async def list_payments(sim: NamedDependency[SimState]) -> list[dict[str, Any]]:
    return await sim.db.run(admin.list_payments)


@post("/sim/api/payments", status_code=201)
async def create_payment(
    data: JSONBody[CreatePayment], sim: NamedDependency[SimState]
) -> dict[str, Any]:
    try:
        exponent(data.currency)
    except MoneyError as exc:
        raise admin.AdminError(str(exc)) from None
    if data.client_id is not None and data.client_id not in sim.config.client_ids:
        raise admin.AdminError(f"clientId {data.client_id} is not one the simulator serves")
    new = NewPayment(
        method=data.method,
        currency=data.currency,
        amount_minor=data.amount_minor,
        captured=data.captured,
        paid_at=_utc(data.paid_at),
        payment_request_id=data.payment_request_id,
        buyer_email=data.buyer_email,
        buyer_name=data.buyer_name,
        reference_order_id=data.reference_order_id,
        notify_url=data.notify_url,
    )
    return await sim.change(
        lambda conn, ctx: admin.create_payment(conn, ctx, new), client_id=data.client_id
    )


@get("/sim/api/payments/{payment_id:str}")
async def get_payment(payment_id: FromPath[str], sim: NamedDependency[SimState]) -> dict[str, Any]:
    return await sim.db.run(lambda conn: admin.payment_detail(conn, payment_id))


@post("/sim/api/payments/{payment_id:str}/capture", status_code=200)
async def capture_payment(
    payment_id: FromPath[str],
    sim: NamedDependency[SimState],
    data: JSONBody[CaptureBody | None] = None,
) -> dict[str, Any]:
    minor = data.amount_minor if data else None
    return await sim.change(lambda conn, ctx: admin.capture(conn, ctx, payment_id, minor))


@post("/sim/api/payments/{payment_id:str}/chargeback", status_code=200)
async def open_chargeback(
    payment_id: FromPath[str], sim: NamedDependency[SimState]
) -> dict[str, Any]:
    return await sim.change(lambda conn, ctx: admin.open_chargeback(conn, ctx, payment_id))


@post("/sim/api/payments/{payment_id:str}/chargeback/close", status_code=200)
async def close_chargeback(
    payment_id: FromPath[str],
    sim: NamedDependency[SimState],
    data: JSONBody[CloseChargeback | None] = None,
) -> dict[str, Any]:
    judged = data.result if data else "ACCEPT_BY_MERCHANT"
    return await sim.change(lambda conn, ctx: admin.close_chargeback(conn, ctx, payment_id, judged))


@get("/sim/api/refunds")
async def list_refunds(
    sim: NamedDependency[SimState],
    payment_id: Annotated[str | None, QueryParameter(name="paymentId")] = None,
) -> list[dict[str, Any]]:
    return await sim.db.run(lambda conn: admin.list_refunds(conn, payment_id))


@get("/sim/api/refunds/{refund_id:str}")
async def get_refund(refund_id: FromPath[str], sim: NamedDependency[SimState]) -> dict[str, Any]:
    return await sim.db.run(lambda conn: admin.get_refund(conn, refund_id))


@post("/sim/api/refunds/{refund_id:str}/settle", status_code=200)
async def settle_refund(
    refund_id: FromPath[str],
    sim: NamedDependency[SimState],
    data: JSONBody[SettleBody | None] = None,
) -> dict[str, Any]:
    outcome = data.outcome if data else "SUCCESS"
    return await sim.change(
        lambda conn, ctx: admin.settle(conn, ctx.config, refund_id, outcome, ctx.now)
    )


@post("/sim/api/refunds/{refund_id:str}/reverse", status_code=200)
async def reverse_refund(
    refund_id: FromPath[str], sim: NamedDependency[SimState]
) -> dict[str, Any]:
    now = time.time()
    return await sim.db.run(lambda conn: admin.reverse(conn, refund_id, now))


@get("/sim/api/notifications")
async def list_notifications(sim: NamedDependency[SimState]) -> list[dict[str, Any]]:
    return await sim.db.run(admin.list_notifications)


@get("/sim/api/faults", sync_to_thread=False)
def get_faults(sim: NamedDependency[SimState]) -> dict[str, Any]:
    return faults_json(sim.rates)


@post("/sim/api/faults", status_code=200)
async def set_faults(data: JSONBody[FaultsBody], sim: NamedDependency[SimState]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in ("unknown_exception", "http_5xx", "hang_after_commit", "async_fail", "reversal"):
        value = getattr(data, name)
        if value is not None:
            if not 0 <= value <= 1:
                raise admin.AdminError(f"{name} must be between 0 and 1")
            changes[name] = value
    if data.rate_limit_off:
        changes["rate_limit_per_s"] = None
    elif data.rate_limit_per_s is not None:
        if data.rate_limit_per_s <= 0:
            raise admin.AdminError("rateLimitPerSecond must be positive")
        changes["rate_limit_per_s"] = data.rate_limit_per_s
    if data.rate_limit_burst is not None:
        if data.rate_limit_burst < 1:
            raise admin.AdminError("rateLimitBurst must be at least 1")
        changes["rate_limit_burst"] = data.rate_limit_burst
    rates = replace(sim.rates, **changes)
    await sim.db.run(lambda conn: admin.save_fault_rates(conn, rates))
    sim.rates = rates
    sim.bucket.configure(rates.rate_limit_per_s, rates.rate_limit_burst)
    return faults_json(rates)


@get("/sim/api/balances")
async def get_balances(sim: NamedDependency[SimState]) -> list[dict[str, Any]]:
    return await sim.db.run(admin.list_balances)


@post("/sim/api/balances", status_code=200)
async def set_balance(
    data: JSONBody[BalanceBody], sim: NamedDependency[SimState]
) -> list[dict[str, Any]]:
    try:
        exponent(data.currency)
    except MoneyError as exc:
        raise admin.AdminError(str(exc)) from None
    return await sim.db.run(lambda conn: admin.set_balance(conn, data.currency, data.balance_minor))


@get("/sim/settlement.csv", media_type="text/csv; charset=utf-8")
async def settlement(
    sim: NamedDependency[SimState], day: FromQuery[str | None] = None
) -> Response[str]:
    """The settlement details report: every batch, or one day's (``?day=YYYYMMDD``), under
    the file name Antom gives it."""
    if day is not None and not (len(day) == 8 and day.isdigit()):
        raise admin.AdminError("day must be YYYYMMDD")
    body = await sim.db.run(lambda conn: admin.settlement_csv(conn, day=day))
    when = day or datetime.now(UTC).strftime("%Y%m%d")
    batch = admin.batch_of_day(when) if day else "ALL"
    name = admin.settlement_filename(sim.config.client_id, when, batch)
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@get("/sim")
async def admin_page(sim: NamedDependency[SimState]) -> Template:
    def gather(conn: Any) -> dict[str, Any]:
        return {
            "payments": admin.list_payments(conn, limit=100),
            "refunds": admin.list_refunds(conn, limit=100),
            "notifications": admin.list_notifications(conn, limit=50),
            "balances": admin.list_balances(conn),
        }

    data = await sim.db.run(gather)
    return Template(
        template_name="sim.html",
        context={**data, "config": config_json(sim.config), "faults": faults_json(sim.rates)},
    )


def _jinja_filters(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters["money"] = format_minor


def admin_error(_: Request[Any, Any, Any], exc: admin.AdminError) -> Response[dict[str, str]]:
    return Response(content={"error": str(exc)}, status_code=exc.status)


# --- the app --------------------------------------------------------------------------


def create_sim_app(config: SimConfig) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database = SimDB(config.db_path)
        signer = Signer(config)
        worker = Worker(database, config, signer)
        rates = await database.run(lambda conn: admin.load_fault_rates(conn, config))
        app.state.sim = SimState(
            config=config,
            db=database,
            signer=signer,
            worker=worker,
            merchant_key=load_public_key(config.merchant_public_key_pem, "merchant public key"),
            bucket=TokenBucket(rates.rate_limit_per_s, rates.rate_limit_burst),
            dice=Dice(config.seed),
            rates=rates,
        )
        task = asyncio.create_task(worker.run(), name="sim-worker")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            database.close()

    app = Litestar(
        route_handlers=[
            gateway_call,
            get_config,
            list_payments,
            create_payment,
            get_payment,
            capture_payment,
            open_chargeback,
            close_chargeback,
            list_refunds,
            get_refund,
            settle_refund,
            reverse_refund,
            list_notifications,
            get_faults,
            set_faults,
            get_balances,
            set_balance,
            settlement,
            admin_page,
        ],
        dependencies={"sim": Provide(provide_sim, sync_to_thread=False)},
        exception_handlers={admin.AdminError: admin_error},
        lifespan=[lifespan],
        template_config=TemplateConfig(
            directory=TEMPLATES_DIR, engine=JinjaTemplateEngine, engine_callback=_jinja_filters
        ),
        openapi_config=None,
    )
    app.asgi_handler = origin_form(app.asgi_handler)
    return app


__all__ = ["SimConfig", "create_sim_app"]
