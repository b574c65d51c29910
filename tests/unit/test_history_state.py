"""The saga history's derivation of a saga's state from its events (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from saga_log.recorder.state import derive, is_stuck

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events(*types_and_payloads: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, (kind, payload) in enumerate(types_and_payloads):
        at = T0 + timedelta(milliseconds=10 * i)
        out.append(
            {
                "type": kind,
                "payload": payload,
                "occurred_at": None if kind == "PlaceOrder" else at,
                "received_at": at,
            }
        )
    return out


def steps(state: Any) -> dict[str, str]:
    return {step.name: step.status for step in state.steps}


SCENARIO_3 = events(
    ("PlaceOrder", {}),
    ("OrderCreated", {}),
    ("PaymentDebited", {}),
    ("InventoryReserveFailed", {"error": "ErrReserveInventory"}),
    ("InventoryReleased", {"cause": "ErrReserveInventory"}),
    ("PaymentRefunded", {"cause": "ErrReserveInventory"}),
    ("OrderFailed", {"error": "SagaFailed", "cause": "ErrReserveInventory"}),
)


def test_success_path_marks_the_forward_steps_succeeded() -> None:
    state = derive(
        "order",
        "o",
        events(
            ("PlaceOrder", {}),
            ("OrderCreated", {}),
            ("PaymentDebited", {}),
            ("InventoryReserved", {}),
            ("OrderSucceeded", {}),
        ),
    )
    assert state.status == "succeeded"
    assert steps(state) == {
        "ProcessOrder": "succeeded",
        "ProcessPayment": "succeeded",
        "ReserveInventory": "succeeded",
        "ReleaseInventory": "pending",
        "ProcessRefund": "pending",
        "UpdateOrderStatus": "pending",
    }
    assert state.duration_ms == 40.0
    assert [step.duration_ms for step in state.steps[:3]] == [10.0, 10.0, 10.0]


def test_compensated_failure_is_failed_with_every_compensation_done() -> None:
    state = derive("order", "o", SCENARIO_3)
    assert state.status == "failed"
    assert state.cause == "ErrReserveInventory"
    assert steps(state) == {
        "ProcessOrder": "succeeded",
        "ProcessPayment": "succeeded",
        "ReserveInventory": "failed",
        "ReleaseInventory": "succeeded",
        "ProcessRefund": "succeeded",
        "UpdateOrderStatus": "succeeded",
    }
    assert state.current_step is None


def test_events_arriving_out_of_order_give_the_same_state() -> None:
    assert (
        derive("order", "o", list(reversed(SCENARIO_3))).as_json()
        == derive("order", "o", SCENARIO_3).as_json()
    )


def test_a_failed_compensation_needs_attention_and_stops_the_chain() -> None:
    state = derive(
        "order",
        "o",
        events(
            ("PlaceOrder", {}),
            ("OrderCreated", {}),
            ("PaymentDebited", {}),
            ("InventoryReserveFailed", {"error": "ErrReserveInventory"}),
            (
                "InventoryReleaseFailed",
                {
                    "step": "ReleaseInventory",
                    "error": "ErrReleaseInventory",
                    "cause": "ErrReserveInventory",
                },
            ),
            ("OrderFailed", {"error": "SagaFailed", "compensation_error": "ErrReleaseInventory"}),
        ),
    )
    assert state.status == "needs_attention"
    assert "ReleaseInventory" in (state.attention or "")
    assert steps(state)["ReleaseInventory"] == "failed"
    assert steps(state)["ProcessRefund"] == "pending"


def test_a_running_saga_shows_its_current_step() -> None:
    state = derive("order", "o", events(("PlaceOrder", {}), ("OrderCreated", {})))
    assert state.status == "running"
    assert state.current_step == "ProcessPayment"


def test_a_parked_message_needs_attention() -> None:
    state = derive(
        "order",
        "o",
        events(
            ("PlaceOrder", {}),
            ("OrderCreated", {}),
            (
                "MessageParked",
                {"step": "ProcessPayment", "queue": "payment.debit_payment", "error": "db down"},
            ),
        ),
    )
    assert state.status == "needs_attention"
    assert steps(state)["ProcessPayment"] == "parked"


@pytest.mark.parametrize(
    ("status", "age", "stuck"),
    [("running", 601, True), ("running", 599, False), ("succeeded", 9999, False)],
)
def test_stuck_means_running_and_silent_past_the_deadline(
    status: str, age: int, stuck: bool
) -> None:
    now = T0 + timedelta(seconds=age)
    assert is_stuck(status, T0, now=now, deadline=timedelta(seconds=600)) is stuck


def test_a_redriven_compensation_that_succeeds_clears_the_attention() -> None:
    state = derive(
        "order",
        "o",
        events(
            ("PlaceOrder", {}),
            ("OrderCreated", {}),
            ("PaymentDebitFailed", {"error": "ErrProcessPayment"}),
            ("PaymentRefundFailed", {"step": "ProcessRefund", "error": "ErrProcessRefund"}),
            ("OrderFailed", {"error": "SagaFailed", "compensation_error": "ErrProcessRefund"}),
            ("PaymentRefunded", {"cause": "ErrProcessPayment"}),
            ("OrderStatusUpdated", {"order_status": "Pending"}),
        ),
    )
    assert steps(state)["ProcessRefund"] == "succeeded"
    assert steps(state)["UpdateOrderStatus"] == "succeeded"
    assert state.attention is None
    assert state.status == "failed"


def test_a_rejected_order_is_a_failed_saga_that_says_why() -> None:
    state = derive(
        "order",
        "o",
        events(("PlaceOrder", {}), ("OrderRejected", {"reason": "items: Field required"})),
    )
    assert state.status == "failed"
    assert state.cause == "rejected: items: Field required"
    assert steps(state)["ProcessOrder"] == "failed"


class _Watched(dict[str, Any]):
    """A payload that remembers which fields were read."""

    read: ClassVar[set[str]] = set()

    def get(self, key: str, default: Any = None) -> Any:
        _Watched.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        _Watched.read.add(key)
        return super().__getitem__(key)


def test_the_state_reads_only_the_payload_fields_the_history_keeps_for_it() -> None:
    # The recorder reads back only STATE_FIELDS of stored payloads; a field derive() reads
    # beyond them would silently be missing there.
    from saga_log.recorder.state import STATE_FIELDS

    every_kind = events(
        ("PlaceOrder", {}),
        ("OrderCreated", {}),
        ("OrderCreateFailed", {"error": "e"}),
        ("PaymentDebited", {}),
        ("PaymentDebitFailed", {"error": "e"}),
        ("InventoryReserveFailed", {"error": "e"}),
        ("InventoryReleased", {"cause": "c"}),
        ("PaymentRefunded", {"cause": "c"}),
        ("PaymentRefundFailed", {"step": "ProcessRefund", "error": "e", "cause": "c"}),
        ("MessageParked", {"step": "ProcessRefund", "queue": "q", "error": "e"}),
        ("OrderCancelled", {"reason": "r"}),
        ("OrderStatusUpdated", {}),
        ("OrderRejected", {"reason": "r"}),
        ("OrderFailed", {"error": "SagaFailed", "cause": "c", "compensation_error": "x"}),
        ("OrderSucceeded", {}),
    )
    _Watched.read = set()
    derive("order", "o", [{**event, "payload": _Watched(event["payload"])} for event in every_kind])
    assert _Watched.read
    assert _Watched.read <= set(STATE_FIELDS)


def fare_events(*types_and_payloads: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    found = events(*types_and_payloads)
    for event in found:  # the fare's starting command has no envelope either
        if event["type"] == "SubmitFare":
            event["occurred_at"] = None
    return found


def test_a_fare_whose_credit_failed_is_compensated_from_its_own_declaration() -> None:
    state = derive(
        "fare",
        "wr_1",
        fare_events(
            ("SubmitFare", {}),
            ("FareRegistered", {}),
            ("FareCharged", {}),
            ("CustomerAccountCreditFailed", {"error": "AccountCreditException"}),
            ("FareRefunded", {"cause": "AccountCreditException"}),
            ("FareProcessingFailed", {"error": "AccountCreditException"}),
        ),
    )
    assert (state.saga_type, state.status, state.cause) == (
        "fare",
        "failed",
        "AccountCreditException",
    )
    assert steps(state) == {
        "RegisterFare": "succeeded",
        "ChargeFare": "succeeded",
        "CreditCustomerAccount": "failed",
        "RefundFare": "succeeded",
        "SetFareStatusFailed": "succeeded",
    }


def test_a_fare_whose_refund_failed_needs_attention_and_leaves_the_fare_status_step_pending() -> (
    None
):
    state = derive(
        "fare",
        "wr_1",
        fare_events(
            ("SubmitFare", {}),
            ("FareRegistered", {}),
            ("FareCharged", {}),
            ("CustomerAccountCreditFailed", {"error": "AccountCreditException"}),
            ("FareRefundFailed", {"step": "RefundFare", "error": "RefundException"}),
            ("FareProcessingFailed", {"error": "RefundException"}),
        ),
    )
    assert state.status == "needs_attention"
    assert state.attention == "compensation RefundFare failed: RefundException"
    assert steps(state)["RefundFare"] == "failed"
    assert steps(state)["SetFareStatusFailed"] == "pending"


def test_a_running_saga_says_which_events_would_move_it_on() -> None:
    state = derive("fare", "wr_1", fare_events(("SubmitFare", {}), ("FareRegistered", {})))
    assert (state.status, state.current_step) == ("running", "ChargeFare")
    assert state.expecting == ["FareCharged", "FareChargeFailed"]
    order = derive("order", "o", events(("PlaceOrder", {}), ("OrderCreated", {})))
    assert order.expecting == ["PaymentDebited", "PaymentDebitFailed"]


def test_a_saga_type_nobody_declared_is_refused() -> None:
    with pytest.raises(KeyError, match="no saga 'teleport'"):
        derive("teleport", "x", [])


def test_a_rejected_resubmission_does_not_change_a_saga_that_ran() -> None:
    ran = fare_events(
        ("SubmitFare", {}),
        ("FareRegistered", {}),
        ("FareCharged", {}),
        ("CustomerAccountCredited", {}),
        ("FareProcessingSucceeded", {}),
        ("FareRejected", {"reason": "fareAmount: not an amount"}),
    )
    state = derive("fare", "wr_1", ran)
    assert state.status == "succeeded"
    assert steps(state)["RegisterFare"] == "succeeded"


def test_a_saga_waiting_on_its_conclusion_says_what_it_waits_for() -> None:
    state = derive(
        "fare",
        "wr_1",
        fare_events(
            ("SubmitFare", {}),
            ("FareRegistered", {}),
            ("FareCharged", {}),
            ("CustomerAccountCredited", {}),
        ),
    )
    assert (state.status, state.current_step) == ("running", None)
    assert state.expecting == ["FareProcessingSucceeded", "FareProcessingFailed"]


def test_a_parked_conclusion_needs_attention_until_redriven() -> None:
    parked = (
        "MessageParked",
        {"step": None, "queue": "fare.conclude_fare", "error": "db down"},
    )
    before = fare_events(
        ("SubmitFare", {}),
        ("FareRegistered", {}),
        ("FareCharged", {}),
        ("CustomerAccountCredited", {}),
        parked,
    )
    assert derive("fare", "wr_1", before).status == "needs_attention"
    after = fare_events(
        ("SubmitFare", {}),
        ("FareRegistered", {}),
        ("FareCharged", {}),
        ("CustomerAccountCredited", {}),
        parked,
        ("FareProcessingSucceeded", {}),
    )
    state = derive("fare", "wr_1", after)
    assert (state.status, state.attention) == ("succeeded", None)
