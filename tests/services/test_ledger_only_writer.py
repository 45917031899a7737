"""The guard behind the one-ledger rule (tests/support/ledger_guard.py) sees what it must:
it runs around every test of the suite, so these make sure it can fail."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.ledger_guard import LEDGER, WEB, offender, touches_the_ledger


def issued_from(path: str) -> Callable[[str], str | None]:
    """``offender`` as called by code compiled under ``path`` (a module of the desk)."""
    namespace: dict[str, object] = {"offender": offender}
    code = compile("def run(statement):\n    return offender(statement)\n", path, "exec")
    exec(code, namespace)
    run = namespace["run"]
    assert callable(run)
    return run  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("UPDATE refunds SET status=?, updated_at=? WHERE refunds.id = ?", "refunds.status"),
        (
            "UPDATE payments SET reserved_minor=(payments.reserved_minor + ?) WHERE payments.id=?",
            "payments.reserved_minor",
        ),
        (
            "UPDATE payments SET captured_minor=%(c)s RETURNING payments.id",
            "payments.captured_minor",
        ),
        ("INSERT INTO refunds (refund_request_id) VALUES (?)", "a new refunds row"),
        ("INSERT INTO payments (payment_id) VALUES (?)", "a new payments row"),
        ("UPDATE refunds SET lease_owner=?, next_check_at=? WHERE refunds.id = ?", None),
        ("UPDATE payments SET dispute_open=?, updated_at=? WHERE payments.id = ?", None),
        ("INSERT INTO refund_events (refund_pk) VALUES (?)", None),
        ("SELECT refunds.status FROM refunds", None),
    ],
)
def test_statements_only_the_ledger_may_issue(statement: str, what: str | None) -> None:
    assert touches_the_ledger(statement) == what


def test_a_desk_module_other_than_the_ledger_is_caught() -> None:
    elsewhere = issued_from(str(WEB / "services" / "webhooks.py"))
    found = elsewhere("UPDATE refunds SET status=? WHERE refunds.id = ?")
    assert found == "web/services/webhooks.py changed refunds.status outside the ledger"
    assert elsewhere("UPDATE refunds SET next_check_at=? WHERE refunds.id = ?") is None


def test_the_ledger_and_test_code_are_let_through() -> None:
    assert issued_from(str(LEDGER))("UPDATE refunds SET status=? WHERE refunds.id = ?") is None
    # A test arranging rows directly is not desk code.
    assert offender("UPDATE payments SET captured_minor=? WHERE payments.id = ?") is None
    # The simulator keeps its own books, in its own database.
    simulated = issued_from(str(WEB / "sim" / "gateway.py"))
    assert simulated("UPDATE refunds SET status=? WHERE refunds.id = ?") is None


def test_the_session_helper_is_neither_desk_code_nor_an_alibi() -> None:
    # A test arranging rows through web/db.py's session_scope is still a test ...
    via_db = issued_from(str(WEB / "db.py"))
    assert via_db("INSERT INTO payments (payment_id) VALUES (?)") is None
