"""acquirerReferenceNo and acquirerInfo from the simulator's refund answer end up on the
desk's Refund row, for reconciling with the settlement file."""

from __future__ import annotations

from typing import Any

import pytest

from tests.services.conftest import Desk, filled_form, submit
from web.antom.client import AntomClient
from web.models import RefundStatus


@pytest.mark.parametrize(
    ("method", "currency", "status"),
    [
        ("ALIPAY_CN", "USD", RefundStatus.SUCCEEDED),  # SUCCESS/S at once
        ("GCASH", "PHP", RefundStatus.PROCESSING),  # REFUND_IN_PROCESS/U: carries them too
    ],
)
async def test_submitted_refund_stores_the_acquirer_fields(
    desk: Desk,
    antom: AntomClient,
    simulator: Any,
    method: str,
    currency: str,
    status: RefundStatus,
) -> None:
    user = await desk.user(limits={currency: 10**9})
    payment = await desk.imported(
        antom, simulator, method=method, currency=currency, amount_minor=50000
    )
    draft = await filled_form(desk, payment, user, amount_text="12.00", reason="item_returned")
    outcome = await submit(desk, antom, payment, user, draft)
    assert outcome.refund is not None and outcome.refund.status is status, outcome.message

    (stored,) = await desk.refunds(payment.id)
    assert stored.refund_id is not None
    at_antom = simulator.refund(stored.refund_id)
    assert at_antom["acquirerReferenceNo"]
    assert stored.acquirer_reference_no == at_antom["acquirerReferenceNo"]
    assert stored.acquirer_info == at_antom["acquirerInfo"]
    assert stored.acquirer_info is not None and stored.acquirer_info["acquirerTransactionId"]
