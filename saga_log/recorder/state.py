"""A saga's state, derived from its events and its saga's declaration alone (pure: no I/O).

Choreography has no orchestrator to ask where a saga is; its events say it all, read
through the declaration (`contracts.sagas`): an event that triggers a step starts it, a
step's success or failure event ends it, a compensation's failure event fails it and needs
attention. The saga's status follows: running (with its current step and the events it
expects next), succeeded, failed (compensated), needs attention (a compensation failed or
a message was parked), or stuck (running, but no event for longer than the saga deadline).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from contracts import MessageParked, Reaction, Saga, saga_named

STATUSES = ("running", "succeeded", "failed", "needs_attention", "stuck")

#: The payload fields `derive` reads (all text); the rest of a payload never changes a state.
STATE_FIELDS = ("error", "step", "cause", "queue", "reason")


@dataclass(frozen=True)
class Reading:
    """How the history reads one saga's events: derived from its declaration."""

    saga: str
    start: str
    #: event type -> what it does to which steps: (("start" | "succeed" | "fail", step), ...)
    moves: Mapping[str, tuple[tuple[str, str], ...]]
    #: compensation-failed event type -> the compensation it reports on
    compensation_failed: Mapping[str, str]
    failures: frozenset[str]
    succeeded: str
    failed: str
    cancelled: str | None
    rejected: str | None
    #: the steps in drawing order: forward steps, then compensations (last undone first)
    steps: tuple[tuple[str, str], ...]
    #: step -> the event types that end it
    expects: Mapping[str, tuple[str, ...]]
    #: queue (`<service>.<queue>`) -> the event types it emits, for every step and reaction
    emits: Mapping[str, tuple[str, ...]]
    #: message type -> what the reactions it triggers emit (a saga waiting on a reaction,
    #: such as its conclusion, waits for those)
    reaction_outcomes: Mapping[str, tuple[str, ...]]


@functools.cache
def reading(saga_type: str) -> Reading:
    """How to read a saga of type `saga_type` (KeyError if none is declared)."""
    return _reading(saga_named(saga_type))


def _reading(saga: Saga) -> Reading:
    moves: dict[str, list[tuple[str, str]]] = {}
    for _, step in saga.steps.values():
        for message in step.on:
            moves.setdefault(message.type_name(), []).append(("start", step.name))
        for event in step.succeeded:
            moves.setdefault(event.type_name(), []).append(("succeed", step.name))
        for event in step.failed:
            moves.setdefault(event.type_name(), []).append(("fail", step.name))
    forward = saga.forward_steps
    order = {step.name: index for index, step in enumerate(forward)}
    undo = sorted(saga.compensations, key=lambda s: -order.get(s.compensates or "", 0))
    return Reading(
        saga=saga.name,
        start=saga.starts_with.type_name(),
        moves={kind: tuple(found) for kind, found in moves.items()},
        compensation_failed={e.type_name(): s.name for e, s in saga.compensation_failures.items()},
        failures=frozenset(e.type_name() for _, s in saga.steps.values() for e in s.failed),
        succeeded=saga.succeeded.type_name(),
        failed=saga.failed.type_name(),
        cancelled=saga.cancelled.type_name() if saga.cancelled else None,
        rejected=saga.rejected.type_name() if saga.rejected else None,
        steps=(
            *((s.name, "forward") for s in forward),
            *((s.name, "compensation") for s in undo),
        ),
        expects={
            name: tuple(e.type_name() for e in step.outcomes)
            for name, (_, step) in saga.steps.items()
        },
        emits={
            f"{service}.{queue.queue}": tuple(e.type_name() for e in queue.emits)
            for service, queue in saga.queues
        },
        reaction_outcomes=_reaction_outcomes(saga),
    )


def _reaction_outcomes(saga: Saga) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for _, queue in saga.queues:
        if isinstance(queue, Reaction) and queue.emits and queue.runs is None:
            for message in queue.on:
                found.setdefault(message.type_name(), []).extend(e.type_name() for e in queue.emits)
    return {kind: tuple(dict.fromkeys(types)) for kind, types in found.items()}


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
    saga_type: str
    status: str = "running"
    current_step: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_event_at: datetime | None = None
    cause: str | None = None
    error: str | None = None
    attention: str | None = None
    event_count: int = 0
    #: The event types that would move the saga on (what a stuck saga waits for).
    expecting: list[str] = field(default_factory=list)
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
    """When an event happened: its own `occurred_at`, else when it was received (a
    starting command has no envelope)."""
    occurred = event.get("occurred_at")
    if isinstance(occurred, datetime):
        return occurred
    received: datetime = event["received_at"]
    return received


def in_order(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Events in the order they happened. A starting command has no time of its own and may
    be received after the events it caused: it counts as happening no later than they did."""
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


@dataclass
class _Derivation:
    """The working state of one `derive` call."""

    how: Reading
    saga: SagaState
    steps: dict[str, StepState]
    terminal: str | None = None
    attention_step: str | None = None
    #: The queue of a parked message that runs no step, and whether what it would emit has
    #: since been seen (it was redriven and ran).
    parked_queue: str | None = None
    parked_queue_ran: bool = False
    cancelled: bool = False
    last: str | None = None


def derive(saga_type: str, saga_id: str, events: Iterable[Mapping[str, Any]]) -> SagaState:
    """The state of saga `saga_id` of type `saga_type` after `events` (each with type,
    payload, occurred_at or received_at), whatever order they arrive in."""
    how = reading(saga_type)
    ordered = in_order(events)
    earliest = _earliest(ordered)
    work = _Derivation(
        how=how,
        saga=SagaState(saga_id=saga_id, saga_type=saga_type, event_count=len(ordered)),
        steps={name: StepState(name, kind) for name, kind in how.steps},
    )
    for event in ordered:
        at = _when(event, earliest)
        work.saga.started_at = work.saga.started_at or at
        work.saga.last_event_at = at
        _read(work, str(event.get("type")), event.get("payload") or {}, at)
    return _conclude(work)


def _read(work: _Derivation, kind: str, payload: Mapping[str, Any], at: datetime) -> None:
    """What one event does to the steps and the saga."""
    how, saga, steps = work.how, work.saga, work.steps
    work.last = kind
    if work.parked_queue and kind in how.emits.get(work.parked_queue, ()):
        work.parked_queue_ran = True
    for action, name in how.moves.get(kind, ()):
        if action == "succeed" and kind == how.failed and steps[name].status != "running":
            continue  # the terminal failure ends this step only while it runs
        _apply(steps[name], action, at, payload.get("error"))
    if kind in how.failures:
        saga.cause = saga.cause or payload.get("error")
    if kind in how.compensation_failed:
        failed = how.compensation_failed[kind]
        _apply(steps[failed], "fail", at, payload.get("error"))
        saga.attention = f"compensation {failed} failed: {payload.get('error')}"
        work.attention_step = failed
        saga.cause = saga.cause or payload.get("cause")
    elif kind == MessageParked.type_name():
        parked = str(payload.get("step"))
        if parked in steps:
            steps[parked].status = "parked"
            steps[parked].error = payload.get("error")
        saga.attention = f"message parked on {payload.get('queue')}: {payload.get('error')}"
        work.attention_step = parked
        work.parked_queue, work.parked_queue_ran = str(payload.get("queue")), False
    elif kind == how.cancelled:
        work.cancelled = True
        saga.cause = f"cancelled: {payload.get('reason')}"
    elif kind == how.rejected and work.terminal is None and _not_started(work):
        work.terminal, saga.ended_at, saga.error = how.failed, at, kind
        saga.cause = f"rejected: {payload.get('reason')}"
        _apply(steps[how.steps[0][0]], "fail", at, kind)
    elif kind in (how.succeeded, how.failed):
        work.terminal, saga.ended_at = kind, at
        if kind == how.failed:
            saga.error = payload.get("error") or kind
            if not work.cancelled:  # a cancellation already said why
                saga.cause = payload.get("cause") or saga.cause


def _not_started(work: _Derivation) -> bool:
    """A rejection counts while the saga's first step has not succeeded: a rejected
    resubmission of a saga that runs (or ran) is no news about that saga."""
    return work.steps[work.how.steps[0][0]].status != "succeeded"


def _conclude(work: _Derivation) -> SagaState:
    saga, steps = work.saga, work.steps
    saga.steps = list(steps.values())
    if work.attention_step in steps and steps[work.attention_step].status == "succeeded":
        saga.attention = None  # redriven after its cause was fixed: the step has since run
    elif work.parked_queue is not None and work.attention_step not in steps:
        # Parked on a queue that runs no step: redriven once what it emits is seen (for a
        # queue that emits nothing, once the saga has ended all the same).
        emits = work.how.emits.get(work.parked_queue, ())
        if work.parked_queue_ran or (not emits and work.terminal is not None):
            saga.attention = None
    if saga.attention:
        saga.status = "needs_attention"
    elif work.terminal == work.how.succeeded:
        saga.status = "succeeded"
    elif work.terminal == work.how.failed:
        saga.status = "failed"
    running = [step for step in saga.steps if step.status == "running"]
    if running and work.terminal is None:
        saga.current_step = running[-1].name
        saga.expecting = [e for step in running for e in work.how.expects.get(step.name, ())]
    elif work.terminal is None and work.last is not None:
        # Between steps, waiting on a reaction (the saga's conclusion, say).
        saga.expecting = list(work.how.reaction_outcomes.get(work.last, ()))
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
