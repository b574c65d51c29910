"""The checks of every declared saga, and each check firing on a deliberately broken
declaration with a message that names the step and event at fault."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from contracts import (
    ORDER,
    SAGAS,
    FareCharged,
    InventoryReserveFailed,
    OrderCreateFailed,
    OrderFailed,
    OrderStatusUpdated,
    PaymentDebited,
    PaymentDebitFailed,
    PaymentRefundFailed,
    Reaction,
    Saga,
    checks,
)
from contracts.topology import consumers_of


@pytest.mark.parametrize("saga", SAGAS, ids=lambda saga: saga.name)
def test_every_declared_saga_passes_every_check(saga: Saga) -> None:
    assert checks.problems(saga) == []


def with_step(saga: Saga, name: str, **changes: Any) -> Saga:
    participants = tuple(
        dataclasses.replace(
            p,
            steps=tuple(
                dataclasses.replace(s, **changes) if s.name == name else s for s in p.steps
            ),
        )
        for p in saga.participants
    )
    return dataclasses.replace(saga, participants=participants)


def with_reaction(saga: Saga, participant: str, reaction: Reaction) -> Saga:
    participants = tuple(
        dataclasses.replace(p, reactions=(*p.reactions, reaction)) if p.name == participant else p
        for p in saga.participants
    )
    return dataclasses.replace(saga, participants=participants)


def test_an_event_with_two_producers_is_named() -> None:
    broken = with_reaction(
        ORDER, "inventory", Reaction("debit_too", on=(OrderCreateFailed,), emits=(PaymentDebited,))
    )
    assert checks.one_producer(broken) == [
        "event PaymentDebited is emitted by several participants (payment, inventory): "
        "each event has exactly one producer"
    ]


def test_a_failure_that_leads_nowhere_names_the_step_and_event() -> None:
    # Nobody concludes the saga when the refund fails.
    broken = with_reaction(
        dataclasses.replace(
            ORDER,
            participants=tuple(
                dataclasses.replace(
                    p,
                    reactions=tuple(r for r in p.reactions if r.queue != "conclude_saga"),
                )
                for p in ORDER.participants
            ),
        ),
        "order",
        Reaction("conclude_saga", on=(InventoryReserveFailed,), emits=()),
    )
    found = checks.failures_reach_an_end(broken)
    assert (
        "failure event PaymentRefundFailed of step ProcessRefund does not lead to a terminal "
        "event: PaymentRefundFailed (nothing reacts to it)" in found
    )


def test_a_completed_step_left_uncompensated_is_named() -> None:
    # The refund no longer follows a released reservation.
    broken = with_step(ORDER, "ProcessRefund", on=(PaymentDebitFailed,))
    assert checks.completed_steps_compensated(broken) == [
        "when step ReserveInventory fails (InventoryReserveFailed), the completed step "
        "ProcessOrder is not compensated: UpdateOrderStatus is not reached",
        "when step ReserveInventory fails (InventoryReserveFailed), the completed step "
        "ProcessPayment is not compensated: ProcessRefund is not reached",
    ]


def test_a_forward_step_with_no_compensation_is_named() -> None:
    broken = with_step(ORDER, "ProcessRefund", compensates="ProcessOrder")
    found = checks.completed_steps_compensated(broken)
    assert (
        "when step ReserveInventory fails (InventoryReserveFailed), the completed step "
        "ProcessPayment is never compensated: no step compensates it" in found
    )


def test_an_event_nobody_produces_and_one_nobody_consumes_are_named() -> None:
    broken = dataclasses.replace(
        with_reaction(ORDER, "order", Reaction("stray", on=(FareCharged,))),
        notifications=tuple(e for e in ORDER.notifications if e is not OrderStatusUpdated),
    )
    assert checks.producers_and_consumers(broken) == [
        "event FareCharged is consumed by order.stray but no step produces it",
        "event OrderStatusUpdated (produced by order) has no consumer and is not declared a "
        "terminal or notification event",
    ]


def test_a_cycle_is_named_with_its_steps() -> None:
    broken = with_reaction(
        ORDER, "order", Reaction("retry_order", on=(OrderFailed,), emits=(OrderCreateFailed,))
    )
    assert (
        "cycle: OrderFailed -> [order.retry_order] -> OrderCreateFailed -> [UpdateOrderStatus] "
        "-> OrderFailed"
    ) in checks.no_cycles(broken)


def test_malformed_declarations_are_named() -> None:
    broken = with_reaction(
        with_step(ORDER, "ReleaseInventory", compensates="Teleport"),
        "payment",
        Reaction("cancel_wrongly", on=(OrderFailed,), runs="ReleaseInventory"),
    )
    found = checks.well_formed(broken)
    assert "step ReleaseInventory compensates 'Teleport', which is not a forward step" in found
    assert (
        "reaction payment.cancel_wrongly runs 'ReleaseInventory', which is not a compensation "
        "of payment" in found
    )


def test_a_compensation_out_of_retries_reports_through_its_own_event() -> None:
    refund = next(c for c in consumers_of(ORDER) if c.queue == "payment.refund_payment")
    cancel = next(c for c in consumers_of(ORDER) if c.queue == "payment.cancel_payment")
    assert refund.compensation_failed is PaymentRefundFailed
    assert cancel.compensation_failed is PaymentRefundFailed
    assert PaymentRefundFailed in refund.emits and PaymentRefundFailed in cancel.emits


def test_the_forward_steps_follow_the_success_path() -> None:
    assert [s.name for s in ORDER.forward_steps] == [
        "ProcessOrder",
        "ProcessPayment",
        "ReserveInventory",
    ]
    fare = next(saga for saga in SAGAS if saga.name == "fare")
    assert [s.name for s in fare.forward_steps] == [
        "RegisterFare",
        "ChargeFare",
        "CreditCustomerAccount",
    ]
