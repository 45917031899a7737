"""``refund-desk demo``: the desk on SQLite, wired to a local Antom simulator, with data.

Both sides agree on every payment because the demo creates them through the
simulator's own admin API and the desk imports them over the signed Antom protocol
(``inquiryPayment``), exactly as an agent's "Find a payment in Antom" does. Antom does
not say who paid, so buyers and order references come from the merchant's order feed
(web/services/orders.py, the service behind ``POST /api/orders``), with an API key made
for a "Demo shop": half of the orders are sent before their payments exist (they wait
and are joined when the payment arrives), half after.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from web.antom.keys import generate_private_key, private_key_pem, public_key_pem
from web.antom.money import format_plain
from web.app import create_app
from web.db import make_engine, migrate, session_scope
from web.integration import build_antom_client
from web.models import Payment, Role, User
from web.services import api_keys as key_svc
from web.services import limits
from web.services import orders as order_svc
from web.services import refunds as refund_svc
from web.services import users as user_svc
from web.services.audit import Actor
from web.services.imports import import_payment
from web.settings import Settings
from web.sim.app import create_sim_app
from web.sim.config import SimConfig

DEMO_CLIENT_ID = "DEMO_MERCHANT_0001"
# Who the audit trail names for what the demo's seeding does.
DEMO_ACTOR = Actor(label="demo")
DEMO_PASSWORD = "refund-desk-demo"  # noqa: S105 - printed on the console for the demo logins
DEMO_USERS: tuple[tuple[str, str, str], ...] = (
    ("agent@demo.test", "Ada Agent", "agent"),
    ("lead@demo.test", "Lee Lead", "lead"),
    ("admin@demo.test", "Ari Admin", "admin"),
)
# The demo agent's own limits per refund (and three times that per 24 hours); above them
# her refunds wait for a lead's approval. Leads and admins have none. The JPY payment is
# above the agent's limit on purpose.
AGENT_LIMITS: dict[str, int] = {
    "USD": 50_000,
    "EUR": 50_000,
    "GBP": 40_000,
    "SGD": 70_000,
    "HKD": 400_000,
    "CNY": 350_000,
    "JPY": 100_000,
    "KRW": 700_000,
    "IDR": 800_000_000,
    "PHP": 3_000_000,
    "THB": 2_000_000,
}


@dataclass(frozen=True)
class DemoPayment:
    method: str
    currency: str
    amount_minor: int
    days_ago: float
    buyer: str
    order: str
    captured: bool = True
    chargeback: bool = False

    @property
    def email(self) -> str:
        return self.buyer.lower().replace(" ", ".").replace("-", "") + "@example.com"

    @property
    def payment_request_id(self) -> str:
        """The merchant's id for the payment, known to its order system beforehand."""
        return "PR-" + self.order.removeprefix("ORD-")

    def order_record(self) -> dict[str, str]:
        """What the merchant's order system sends to ``POST /api/orders``."""
        n = self.order.removeprefix("ORD-")
        return {
            "paymentRequestId": self.payment_request_id,
            "referenceOrderId": self.order,
            "buyerName": self.buyer,
            "buyerEmail": self.email,
            "buyerPhone": f"+65 6{n[-3:]} {n}",
            "customerId": f"CUST-{int(n) % 997:04d}",
            "orderTotal": format_plain(self.amount_minor, self.currency),
            "currency": self.currency,
            "itemsSummary": f"Order {self.order} ({self.method.replace('_', ' ').title()})",
        }


# Chosen to show every rule: several currencies (incl. zero-decimal JPY/KRW and IDR),
# sync and async methods, windows that have closed, a chargeback, an uncaptured card.
DEMO_PAYMENTS: tuple[DemoPayment, ...] = (
    DemoPayment("ALIPAY_CN", "USD", 12_900, 0.2, "Mei Chen", "ORD-10231"),
    DemoPayment("CARD", "USD", 48_550, 1.5, "Sam Porter", "ORD-10232"),
    DemoPayment("ALIPAY_CN", "JPY", 120_000, 3, "Haruto Sato", "ORD-10233"),
    DemoPayment("KAKAOPAY", "KRW", 89_000, 4, "Ji-woo Park", "ORD-10234"),
    DemoPayment("DANA", "IDR", 15_000_000, 6, "Putri Lestari", "ORD-10235"),
    DemoPayment("GCASH", "PHP", 259_900, 8, "Jose Reyes", "ORD-10236"),
    DemoPayment("ALIPAY_HK", "HKD", 78_800, 12, "Ka Ho Wong", "ORD-10237"),
    DemoPayment("TRUEMONEY", "THB", 129_000, 20, "Somchai Boon", "ORD-10238"),
    DemoPayment("CARD", "EUR", 21_999, 2, "Lena Vogel", "ORD-10239"),
    DemoPayment("CARD", "GBP", 9_950, 0.5, "Oliver Hart", "ORD-10240", captured=False),
    DemoPayment("CARD", "USD", 31_000, 10, "Riley Brooks", "ORD-10241", chargeback=True),
    DemoPayment("DANA", "IDR", 5_500_000, 120, "Budi Santoso", "ORD-10242"),
    DemoPayment("TRUEMONEY", "THB", 45_000, 95, "Niran Chai", "ORD-10243"),
    DemoPayment("GCASH", "PHP", 99_900, 200, "Ana Cruz", "ORD-10244"),
    DemoPayment("ALIPAY_CN", "CNY", 66_600, 30, "Li Wei", "ORD-10245"),
    DemoPayment("CARD", "SGD", 15_800, 5, "Priya Nair", "ORD-10246"),
)


def _serve_in_thread(
    app: Any, host: str, port: int, log_level: str = "warning"
) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the server on port {port} did not start")
        time.sleep(0.05)
    return server, thread


async def _send_orders(
    engine: AsyncEngine, key: key_svc.NewKey, specs: Sequence[DemoPayment]
) -> None:
    """The order feed's service, as ``POST /api/orders`` with the Demo shop's key calls it."""
    async with session_scope(engine) as session:
        results = await order_svc.ingest(
            session,
            [spec.order_record() for spec in specs],
            api_key_pk=key.key.id,
            actor=DEMO_ACTOR,
        )
    rejected = [r.as_json() for r in results if not r.accepted]
    if rejected:
        raise click.ClickException(f"demo orders refused: {rejected}")


async def _seed(settings: Settings, sim_url: str) -> tuple[list[str], str]:
    """Create payments at the simulator, import them into the desk, add users, orders and
    refunds; the payment ids and the Demo shop's API key."""
    now = datetime.now(UTC)
    engine = make_engine(settings.database_url)
    antom = build_antom_client(settings)
    assert antom is not None
    created: list[str] = []
    try:
        async with session_scope(engine) as session:
            feed_key = await key_svc.create_key(session, name="Demo shop", actor=DEMO_ACTOR)
        # Orders the shop sends before Antom's payments reach the desk wait for them.
        await _send_orders(engine, feed_key, DEMO_PAYMENTS[::2])
        async with httpx.AsyncClient(base_url=sim_url, timeout=10) as sim:
            for spec in DEMO_PAYMENTS:
                body = {
                    "method": spec.method,
                    "currency": spec.currency,
                    "amountMinor": spec.amount_minor,
                    "captured": spec.captured,
                    "paidAt": (now - timedelta(days=spec.days_ago)).isoformat(),
                    "paymentRequestId": spec.payment_request_id,
                    "referenceOrderId": spec.order,
                }
                response = await sim.post("/sim/api/payments", json=body)
                response.raise_for_status()
                created.append(response.json()["paymentId"])

        async with session_scope(engine) as session:
            users: dict[str, User] = {}
            for email, name, role in DEMO_USERS:
                users[role] = await user_svc.create_user(
                    session, email=email, name=name, role=Role(role), password=DEMO_PASSWORD
                )
            for currency, max_minor in AGENT_LIMITS.items():
                await limits.set_limit(
                    session,
                    user=users["agent"],
                    currency=currency,
                    max_single_minor=max_minor,
                    max_day_minor=max_minor * 3,
                )
            payments: list[Payment] = [
                await import_payment(session, antom, payment_id) for payment_id in created
            ]
        # The other orders arrive after their payments and are copied onto them at once.
        await _send_orders(engine, feed_key, DEMO_PAYMENTS[1::2])

        # A little history, made through the same path an agent's click takes.
        agent = users["agent"]
        for payment, amount_text in (
            (payments[0], "20.00"),  # ALIPAY_CN: synchronous, succeeds at once
            (payments[2], "20000"),  # JPY
            (payments[1], "85.50"),  # CARD: asynchronous, settles ~20 s later
        ):
            async with session_scope(engine) as session:
                draft, _ = await refund_svc.new_form(session, payment, agent, now)
            draft = refund_svc.RefundDraft(
                amount_text=amount_text,
                currency=draft.currency,
                reason="customer_request",
                note="",
                form_token=draft.form_token,
                refundable_token=draft.refundable_token,
            )
            outcome = await refund_svc.submit_refund(
                engine,
                antom,
                payment_pk=payment.id or 0,
                user=agent,
                draft=draft,
                notify_url=settings.refund_notify_url,
                now=now,
            )
            if outcome.refund is None:
                raise click.ClickException(f"demo refund refused: {outcome.check.errors}")
    finally:
        await antom.aclose()
        await engine.dispose()
    return created, feed_key.secret


@click.command("demo")
@click.option("--port", default=8000, show_default=True, type=int, help="The desk's port.")
@click.option("--sim-port", type=int, default=None, help="The simulator's port [port + 1].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/demo"),
    show_default=True,
    help="Wiped and recreated on every run.",
)
def demo(port: int, sim_port: int | None, host: str, data_dir: Path) -> None:
    """Run the desk with the Antom simulator and seeded data, on SQLite."""

    sim_port = sim_port or port + 1
    data_dir = data_dir.resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    antom_key, merchant_key = generate_private_key(), generate_private_key()

    desk_url, sim_url = f"http://{host}:{port}", f"http://{host}:{sim_port}"
    sim_config = SimConfig(
        client_id=DEMO_CLIENT_ID,
        antom_private_key_pem=private_key_pem(antom_key),
        merchant_public_key_pem=public_key_pem(merchant_key.public_key()),
        db_path=data_dir / "sim.sqlite3",
        notify_url=f"{desk_url}/webhooks/antom",
        # Async refunds settle after about 20 s, so "processing" can be watched turning over.
        refund_delay_s=20,
    )
    settings = Settings.from_env(
        {
            "APP_ENV": "development",
            "REFUND_DESK_DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'desk.sqlite3'}",
            "PORT": str(port),
            "ANTOM_GATEWAY_URL": sim_url,
            "ANTOM_CLIENT_ID": DEMO_CLIENT_ID,
            "ANTOM_MERCHANT_PRIVATE_KEY": private_key_pem(merchant_key),
            "ANTOM_PUBLIC_KEY": public_key_pem(antom_key.public_key()),
            "PUBLIC_BASE_URL": desk_url,
        }
    ).validate()

    # One line per Antom call is the client's own log; httpx's duplicate adds nothing.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    click.echo("Migrating the demo database…")
    migrate(settings.database_url)
    click.echo(f"Starting the Antom simulator on {sim_url} …")
    sim, _ = _serve_in_thread(create_sim_app(sim_config), host, sim_port)
    click.echo("Seeding payments through the simulator and importing them into the desk…")
    created, feed_key = asyncio.run(_seed(settings, sim_url))

    click.echo(f"Starting the desk on {desk_url} …")
    desk, desk_thread = _serve_in_thread(create_app(settings), host, port, log_level="info")
    # Opened only now, so the dispute notification reaches a running desk at once, as
    # Antom's would: the desk learns of chargebacks from notifications, not inquiries.
    for payment_id, spec in zip(created, DEMO_PAYMENTS, strict=True):
        if spec.chargeback:
            httpx.post(f"{sim_url}/sim/api/payments/{payment_id}/chargeback").raise_for_status()

    click.echo("")
    click.echo(f"  Refund Desk   {desk_url}")
    click.echo(f"  Simulator     {sim_url}/sim   ({len(created)} payments)")
    click.echo("  Sign in as (password for all: " + DEMO_PASSWORD + ")")
    for email, _, role in DEMO_USERS:
        click.echo(f"    {role:6} {email}")
    # Shown once, like the admin page shows a new key; only its hash is stored.
    click.echo(f"  Order feed    POST {desk_url}/api/orders  (key of the “Demo shop”:)")
    click.echo(f"    Authorization: Bearer {feed_key}")
    click.echo("  Ctrl-C stops both.")
    click.echo("")
    try:
        while desk_thread.is_alive():
            desk_thread.join(0.5)
    except KeyboardInterrupt:
        click.echo("Stopping…")
    finally:
        desk.should_exit = sim.should_exit = True
        desk_thread.join(10)
