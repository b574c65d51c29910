"""How a saga is declared: once, as plain typed data, from which everything else is derived.

A `Saga` names the command that starts it, its participants, and for each participant
its steps (forward, or compensation of a named forward step) and its other reactions
(bookkeeping, the saga's end, undoing a step when the saga is cancelled). Each step says
which messages trigger it and which events it may emit: its success, its failure, the
failure of a compensation. The service that emits an event is that event's producer.

From this the project derives the broker topology (`contracts.topology`), which events a
service may publish (the runtime refuses the rest), the saga history's states and flow
drawing, the AsyncAPI documents and diagrams (`make docs`), and the checks of
`contracts.checks`. Nothing here does I/O; each service runs only its own part of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any, Literal

from contracts.codec import InvalidMessage
from contracts.envelope import SAGA_ID_PATTERN, Command, CompensationFailed, Event
from contracts.faults import DemoFault

#: The participant named as the producer of a saga's starting command.
CLIENT = "client"

Message = type[Command] | type[Event]


@dataclass(frozen=True)
class Step:
    """A step of the saga: a unit of work of one participant, run on its own queue.

    A forward step emits `succeeded` or `failed` events; a compensation (`compensates`
    names the forward step it undoes) emits `succeeded` or its `compensation_failed` event,
    which stops the chain. `also` lists other events it may answer with (for a cancelled
    saga, say); `doc` says what it does, for the documents.
    """

    name: str
    queue: str
    on: tuple[Message, ...]
    succeeded: tuple[type[Event], ...] = ()
    failed: tuple[type[Event], ...] = ()
    compensation_failed: type[CompensationFailed] | None = None
    compensates: str | None = None
    also: tuple[type[Event], ...] = ()
    doc: str = ""

    @property
    def kind(self) -> Literal["forward", "compensation"]:
        return "compensation" if self.compensates else "forward"

    @property
    def outcomes(self) -> tuple[type[Event], ...]:
        """The events that end this step: success, failure, failed compensation."""
        failed = (self.compensation_failed,) if self.compensation_failed else ()
        return (*self.succeeded, *self.failed, *failed)

    @property
    def emits(self) -> tuple[type[Event], ...]:
        return (*self.outcomes, *self.also)


@dataclass(frozen=True)
class Reaction:
    """A queue of a participant that runs no step of its own: it keeps books, ends the
    saga, or (with `runs`) undoes a compensation's work when the saga is cancelled."""

    queue: str
    on: tuple[Message, ...]
    emits: tuple[type[Event], ...] = ()
    #: The compensation step this reaction performs (its failure is that step's failure).
    runs: str | None = None
    doc: str = ""


@dataclass(frozen=True)
class Participant:
    """A service taking part in the saga: its steps and reactions, and the events its
    deadline watch may emit (`on_deadline`: cancelling an overdue saga)."""

    name: str
    steps: tuple[Step, ...] = ()
    reactions: tuple[Reaction, ...] = ()
    on_deadline: tuple[type[Event], ...] = ()

    def queues(self) -> Iterator[Step | Reaction]:
        yield from self.steps
        yield from self.reactions


@dataclass(frozen=True)
class Saga:
    """One saga, declared once. See the module docstring."""

    name: str
    title: str
    starts_with: type[Command]
    participants: tuple[Participant, ...]
    #: The terminal events: exactly one of them ends every saga.
    succeeded: type[Event]
    failed: type[Event]
    #: Published when the saga is given up on (no outcome in time).
    cancelled: type[Event] | None = None
    #: The answer to a starting command that is not valid (no saga starts).
    rejected: type[Event] | None = None
    #: Events for subscribers outside the saga: they need no consumer here.
    notifications: tuple[type[Event], ...] = ()
    #: Durable queues for people and outside subscribers, bound to these events' keys.
    notification_queues: Mapping[str, tuple[type[Event], ...]] = field(default_factory=dict)
    #: The demo faults (`SAGA_FAULTS=seed`).
    faults: tuple[DemoFault, ...] = ()
    #: A sentence per participant for the documents (what it does in this saga).
    roles: Mapping[str, str] = field(default_factory=dict)

    # --- what is derived -------------------------------------------------------------

    @property
    def id_field(self) -> str:
        """The field that names the saga (`order_id`, `fareId`)."""
        return self.starts_with.saga_id_field

    @property
    def terminal(self) -> tuple[type[Event], ...]:
        return (self.succeeded, self.failed)

    @cached_property
    def steps(self) -> dict[str, tuple[str, Step]]:
        """Every step by name, with the participant that runs it."""
        return {step.name: (p.name, step) for p in self.participants for step in p.steps}

    def step(self, name: str) -> Step:
        return self.steps[name][1]

    def participant_of(self, step: str) -> str:
        return self.steps[step][0]

    @cached_property
    def queues(self) -> tuple[tuple[str, Step | Reaction], ...]:
        """Every queue of the saga: (participant, step or reaction)."""
        return tuple((p.name, queue) for p in self.participants for queue in p.queues())

    @cached_property
    def emitters(self) -> dict[type[Event], tuple[str, ...]]:
        """Each event and the participants that may emit it (`checks` wants exactly one)."""
        found: dict[type[Event], list[str]] = {}
        for participant, queue in self.queues:
            emitted = queue.emits
            for event in emitted:
                found.setdefault(event, []).append(participant)
        for p in self.participants:
            for event in p.on_deadline:
                found.setdefault(event, []).append(p.name)
        return {event: tuple(dict.fromkeys(names)) for event, names in found.items()}

    def producer(self, message: Message) -> str:
        """The one service that publishes `message` (`client` for the starting command)."""
        if message is self.starts_with:
            return CLIENT
        return self.emitters[message][0]  # type: ignore[index]

    @cached_property
    def events(self) -> tuple[type[Event], ...]:
        return tuple(self.emitters)

    def produced_by(self, service: str) -> tuple[type[Event], ...]:
        return tuple(event for event, names in self.emitters.items() if service in names)

    @cached_property
    def consumers(self) -> dict[Message, tuple[tuple[str, Step | Reaction], ...]]:
        """Each consumed message and the queues (participant, step or reaction) it triggers."""
        found: dict[Message, list[tuple[str, Step | Reaction]]] = {}
        for participant, queue in self.queues:
            for message in queue.on:
                found.setdefault(message, []).append((participant, queue))
        return {message: tuple(queues) for message, queues in found.items()}

    def triggered_steps(self, message: Message) -> tuple[Step, ...]:
        """The steps (not reactions) that `message` starts."""
        return tuple(q for _, q in self.consumers.get(message, ()) if isinstance(q, Step))

    @cached_property
    def forward_steps(self) -> tuple[Step, ...]:
        """The forward steps in the order a successful saga runs them: from the starting
        command, through each step's success events."""
        ordered: list[Step] = []
        frontier: list[Message] = [self.starts_with]
        while frontier:
            message = frontier.pop(0)
            for step in self.triggered_steps(message):
                if step.kind == "forward" and step not in ordered:
                    ordered.append(step)
                    frontier.extend(step.succeeded)
        return tuple(ordered)

    @cached_property
    def compensations(self) -> tuple[Step, ...]:
        return tuple(step for _, step in self.steps.values() if step.kind == "compensation")

    @cached_property
    def compensation_failures(self) -> dict[type[Event], Step]:
        """Each compensation-failed event and the compensation it reports on."""
        return {
            step.compensation_failed: step
            for _, step in self.steps.values()
            if step.compensation_failed is not None
        }

    def messages(self) -> tuple[Message, ...]:
        return (self.starts_with, *self.events)

    def reject(self, body: bytes, error: InvalidMessage) -> Event | None:
        """The answer to a starting command that is not valid (`rejected`, naming the
        fields at fault), when it names a saga id that can be answered to; without one
        nobody could be told, and the dead-letter queue keeps it."""
        if self.rejected is None:
            return None
        command = self.starts_with.type_name()
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get("type", command) != command:
            return None  # not a malformed start but another message: nobody to answer
        saga_id = data.get(self.id_field)
        if not isinstance(saga_id, str) or not re.fullmatch(SAGA_ID_PATTERN, saga_id):
            return None
        return self.rejected.caused_by(
            f"{command}:{saga_id}:rejected:{hashlib.sha256(body).hexdigest()[:16]}",
            producer=self.producer(self.rejected),
            saga_id=saga_id,
            reason=error.reason,
            fields=error.fields,
        )

    def flow(self) -> dict[str, Any]:
        """The saga's shape for drawing: forward steps in order, each compensation beneath
        the step it undoes, and the edges a saga can take between them."""
        edges: list[dict[str, str]] = []
        forward = self.forward_steps
        if forward:
            edges.append({"from": "start", "to": forward[0].name, "kind": "forward"})
        for before, after in pairwise(forward):
            edges.append({"from": before.name, "to": after.name, "kind": "forward"})
        if forward:
            edges.append({"from": forward[-1].name, "to": "succeeded", "kind": "forward"})
        for step in forward:
            for event in step.failed:
                for target in self.triggered_steps(event):
                    edges.append({"from": step.name, "to": target.name, "kind": "fails"})
        for step in self.compensations:
            for event in step.succeeded:
                if event is self.failed:
                    edges.append({"from": step.name, "to": "failed", "kind": "compensates"})
                for target in self.triggered_steps(event):
                    if target.kind == "compensation":
                        edges.append({"from": step.name, "to": target.name, "kind": "compensates"})
        return {
            "saga_type": self.name,
            "title": self.title,
            "id_field": self.id_field,
            "forward": [self._drawn(step) for step in forward],
            "compensations": [self._drawn(step) for step in self.compensations],
            "edges": edges,
            "terminal": {
                "succeeded": self.succeeded.type_name(),
                "failed": self.failed.type_name(),
            },
            "cancelled": self.cancelled.type_name() if self.cancelled else None,
            "rejected": self.rejected.type_name() if self.rejected else None,
        }

    def _drawn(self, step: Step) -> dict[str, Any]:
        return {
            "name": step.name,
            "service": self.participant_of(step.name),
            "kind": step.kind,
            "compensates": step.compensates,
            "on": [message.type_name() for message in step.on],
            "expects": [event.type_name() for event in step.outcomes],
            "succeeded": [event.type_name() for event in step.succeeded],
            "failed": [event.type_name() for event in step.failed],
            "compensation_failed": (
                step.compensation_failed.type_name() if step.compensation_failed else None
            ),
        }
