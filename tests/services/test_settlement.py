"""Importing Antom settlement reports: reversals recorded through the ledger, refunds
reconciled, bad lines reported line by line, re-imports change nothing, memory bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from tests.services.conftest import Desk, filled_form, submit
from web.antom.client import AntomClient
from web.models import (
    AlertKind,
    AuditEvent,
    Payment,
    Refund,
    RefundStatus,
    SettlementImport,
    SettlementLine,
    User,
)
from web.services import settlement
from web.services.audit import Actor
from web.sim.admin import SETTLEMENT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]


async def imported(desk: Desk, path: Path, actor: Actor | None = None) -> SettlementImport:
    async with desk.session() as s:
        job = await settlement.start_import(s, filename=path.name, path=path, user_pk=None)
        await s.commit()
    assert job.id is not None
    return await settlement.run_import(desk.engine, job.id, path, actor)


async def succeeded_refund(
    desk: Desk, antom: AntomClient, simulator: Any, amount_text: str = "30.00"
) -> tuple[Payment, Refund, User]:
    lead = await desk.user(limits={"USD": 10**9})
    payment = await desk.imported(antom, simulator, method="ALIPAY_CN", amount_minor=10000)
    draft = await filled_form(desk, payment, lead, amount_text=amount_text, reason="service_issue")
    outcome = await submit(desk, antom, payment, lead, draft)
    assert outcome.refund is not None and outcome.refund.status is RefundStatus.SUCCEEDED
    return payment, outcome.refund, lead


def report(tmp_path: Path, text: str, name: str = "report.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


async def test_a_reversal_in_antom_s_report_reverses_the_refund_once(
    desk: Desk, antom: AntomClient, simulator: Any, tmp_path: Path
) -> None:
    payment, refund, lead = await succeeded_refund(desk, antom, simulator)
    assert refund.id is not None and refund.refund_id and refund.acquirer_reference_no
    simulator.admin_post(f"refunds/{refund.refund_id}/reverse")
    path = report(tmp_path, simulator.settlement_csv())
    who = Actor(user_id=lead.id, label=lead.email, request_id="req-upload")

    job = await imported(desk, path, who)
    assert (job.status, job.new_count, job.rejected_count) == ("done", 3, 0)
    assert (job.reversed_count, job.raised_count, job.notes) == (1, 1, [])
    [after] = await desk.refunds(payment.id)
    assert after.status == RefundStatus.REVERSED
    assert after.reversed_minor == 3000 and after.reversed_at is not None
    p = await desk.get_payment(payment.id)
    # neither failed nor refundable again: the amount stays booked until a lead decides
    assert (p.refunded_minor, p.reserved_minor, p.refund_count) == (3000, 0, 1)
    last = (await desk.events(refund.id))[-1]
    assert (last.from_status, last.to_status, last.source) == (
        "succeeded",
        "reversed",
        "reconciliation",
    )
    assert "$30.00 came back to the merchant" in last.summary
    assert (last.actor_id, last.request_id) == (lead.id, "req-upload")
    [alert] = [a for a in await desk.alerts() if a.kind == AlertKind.REVERSED]
    assert alert.refund_pk == refund.id and alert.payment_pk == payment.id

    # the same report again: nothing stored, nothing moved, nothing raised
    timeline = len(await desk.events(refund.id))
    again = await imported(desk, path)
    assert (again.new_count, again.unchanged_count, again.reversed_count) == (0, 3, 0)
    assert again.raised_count == 0
    assert len(await desk.alerts()) == 1
    assert len(await desk.events(refund.id)) == timeline
    async with desk.session() as s:
        lines = (await s.exec(select(func.count()).select_from(SettlementLine))).one()
        assert lines == 3
        audited = (
            await s.exec(select(AuditEvent).where(AuditEvent.action == "refund.reversed"))
        ).all()
        assert [a.object_id for a in audited] == [refund.refund_request_id]

    # the lead decides: refundable again, recorded
    async with desk.session() as s:
        await settlement.make_refundable_again(
            s, refund.id, actor=who, note="Buyer's bank account closed; refund by card"
        )
        with pytest.raises(settlement.ReleaseError):
            await settlement.make_refundable_again(s, refund.id, actor=who, note="twice over")
        await s.commit()
    p = await desk.get_payment(payment.id)
    assert (p.refunded_minor, p.refund_count) == (0, 0)


async def test_refund_rows_reconcile_with_the_desk(
    desk: Desk, antom: AntomClient, simulator: Any, tmp_path: Path
) -> None:
    payment, refund, _ = await succeeded_refund(desk, antom, simulator)
    other = await desk.payment(payment_id="pay_held_elsewhere")
    head = ",".join(SETTLEMENT_COLUMNS)

    def row(**v: str) -> str:
        base = dict.fromkeys(SETTLEMENT_COLUMNS, "")
        base |= {"settlementBatchId": "B1", "transactionCurrency": "USD"}
        return ",".join((base | v)[c] for c in SETTLEMENT_COLUMNS)

    lines = [
        head,
        # agrees with the desk: nothing raised
        row(
            transactionType="REFUND",
            transactionId=refund.refund_id or "",
            transactionRequestId=refund.refund_request_id,
            originalTransactionId=payment.payment_id,
            transactionAmountValue="-3000",
        ),
        # a settled refund the desk knows of on no refund of its payment
        row(
            transactionType="REFUND",
            transactionId="2026R-unknown",
            transactionRequestId="made-in-dashboard",
            originalTransactionId=other.payment_id,
            transactionAmountValue="-500",
        ),
        # a payment the desk does not hold: stored, nothing raised
        row(
            transactionType="REFUND",
            transactionId="2026R-far",
            transactionRequestId="far-away",
            originalTransactionId="pay_not_here",
            transactionAmountValue="-500",
        ),
        "<END>",
    ]
    job = await imported(desk, report(tmp_path, "\n".join(lines) + "\n"))
    assert (job.new_count, job.rejected_count, job.raised_count) == (3, 0, 1)
    [alert] = await desk.alerts()
    assert alert.kind == AlertKind.RECONCILE and alert.payment_pk == other.id
    assert "has no record of" in alert.message


async def test_a_refund_antom_settled_that_the_desk_holds_as_failed_is_raised(
    desk: Desk, tmp_path: Path
) -> None:
    payment = await desk.payment(payment_id="pay_failed_one")
    async with desk.session() as s:
        refund = Refund(
            refund_request_id="rd_failed",
            payment_pk=payment.id or 0,
            currency="USD",
            amount_minor=700,
            status=RefundStatus.FAILED,
            reason="other",
            reason_text="Other",
            acquirer_reference_no="9" * 31,
        )
        s.add(refund)  # written directly: a FAILED refund reserves nothing
        await s.commit()
    text = (
        "settlementBatchId,transactionType,transactionId,transactionRequestId,"
        "originalTransactionId,transactionAmountValue,transactionCurrency,acquirerReferenceNo\n"
        # matched by acquirerReferenceNo when the ids do not match
        f"B2,REFUND,2026R-1,somebody-else,pay_failed_one,-700,USD,{'9' * 31}\n<END>\n"
    )
    job = await imported(desk, report(tmp_path, text))
    assert (job.new_count, job.raised_count) == (1, 1)
    [alert] = await desk.alerts()
    assert alert.kind == AlertKind.RECONCILE and alert.refund_pk == refund.id
    assert "holds it as failed" in alert.message
    [stored] = await desk.refunds(payment.id)
    assert stored.status == RefundStatus.FAILED  # reconciling moves nothing


async def test_any_column_order_bom_crlf_blank_lines_header_part_and_bad_rows(
    desk: Desk, tmp_path: Path
) -> None:
    text = (
        "\ufeffSettlement details report,,,,\r\n"  # a title before the header line
        "\r\n"
        "transactionCurrency,TransactionAmountValue,transactionId,transactionType,"
        "settlementBatchId,transactionTime,feeAmountValue\r\n"
        "USD,1000,pay_1,PAYMENT,B9,2026-11-25T20:36:00+08:00,-30\r\n"
        "\r\n"
        "USD,12.50,pay_2,PAYMENT,B9,,\r\n"  # line 6: not minor units
        "US$,100,pay_3,PAYMENT,B9,,\r\n"  # line 7: not a currency
        "USD,100,,PAYMENT,B9,yesterday,\r\n"  # line 8: no id, bad time
        "USD,-100,R-1,REFUND,B9,,\r\n"  # line 9: a refund names no payment
        "USD,100,pay_1,PAYMENT,B9,2026-11-25T20:36:00+08:00,-30\r\n"  # the same row again
        "<END>\r\n"
    )
    job = await imported(desk, report(tmp_path, text))
    assert job.status == "done"
    assert (job.new_count, job.unchanged_count, job.rejected_count) == (1, 1, 4)
    assert job.notes == []
    reported = {
        entry["line"]: [(e["field"], e["message"]) for e in entry["errors"]]
        for entry in job.problems
    }
    assert reported == {
        6: [("TransactionAmountValue", "“12.50” is not a whole number of minor units")],
        7: [("transactionCurrency", "“US$” is not a currency code")],
        8: [
            ("transactionId", "transactionId is missing"),
            ("transactionTime", "“yesterday” is not a time (ISO 8601)"),
        ],
        9: [
            ("originalTransactionId", "originalTransactionId is needed on a REFUND row"),
            ("transactionRequestId", "transactionRequestId is needed on a REFUND row"),
        ],
    }
    async with desk.session() as s:
        [line] = (await s.exec(select(SettlementLine))).all()
    assert (line.line, line.amount_minor, line.fee_minor, line.currency) == (4, 1000, -30, "USD")
    assert line.transaction_time is not None and line.transaction_time.hour == 12


async def test_a_file_without_a_header_or_end_says_so(desk: Desk, tmp_path: Path) -> None:
    job = await imported(desk, report(tmp_path, "just,some\nwords,here\n"))
    assert job.status == "failed" and job.new_count == 0
    assert job.notes[0].startswith("No header line")
    cut = "settlementBatchId,transactionType,transactionId,transactionAmountValue\nB,PAYMENT,p,1\n"
    job = await imported(desk, report(tmp_path, cut, "cut.csv"))
    assert job.status == "failed"
    assert job.notes == ["The header has no transactionCurrency column"]
    short = cut.replace(",transactionAmountValue", ",transactionAmountValue,transactionCurrency")
    short = short.replace("p,1\n", "p,1,USD\n")
    job = await imported(desk, report(tmp_path, short, "short.csv"))
    assert (job.status, job.new_count) == ("done", 1)
    assert job.notes == ["The file has no <END> line: it may have been cut short"]


# ---------------------------------------------------------------- bounded memory

CHILD = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from pathlib import Path
    from web.db import make_engine, migrate, session_scope
    from web.services import settlement

    url, rows, path = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    with path.open("w", newline="") as out:
        out.write("settlementBatchId,customerId,transactionId,originalTransactionId,"
                  "transactionRequestId,transactionType,paymentMethodType,"
                  "transactionAmountValue,transactionCurrency,settlementAmountValue,"
                  "settlementCurrency,feeAmountValue,feeCurrency,transactionTime\\r\\n")
        for i in range(rows):
            if i % 10:
                out.write(f"B1,C1,pay_{i:09d},,preq_{i:09d},PAYMENT,CARD,{1000 + i},USD,"
                          f"{970 + i},USD,-30,USD,2026-11-25T20:36:00+08:00\\r\\n")
            else:
                out.write(f"B1,C1,ref_{i:09d},pay_{i:09d},rreq_{i:09d},REFUND,CARD,-{i},"
                          f"USD,-{i},USD,0,USD,2026-11-25T20:36:00+08:00\\r\\n")
        out.write("<END>\\r\\n")
    migrate(url.replace("+aiosqlite", ""))

    async def main():
        engine = make_engine(url)
        async with session_scope(engine) as s:
            job = await settlement.start_import(s, filename=path.name, path=path, user_pk=None)
        job = await settlement.run_import(engine, job.id, path)
        await engine.dispose()
        return job

    job = asyncio.run(main())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"new": job.new_count, "status": str(job.status), "peak_kib": peak_kib}))
    """
)


def _import_in_a_child(tmp_path: Path, rows: int) -> dict[str, Any]:
    folder = tmp_path / str(rows)
    folder.mkdir()
    url = f"sqlite+aiosqlite:///{folder / 'desk.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(rows), str(folder / "big.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_100000_row_report_imports_in_bounded_memory(tmp_path: Path) -> None:
    small = _import_in_a_child(tmp_path, 1_000)
    big = _import_in_a_child(tmp_path, 100_000)
    assert (small["status"], small["new"]) == ("done", 1_000)
    assert (big["status"], big["new"]) == ("done", 100_000)
    # 100 times the rows, (almost) the same peak: the file is streamed, CHUNK rows at a
    # time. Holding the rows would cost well over 100 MB (about 1.5 KiB a parsed row).
    grown_mib = (big["peak_kib"] - small["peak_kib"]) / 1024
    assert grown_mib < 40, f"peak RSS grew by {grown_mib:.0f} MiB for 99,000 more rows"
