"""Submit one refund the way the web app does, in a process a crash test may SIGKILL.

Not a test: ``tests/status/test_crash.py`` runs it with a fault point armed
(``web/faults.py``). stdin: JSON with fault_point, database_url, gateway_url, client_id,
merchant_pem, antom_pem, payment_pk, user_id, amount_text. Prints the refund's status if
it survives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.db import make_engine, session_scope
from web.faults import arm
from web.models import Payment, User, utcnow
from web.services.refunds import new_form, submit_refund


async def main(args: dict[str, str | int]) -> None:
    arm(str(args["fault_point"]))
    engine = make_engine(str(args["database_url"]))
    async with session_scope(engine) as session:
        payment = await session.get(Payment, int(args["payment_pk"]))
        user = await session.get(User, int(args["user_id"]))
        assert payment is not None and user is not None
        draft, _ = await new_form(session, payment, user, utcnow())
    draft = dataclasses.replace(
        draft, amount_text=str(args["amount_text"]), reason="customer_request"
    )
    antom = AntomClient(
        gateway_url=str(args["gateway_url"]),
        client_id=str(args["client_id"]),
        merchant_private_key=load_private_key(str(args["merchant_pem"])),
        antom_public_keys=[load_public_key(str(args["antom_pem"]))],
        timeout=5.0,
    )
    try:
        outcome = await submit_refund(
            engine,
            antom,
            payment_pk=int(args["payment_pk"]),
            user=user,
            draft=draft,
            notify_url=None,
            now=utcnow(),
        )
    finally:
        await antom.aclose()
        await engine.dispose()
    print(outcome.refund.status if outcome.refund else f"refused: {outcome.check.errors}")


if __name__ == "__main__":
    asyncio.run(main(json.load(sys.stdin)))
