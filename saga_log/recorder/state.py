"""A saga's state, derived from its events alone (pure: no I/O).

Choreography has no orchestrator to ask where a saga is; its events say it all. Each event
moves the steps it reports on (ProcessOrder, ProcessPayment, ReserveInventory and the
compensations ReleaseInventory, ProcessRefund, UpdateOrderStatus), and the saga's status
follows: running (with its current step), succeeded, failed (compensated), needs
attention (a compensation failed or a message was parked), or stuck (running, but no event
for longer than the saga deadline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from contracts import COMPENSATION_STEPS, FORWARD_STEPS, Step

STATUSES = ("running", "succeeded", "failed", "needs_attention", "stuck")

#: The payload fields `derive` reads (all text); the rest of a payload never changes a state.
STATE_FIELDS = ("error", "step", "cause", "queue", "reason", "compensation_error")

# event type -> what it does to which step
_TRANSITIONS: dict[str, tuple[tuple[str, Step], ...]] = {
    "PlaceOrder": (("start", Step.PROCESS_ORDER),),
    "OrderCreated": (("succeed", Step.PROCESS_ORDER), ("start", Step.PROCESS_PAYMENT)),
    "OrderCreateFailed": (("fail", Step.PROCESS_ORDER), ("start", Step.UPDATE_ORDER_STATUS)),
    "PaymentDebited": (("succeed", Step.PROCESS_PAYMENT), ("start", Step.RESERVE_INVENTORY)),
    "PaymentDebitFailed": (("fail", Step.PROCESS_PAYMENT), ("start", Step.PROCESS_REFUND)),
    "InventoryReserved": (("succeed", Step.RESERVE_INVENTORY),),
    "InventoryReserveFailed": (
        ("fail", Step.RESERVE_INVENTORY),
        ("start", Step.RELEASE_INVENTORY),
    ),
    "InventoryReleased": (("succeed", Step.RELEASE_INVENTORY), ("start", Step.PROCESS_REFUND)),
    "PaymentRefunded": (("succeed", Step.PROCESS_REFUND), ("start", Step.UPDATE_ORDER_STATUS)),
}


@dataclass
class StepState:
    name: str
    kind: str
    status: str = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds() * 1000, 3)

    def as_json(self) -> dict[str, Any]:
        data = _shallow(self)
        data["duration_ms"] = self.duration_ms
        jsonable: dict[str, Any] = _jsonable(data)
        return jsonable


@dataclass
class SagaState:
    saga_id: str
    status: str = "running"
    current_step: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_event_at: datetime | None = None
    cause: str | None = None
    error: str | None = None
    attention: str | None = None
    event_count: int = 0
    steps: list[StepState] = field(default_factory=list)

    @property
    def duration_ms(self) -> float | None:
        end = self.ended_at or self.last_event_at
        if self.started_at is None or end is None:
            return None
        return round((end - self.started_at).total_seconds() * 1000, 3)

    def as_json(self) -> dict[str, Any]:
        data = _shallow(self)
        data["duration_ms"] = self.duration_ms
        data["steps"] = [step.as_json() for step in self.steps]
        jsonable: dict[str, Any] = _jsonable(data)
        return jsonable


def event_time(event: Mapping[str, Any]) -> datetime:
    """When an event happened: its own `occurred_at`, else when it was received (the order
    JSON has no envelope)."""
    occurred = event.get("occurred_at")
    if isinstance(occurred, datetime):
        return occurred
    received: datetime = event["received_at"]
    return received


def in_order(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Events in the order they happened. The order JSON has no time of its own and may be
    received after the events it caused: it counts as happening no later than they did."""
    events = list(events)
    earliest = _earliest(events)
    return sorted(events, key=lambda e: (_when(e, earliest), e.get("occurred_at") is not None))


def _earliest(events: list[Mapping[str, Any]]) -> datetime | None:
    timed = [event_time(e) for e in events if e.get("occurred_at") is not None]
    return min(timed) if timed else None


def _when(event: Mapping[str, Any], earliest: datetime | None) -> datetime:
    at = event_time(event)
    if event.get("occurred_at") is None and earliest is not None:
        return min(at, earliest)
    return at


def derive(saga_id: str, events: Iterable[Mapping[str, Any]]) -> SagaState:
    """The state of saga `saga_id` after `events` (each with type, payload, occurred_at or
    received_at), whatever order they arrive in."""
    ordered = in_order(events)
    earliest = _earliest(ordered)
    steps: dict[str, StepState] = {
        str(name): StepState(str(name), "forward") for name in FORWARD_STEPS
    }
    steps.update({str(name): StepState(str(name), "compensation") for name in COMPENSATION_STEPS})
    saga = SagaState(saga_id=saga_id, event_count=len(ordered))
    terminal: str | None = None
    attention_step: str | None = None
    cancelled = False
    for event in ordered:
        kind = str(event.get("type"))
        payload: Mapping[str, Any] = event.get("payload") or {}
        at = _when(event, earliest)
        saga.started_at = saga.started_at or at
        saga.last_event_at = at
        for action, name in _TRANSITIONS.get(kind, ()):
            _apply(steps[name], action, at, payload.get("error"))
        if kind in _TRANSITIONS and "Failed" in kind:
            saga.cause = saga.cause or payload.get("error")
        if kind == "SagaCompensationFailed":
            failed = str(payload.get("step"))
            if failed in steps:
                _apply(steps[failed], "fail", at, payload.get("error"))
            saga.attention = f"compensation {failed} failed: {payload.get('error')}"
            attention_step = failed
            saga.cause = saga.cause or payload.get("cause")
        elif kind == "MessageParked":
            parked = str(payload.get("step"))
            if parked in steps:
                steps[parked].status = "parked"
                steps[parked].error = payload.get("error")
            saga.attention = f"message parked on {payload.get('queue')}: {payload.get('error')}"
            attention_step = parked
        elif kind == "SagaCancelled":
            cancelled = True
            saga.cause = f"cancelled: {payload.get('reason')}"
        elif kind == "OrderStatusUpdated":
            _apply(steps[Step.UPDATE_ORDER_STATUS], "succeed", at, None)
        elif kind == "OrderRejected":
            terminal = "OrderFailed"
            saga.ended_at = at
            saga.error = "OrderRejected"
            saga.cause = f"rejected: {payload.get('reason')}"
            _apply(steps[Step.PROCESS_ORDER], "fail", at, "OrderRejected")
        elif kind in ("OrderSucceeded", "OrderFailed"):
            terminal = kind
            saga.ended_at = at
            if kind == "OrderFailed":
                saga.error = payload.get("error") or "SagaFailed"
                # A cancellation already said why; OrderFailed repeats only its reason.
                if not cancelled:
                    saga.cause = payload.get("cause") or saga.cause
                update = steps[Step.UPDATE_ORDER_STATUS]
                if update.status == "running" and not payload.get("compensation_error"):
                    _apply(update, "succeed", at, None)
    saga.steps = list(steps.values())
    if attention_step in steps and steps[attention_step].status == "succeeded":
        # Redriven after its cause was fixed: the step has since run to completion.
        saga.attention = None
    if saga.attention:
        saga.status = "needs_attention"
    elif terminal == "OrderSucceeded":
        saga.status = "succeeded"
    elif terminal == "OrderFailed":
        saga.status = "failed"
    running = [step for step in saga.steps if step.status == "running"]
    saga.current_step = running[-1].name if running and terminal is None else None
    return saga


def is_stuck(
    status: str, last_event_at: datetime | None, *, now: datetime, deadline: timedelta
) -> bool:
    """A running saga that has heard nothing for longer than the saga deadline."""
    return status == "running" and last_event_at is not None and now - last_event_at > deadline


def _apply(step: StepState, action: str, at: datetime, error: Any) -> None:
    if action == "start":
        if step.status == "pending":
            step.status, step.started_at = "running", at
    elif action == "succeed":
        step.status, step.ended_at = "succeeded", at
        step.started_at = step.started_at or at
    elif action == "fail":
        step.status, step.ended_at = "failed", at
        step.started_at = step.started_at or at
        step.error = str(error) if error else step.error


def _shallow(state: StepState | SagaState) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every field, a sixth of the history's CPU.
    return {f.name: getattr(state, f.name) for f in fields(state)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
