"""Checks of a saga declaration, run as unit tests on every declared saga
(tests/unit/test_declarations.py). Each returns the problems it finds, as sentences that
name the step and the event at fault; `problems` runs them all.

- each event has exactly one producer;
- each failure leads, through compensations, to a terminal event;
- each forward step that has completed is compensated on every failure path after it;
- every consumed message has a producer, and every produced event a consumer (or is a
  terminal or notification event);
- the flow has no cycles;
- and the declaration is well formed: names unique and resolvable, every event carrying
  the saga's id field.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.declaration import Message, Reaction, Saga, Step


def one_producer(saga: Saga) -> list[str]:
    """Each event is emitted by exactly one participant (its producer)."""
    return [
        f"event {event.type_name()} is emitted by several participants ({', '.join(names)}): "
        "each event has exactly one producer"
        for event, names in saga.emitters.items()
        if len(names) > 1
    ]


def failures_reach_an_end(saga: Saga) -> list[str]:
    """Every failure (a forward step's failure event, a compensation's failure event)
    leads, whichever way each compensation turns out, to a terminal event."""
    problems = []
    for _, step in saga.steps.values():
        failed = (step.compensation_failed,) if step.compensation_failed else ()
        for event in (*step.failed, *failed):
            dead_end = _dead_end(saga, event, ())
            if dead_end is not None:
                problems.append(
                    f"failure event {event.type_name()} of step {step.name} does not lead to "
                    f"a terminal event: {dead_end}"
                )
    return problems


def _dead_end(saga: Saga, message: Message, path: tuple[str, ...]) -> str | None:
    """Where the flow from `message` stops short of a terminal event (None if it never does)."""
    name = message.type_name()
    if message in saga.terminal:
        return None
    if name in path:
        return None  # a cycle: `no_cycles` reports it
    path = (*path, name)
    working = [q for _, q in saga.consumers.get(message, ()) if _outcomes(saga, q)]
    if not working:
        return " -> ".join(path) + " (nothing reacts to it)"
    for queue in working:
        stops = [_dead_end(saga, event, path) for event in _outcomes(saga, queue)]
        if all(stop is None for stop in stops):
            return None
    first = next(stop for stop in stops if stop is not None)
    return first


def _outcomes(saga: Saga, queue: Step | Reaction) -> tuple[Message, ...]:
    # Late answers (`also`) and notifications (a step that reports it ran after the saga
    # ended) are not how a saga goes on.
    emitted = queue.outcomes if isinstance(queue, Step) else queue.emits
    return tuple(event for event in emitted if event not in saga.notifications)


def completed_steps_compensated(saga: Saga) -> list[str]:
    """When a forward step fails, every forward step before it (completed by then) is
    compensated along the chain of compensations its failure starts."""
    problems = []
    forward = saga.forward_steps
    compensation_of = {step.compensates: step for step in saga.compensations}
    for index, step in enumerate(forward):
        for event in step.failed:
            reached = _compensations_reached(saga, event)
            for done in forward[:index]:
                undo = compensation_of.get(done.name)
                if undo is None:
                    problems.append(
                        f"when step {step.name} fails ({event.type_name()}), the completed "
                        f"step {done.name} is never compensated: no step compensates it"
                    )
                elif undo not in reached:
                    problems.append(
                        f"when step {step.name} fails ({event.type_name()}), the completed "
                        f"step {done.name} is not compensated: {undo.name} is not reached"
                    )
    return problems


def _compensations_reached(saga: Saga, event: Message) -> list[Step]:
    """The compensations that run, each having succeeded, after `event`."""
    reached: list[Step] = []
    frontier: list[Message] = [event]
    while frontier:
        for step in saga.triggered_steps(frontier.pop()):
            if step.kind == "compensation" and step not in reached:
                reached.append(step)
                frontier.extend(step.succeeded)
    return reached


def producers_and_consumers(saga: Saga) -> list[str]:
    """Every consumed message has a producer; every produced event has a consumer, or is
    declared a terminal or notification event; terminal events are produced."""
    problems = []
    for message, queues in saga.consumers.items():
        if message is not saga.starts_with and message not in saga.emitters:
            where = ", ".join(f"{p}.{q.queue}" for p, q in queues)
            problems.append(
                f"event {message.type_name()} is consumed by {where} but no step produces it"
            )
    ends = {*saga.terminal, *saga.notifications}
    for event in saga.emitters:
        if event not in saga.consumers and event not in ends:
            problems.append(
                f"event {event.type_name()} (produced by {saga.producer(event)}) has no "
                "consumer and is not declared a terminal or notification event"
            )
    for event in saga.terminal:
        if event not in saga.emitters:
            problems.append(f"terminal event {event.type_name()} is never produced")
    return problems


def no_cycles(saga: Saga) -> list[str]:
    """No message leads back to itself through the steps and reactions it triggers."""
    problems: list[str] = []
    done: set[Message] = set()

    def visit(message: Message, path: list[str]) -> None:
        label = message.type_name()
        if label in path:
            cycle = path[path.index(label) :]
            problems.append("cycle: " + " -> ".join([*cycle, label]))
            return
        if message in done:
            return
        for participant, queue in saga.consumers.get(message, ()):
            step = queue.name if isinstance(queue, Step) else f"{participant}.{queue.queue}"
            for event in queue.emits:
                visit(event, [*path, label, f"[{step}]"])
        done.add(message)

    for message in saga.messages():
        visit(message, [])
    return list(dict.fromkeys(problems))


def well_formed(saga: Saga) -> list[str]:
    """Names are unique and resolve; every event carries the saga's id field."""
    problems = []
    names = [step.name for p in saga.participants for step in p.steps]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"step {name} is declared twice")
    for p in saga.participants:
        queues = [q.queue for q in p.queues()]
        for twice in sorted({q for q in queues if queues.count(q) > 1}):
            problems.append(f"queue {p.name}.{twice} is declared twice")
    for step in saga.compensations:
        target = saga.steps.get(step.compensates or "")
        if target is None or target[1].kind != "forward":
            problems.append(
                f"step {step.name} compensates {step.compensates!r}, which is not a forward step"
            )
    for service, queue in saga.queues:
        if isinstance(queue, Reaction) and queue.runs is not None:
            runs = saga.steps.get(queue.runs)
            if runs is None or runs[0] != service or runs[1].kind != "compensation":
                problems.append(
                    f"reaction {service}.{queue.queue} runs {queue.runs!r}, which is not a "
                    f"compensation of {service}"
                )
    for event in saga.events:
        if event.saga_id_field not in (saga.id_field, "correlation_id") or (
            event.saga_id_field not in event.model_fields
        ):
            problems.append(
                f"event {event.type_name()} does not carry the saga id field {saga.id_field}"
            )
    return problems


CHECKS: tuple[Callable[[Saga], list[str]], ...] = (
    well_formed,
    one_producer,
    failures_reach_an_end,
    completed_steps_compensated,
    producers_and_consumers,
    no_cycles,
)


def problems(saga: Saga) -> list[str]:
    """What every check finds wrong with `saga` (empty when it is sound)."""
    return [f"{saga.name} saga: {problem}" for check in CHECKS for problem in check(saga)]
