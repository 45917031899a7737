"""Finding a payment in Antom that the desk already knows refreshes it from Antom
(issue 7, defect 3: a capture the desk missed is picked up, not "nothing to refund")."""

from __future__ import annotations

from sqlmodel import select

from tests.pages.conftest import Desk
from tests.support.simulator import SimHandle
from web.models import Payment


async def captured_at_desk(desk: Desk, payment_id: str) -> int:
    async with desk.session() as s:
        payment = (await s.exec(select(Payment).where(Payment.payment_id == payment_id))).one()
        return payment.captured_minor


async def test_finding_a_known_payment_again_refreshes_its_capture(
    desk: Desk, simulator: SimHandle
) -> None:
    made = simulator.create_payment(method="CARD", amount_minor=8_000, captured=False)
    first = await desk.post_form("/payments/find", {"ref": made["paymentId"]})
    assert first.status_code == 200
    assert await captured_at_desk(desk, made["paymentId"]) == 0

    # Captured at Antom; its CAPTURE_RESULT never reached this desk.
    simulator.admin_post(f"payments/{made['paymentId']}/capture", {})
    again = await desk.post_form("/payments/find", {"ref": made["paymentId"]})

    assert again.status_code == 200
    assert await captured_at_desk(desk, made["paymentId"]) == 8_000
    assert f"Payment {made['paymentId']} refreshed from Antom" in again.text
    assert "Nothing is left to refund" not in again.text
