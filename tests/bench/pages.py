"""Signed-in pages vs a bare handler: the payment page, live validation and /healthz.

Plain script, not collected by pytest:

    uv run python tests/bench/pages.py                   # 3 runs x 5 s a path, PostgreSQL
    uv run python tests/bench/pages.py --workers 2       # WEB_CONCURRENCY=2
    uv run python tests/bench/pages.py --sqlite --runs 5 -d 10

The real server process (uvicorn, ``tests/bench/bench_app.py``) serves a payment with a
few refunds to a signed-in lead; wrk (``requests.lua``, 10 connections) asks for one
path at a time for ``-d`` seconds: ``GET /payments/{id}``, ``POST
/payments/{id}/refunds/validate`` (the refund form's live check, with the session cookie
and the CSRF token), ``GET /healthz``, and the bare handler ``GET /bench/bare-get`` in
the same app. Each run measures the bare handler next to the pages, so each ratio is
against a baseline of the same run; printed as median (min … max) over ``--runs``.
``--profile DIR`` samples the server with py-spy while each path runs in the last run and
prints where the time went (database, templates, framework, desk code, idle).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.bench.bench_app import BARE_GET  # noqa: E402
from tests.bench.harness import (  # noqa: E402
    BENCH_DIR,
    PG_SERVER,
    Server,
    print_profile,
    profiled,
    scratch_database,
    summary,
    wrk,
)
from web.antom.keys import generate_private_key, private_key_pem, public_key_pem  # noqa: E402
from web.db import make_engine, migrate, session_scope  # noqa: E402
from web.models import Payment, Refund, RefundStatus, utcnow  # noqa: E402
from web.services.users import create_user  # noqa: E402
from web.settings import normalise_database_url  # noqa: E402

PASSWORD = "benchmark password 1234"
EMAIL = "lead@bench.test"


async def seed(url: str) -> int:
    engine = make_engine(url)
    async with session_scope(engine) as session:
        await create_user(session, email=EMAIL, name="Bench Lead", role="lead", password=PASSWORD)
        payment = Payment(
            payment_id="2026BENCHPAGE0001",
            payment_request_id="REQ-BENCH-1",
            reference_order_id="ORDER-BENCH-1",
            buyer_email="buyer@example.com",
            buyer_name="Bench Buyer",
            method="ALIPAY_CN",
            currency="USD",
            amount_minor=100_000,
            captured_minor=100_000,
            refunded_minor=3_000,
            refund_count=3,
            status="SUCCESS",
            paid_at=utcnow(),
        )
        session.add(payment)
        await session.flush()
        assert payment.id is not None
        for i in range(3):
            session.add(
                Refund(
                    refund_request_id=f"rd_bench_page_{i}",
                    payment_pk=payment.id,
                    refund_id=f"REFBENCH{i}",
                    currency="USD",
                    amount_minor=1_000,
                    status=RefundStatus.SUCCEEDED,
                    reason="customer_request",
                    reason_text="Customer request",
                )
            )
        pk = payment.id
    await engine.dispose()
    return pk


def sign_in(base: str, payment_pk: int) -> tuple[str, str, str]:
    """(Cookie header, CSRF token, the refund form's fields) for a signed-in lead."""
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/login")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
        assert token, "no CSRF token on /login"
        answer = client.post(
            "/login", data={"_csrf_token": token.group(1), "email": EMAIL, "password": PASSWORD}
        )
        assert answer.status_code in (200, 303), answer.status_code
        detail = client.get(f"/payments/{payment_pk}")
        assert detail.status_code == 200, detail.text[:300]
        fields = {
            name: (re.search(rf'name="{name}" value="([^"]*)"', detail.text) or [None, ""])[1]
            for name in ("form_token", "refundable_token", "amount_default")
        }
        form = urlencode(
            fields | {"amount": "12.34", "currency": "USD", "reason": "customer_request"}
        )
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        return cookie, token.group(1), form


def write(path: Path, method: str, target: str, headers: list[str], body: str = "") -> Path:
    path.write_text(f"{method}\t{target}\t{'|'.join(headers)}\t{body}\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", type=int, default=5, help="seconds per path per run (default 5)")
    parser.add_argument("-c", type=int, default=10, help="connections (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (default 1)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--database-url", default=PG_SERVER, help="PostgreSQL server")
    parser.add_argument(
        "--profile", type=Path, help="py-spy each path in the last run; raw stacks in this folder"
    )
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {"payment page": [], "live validation": [], "/healthz": []}
    bare_rates: list[float] = []
    profiles: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        if args.sqlite:
            url = normalise_database_url(f"sqlite:///{tmp}/bench.sqlite3", tmp)
            migrate(url)
        else:
            url = stack.enter_context(scratch_database(args.database_url))
        payment_pk = asyncio.run(seed(url))
        antom, merchant = generate_private_key(), generate_private_key()
        env = {
            "DATABASE_URL": url,
            "APP_ENV": "development",
            "SECRET_KEY": "bench-only-key-2f9c1e8d7a6b5c4d3e2f1a0b9c8d7e6f",
            "PUBLIC_BASE_URL": "http://127.0.0.1",
            "ANTOM_GATEWAY_URL": "http://127.0.0.1:9",
            "ANTOM_CLIENT_ID": "BENCH_CLIENT",
            "ANTOM_MERCHANT_PRIVATE_KEY": private_key_pem(merchant),
            "ANTOM_PUBLIC_KEY": public_key_pem(antom.public_key()),
            "REFUND_DESK_POLLER": "off",
            "WEB_CONCURRENCY": str(args.workers),
        }
        print(
            f"pages: {url.split('://')[0]}, {args.runs} runs x {args.d} s a path, "
            f"{args.c} connections, {args.workers} worker(s)",
            flush=True,
        )
        with Server(env, workers=args.workers) as server:
            cookie, csrf, form = sign_in(server.base, payment_pk)
            signed = [f"Cookie: {cookie}"]
            files = {
                "bare": write(tmp / "bare.txt", "GET", BARE_GET, []),
                "payment page": write(tmp / "page.txt", "GET", f"/payments/{payment_pk}", signed),
                "live validation": write(
                    tmp / "validate.txt",
                    "POST",
                    f"/payments/{payment_pk}/refunds/validate",
                    [
                        *signed,
                        f"x-csrftoken: {csrf}",
                        "HX-Request: true",
                        "Content-Type: application/x-www-form-urlencoded",
                    ],
                    form,
                ),
                "/healthz": write(tmp / "healthz.txt", "GET", "/healthz", []),
            }
            script = BENCH_DIR / "requests.lua"

            def rate(name: str, seconds: int, profile: Path | None = None) -> float:
                with profiled(server.pid, profile, children=True):
                    result = wrk(
                        server.base, script, [str(files[name]), "1", "cycle"],
                        connections=args.c, threads=1, duration_s=seconds,
                    )  # fmt: skip
                assert result.non_2xx == 0 and result.errors == 0, (name, result)
                return result.rate

            for name in files:
                rate(name, 1)  # warm every path
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
            for run in range(args.runs):
                bare = rate("bare", args.d)
                bare_rates.append(bare)
                line = [f"  bare {bare:7.1f} req/s"]
                for name in ratios:
                    if args.profile and run == args.runs - 1:
                        slug = re.sub(r"[^a-z]+", "-", name).strip("-")
                        profiles[name] = args.profile / f"{slug}.txt"
                    got = rate(name, args.d, profiles.get(name))
                    ratios[name].append(got / bare)
                    line.append(f"{name} {got:6.1f} req/s = {got / bare:.3f}")
                print(" | ".join(line), flush=True)
    print(summary("bare handler, req/s", bare_rates))
    for name, values in ratios.items():
        print(summary(f"{name} / bare throughput", values))
    for name, raw in profiles.items():
        print_profile(name, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
