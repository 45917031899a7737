"""Drive one bulk batch the way the desk does, in a process a crash test may SIGKILL.

Not a test: ``tests/status/test_bulk_crash.py`` runs it with a fault point armed to fire
on its N-th pass (``web/faults.py``). stdin: JSON with fault_point, after, database_url,
gateway_url, client_id, merchant_pem, antom_pem, batch_pk, lease_s. Prints the run's
outcome if it survives.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from web.antom.client import AntomClient
from web.antom.keys import load_private_key, load_public_key
from web.db import make_engine
from web.faults import arm
from web.services.bulk_run import BulkRunner
from web.settings import BulkConfig


async def main(args: dict[str, Any]) -> None:
    arm(str(args["fault_point"]), after=int(args["after"]))
    engine = make_engine(str(args["database_url"]))
    antom = AntomClient(
        gateway_url=str(args["gateway_url"]),
        client_id=str(args["client_id"]),
        merchant_private_key=load_private_key(str(args["merchant_pem"])),
        antom_public_keys=[load_public_key(str(args["antom_pem"]))],
        timeout=5.0,
    )
    config = BulkConfig(max_rate=50, concurrency=4, lease_s=float(args["lease_s"]))
    try:
        stats = await BulkRunner(engine, antom, notify_url=None, config=config).drive(
            int(args["batch_pk"])
        )
    finally:
        await antom.aclose()
        await engine.dispose()
    print(stats.outcome)


if __name__ == "__main__":
    asyncio.run(main(json.load(sys.stdin)))
