"""The steps' rules, pure: what each service writes and which event it answers with,
under the sample's fault prefixes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from contracts import (
    Faults,
    InventoryReleased,
    InventoryReleaseFailed,
    InventoryReserved,
    InventoryReserveFailed,
    OrderCreated,
    OrderCreateFailed,
    OrderStatusUpdateFailed,
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PlaceOrder,
    decode,
    demo_faults,
    transaction_id,
)
from contracts.samples import sample_order
from services.inventory import domain as inventory
from services.order import domain as order
from services.payment import domain as payment

SEED = demo_faults("seed")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def placed(scenario: str) -> PlaceOrder:
    return decode(PlaceOrder, json.dumps(sample_order(scenario)).encode())


def created(scenario: str) -> OrderCreated:
    _, event = order.process_order(placed(scenario), causation_id="c", faults=Faults())
    assert isinstance(event, OrderCreated)
    return event


def debited(scenario: str) -> PaymentDebited:
    _, event = payment.debit(created(scenario), causation_id="c", now=NOW, faults=Faults())
    assert isinstance(event, PaymentDebited)
    return event


@pytest.mark.parametrize(
    ("scenario", "total"),
    [("ok", "99.00"), ("1", "29.97"), ("2", "349.90"), ("22", "199.98"), ("3", "6.50")],
)
def test_order_total_is_exact_to_the_cent(scenario: str, total: str) -> None:
    assert payment.order_total(placed(scenario).items) == Decimal(total)


def test_process_order_stores_new_order_and_announces_it() -> None:
    row, event = order.process_order(placed("ok"), causation_id="c", faults=SEED)
    assert row.order_status == "New"
    assert isinstance(event, OrderCreated)
    assert event.items == placed("ok").items


def test_process_order_with_prefix_1_stores_the_order_then_fails() -> None:
    row, event = order.process_order(placed("1"), causation_id="c", faults=SEED)
    assert row.order_status == "New"
    assert isinstance(event, OrderCreateFailed)
    assert event.error == "ErrProcessOrder"


def test_update_order_status_fails_only_with_prefix_11() -> None:
    assert (
        order.update_order_status("1abc", cause="ErrProcessOrder", causation_id="c", faults=SEED)
        is None
    )
    failure = order.update_order_status(
        "11ab", cause="ErrProcessOrder", causation_id="c", faults=SEED
    )
    assert isinstance(failure, OrderStatusUpdateFailed)
    assert (failure.step, failure.error, failure.cause) == (
        "UpdateOrderStatus",
        "ErrUpdateOrderStatus",
        "ErrProcessOrder",
    )


def test_debit_writes_merch1_debit_with_deterministic_id() -> None:
    row, event = payment.debit(created("ok"), causation_id="c", now=NOW, faults=SEED)
    assert row.merchant_id == "merch1"
    assert row.payment_type == "Debit"
    assert row.transaction_id == transaction_id(row.order_id, "Debit")
    assert isinstance(event, PaymentDebited)
    assert event.amount == Decimal("99.00")


def test_debit_with_prefix_2_writes_then_fails() -> None:
    row, event = payment.debit(created("2"), causation_id="c", now=NOW, faults=SEED)
    assert row.payment_amount == Decimal("349.90")
    assert isinstance(event, PaymentDebitFailed)
    assert event.error == "ErrProcessPayment"


def refund_after_debit(scenario: str) -> tuple[Any, Any, Any]:
    """Debit an order of `scenario` without faults, then refund it with the seeded ones."""
    debit_row, _ = payment.debit(created(scenario), causation_id="c", now=NOW, faults=Faults())
    credit, event = payment.refund(
        debit_row,
        order_id=debit_row.order_id,
        cause="ErrProcessPayment",
        causation_id="c",
        now=NOW,
        faults=SEED,
    )
    return debit_row, credit, event


def test_refund_copies_the_debit_with_the_amount_negated() -> None:
    debit_row, credit, event = refund_after_debit("2")
    assert credit is not None
    assert credit.payment_type == "Credit"
    assert credit.payment_amount == Decimal("-349.90")
    assert credit.merchant_id == debit_row.merchant_id
    assert credit.transaction_id == transaction_id(debit_row.order_id, "Credit")
    assert isinstance(event, PaymentRefunded)
    assert event.cause == "ErrProcessPayment"


def test_refund_with_prefix_22_writes_the_credit_then_reports_failure() -> None:
    _, credit, event = refund_after_debit("22")
    assert credit is not None
    assert isinstance(event, PaymentRefundFailed)
    assert (event.step, event.error) == ("ProcessRefund", "ErrProcessRefund")
    assert event.transaction_id == str(credit.transaction_id)


def test_refund_without_a_debit_refunds_nothing_and_lets_the_chain_go_on() -> None:
    credit, event = payment.refund(
        None, order_id="9x", cause="ErrReserveInventory", causation_id="c", now=NOW, faults=SEED
    )
    assert credit is None
    assert isinstance(event, PaymentRefunded)
    assert event.transaction_id is None


def test_reserve_lists_the_item_ids() -> None:
    row, event = inventory.reserve(debited("ok"), causation_id="c", now=NOW, faults=SEED)
    assert row.items == ["988"]
    assert row.transaction_type == "Reserve"
    assert isinstance(event, InventoryReserved)


def test_reserve_with_prefix_3_writes_then_fails() -> None:
    row, event = inventory.reserve(debited("3"), causation_id="c", now=NOW, faults=SEED)
    assert row.transaction_type == "Reserve"
    assert isinstance(event, InventoryReserveFailed)
    assert event.error == "ErrReserveInventory"


@pytest.mark.parametrize(("scenario", "fails"), [("3", False), ("33", True)])
def test_release_copies_the_reserve_and_fails_only_with_prefix_33(
    scenario: str, fails: bool
) -> None:
    reserve_row, _ = inventory.reserve(
        debited(scenario), causation_id="c", now=NOW, faults=Faults()
    )
    released, event = inventory.release(
        reserve_row,
        order_id=reserve_row.order_id,
        cause="ErrReserveInventory",
        causation_id="c",
        now=NOW,
        faults=SEED,
    )
    assert released is not None
    assert released.items == reserve_row.items
    assert released.transaction_type == "Release"
    assert released.transaction_id == transaction_id(reserve_row.order_id, "Release")
    if fails:
        assert isinstance(event, InventoryReleaseFailed)
        assert event.error == "ErrReleaseInventory"
    else:
        assert isinstance(event, InventoryReleased)


def test_faults_off_means_nothing_fails() -> None:
    plan = demo_faults("off")
    _, event = payment.debit(created("22"), causation_id="c", now=NOW, faults=plan)
    assert isinstance(event, PaymentDebited)


def test_unknown_fault_plan_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="SAGA_FAULTS must be"):
        demo_faults("sometimes")
