"""The broker topology, derived from the saga declarations: declared the same way by every
service, so that no event is published before the queues that must receive it exist,
whatever order the services start in.

One durable topic exchange, `saga.events`, carries every message. Each step and reaction of
a declared saga reads its own durable quorum queue, named `<service>.<queue>`, bound by the
routing keys of the messages that trigger it. Beside each work queue stand:

- `<queue>.retry.<tier>`: classic queues where a message waits out its retry delay
  (per-message TTL) before it is dead-lettered back to the work queue;
- `<queue>.parked`: messages whose retry budget is spent, kept for an operator;
- `<queue>.dlq`: messages that can never succeed (bad input), with the reason in headers.

A service reaches these, and operators reach its work queues again (redrive, replay),
through the service's own direct exchange `<service>.holding`, each queue bound by its own
name: nobody else may publish into them (`contracts.access`).

A saga's notification queues (the fare saga's `WildRydes...Queue`) are durable quorum
queues bound to the events they collect, for people and outside subscribers to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.declaration import Reaction, Saga, Step
from contracts.envelope import CompensationFailed, Event, MessageParked
from contracts.recorded import SagaMessage
from contracts.sagas import SAGAS

EXCHANGE = "saga.events"

#: How many delay tiers stand behind each work queue (the samples retry 3 times).
RETRY_TIERS = 3

#: Quorum queues count deliveries; past this a message is dead-lettered rather than looping.
#: Set explicitly: RabbitMQ 3.10 has no default, 4.x defaults to 20.
DELIVERY_LIMIT = 20

#: The events the runtime of every service may publish on its own (not a saga's).
RUNTIME_EVENTS: tuple[type[Event], ...] = (MessageParked,)


@dataclass(frozen=True)
class Consumer:
    """A queue read by one handler of one service, and the messages bound to it."""

    service: str
    handler: str
    messages: tuple[type[Any], ...]
    #: The saga this queue belongs to ("*" for the history, which reads them all).
    saga: str
    #: The saga step this consumer runs, if it runs one.
    step: str | None = None
    #: Set when the step is a compensation: the event that says it failed.
    compensation_failed: type[CompensationFailed] | None = None
    #: The events a handler of this queue may publish (the runtime refuses others).
    emits: frozenset[type[Event]] = frozenset()
    #: Routing keys to bind instead of the messages' own (the recorder binds "#").
    bindings: tuple[str, ...] | None = None

    @property
    def queue(self) -> str:
        return f"{self.service}.{self.handler}"

    @property
    def routing_keys(self) -> tuple[str, ...]:
        if self.bindings is not None:
            return self.bindings
        return tuple(message.routing_key for message in self.messages)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @property
    def parking_queue(self) -> str:
        return f"{self.queue}.parked"

    def retry_queue(self, attempt: int) -> str:
        """The delay queue for retry number `attempt` (1-based); later attempts share the last."""
        return f"{self.queue}.retry.{min(max(attempt, 1), RETRY_TIERS)}"


def consumers_of(saga: Saga) -> tuple[Consumer, ...]:
    """The queues of every step and reaction of `saga`."""
    return tuple(_consumer(saga, participant, queue) for participant, queue in saga.queues)


def _consumer(saga: Saga, participant: str, queue: Step | Reaction) -> Consumer:
    step = queue.name if isinstance(queue, Step) else queue.runs
    compensation = saga.step(step) if step else None
    failed = compensation.compensation_failed if compensation is not None else None
    emits = set(queue.emits)
    if failed is not None:
        emits.add(failed)  # the runtime publishes it for a compensation out of retries
    return Consumer(
        service=participant,
        handler=queue.queue,
        messages=queue.on,
        saga=saga.name,
        step=step,
        compensation_failed=failed,
        emits=frozenset(emits),
    )


#: The saga history reads every message on the exchange, whatever its saga and type.
HISTORY = Consumer("saga_log", "record", (SagaMessage,), saga="*", bindings=("#",))

CONSUMERS: tuple[Consumer, ...] = (
    *(consumer for saga in SAGAS for consumer in consumers_of(saga)),
    HISTORY,
)

#: Durable queues for outside subscribers, and the routing keys bound to each.
NOTIFICATION_QUEUES: dict[str, tuple[str, ...]] = {
    name: tuple(event.routing_key for event in events)
    for saga in SAGAS
    for name, events in saga.notification_queues.items()
}


def holding_exchange(service: str) -> str:
    """The direct exchange through which `service` (and operators) reach its queues."""
    return f"{service}.holding"


@dataclass(frozen=True)
class QueueSpec:
    """A queue to declare: its name, its arguments and its bindings (exchange, key)."""

    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...]


def queues_of(consumer: Consumer) -> tuple[QueueSpec, ...]:
    """A consumer's work queue and holding queues, with their bindings."""
    holding = holding_exchange(consumer.service)
    work = QueueSpec(
        consumer.queue,
        work_queue_arguments(consumer),
        (*((EXCHANGE, key) for key in consumer.routing_keys), (holding, consumer.queue)),
    )
    retries = tuple(
        QueueSpec(name, retry_queue_arguments(consumer), ((holding, name),))
        for name in (consumer.retry_queue(tier) for tier in range(1, RETRY_TIERS + 1))
    )
    held = tuple(
        QueueSpec(name, dict(HOLDING_QUEUE_ARGUMENTS), ((holding, name),))
        for name in (consumer.parking_queue, consumer.dead_letter_queue)
    )
    return (work, *retries, *held)


def notification_queues() -> tuple[QueueSpec, ...]:
    return tuple(
        QueueSpec(name, dict(HOLDING_QUEUE_ARGUMENTS), tuple((EXCHANGE, key) for key in keys))
        for name, keys in NOTIFICATION_QUEUES.items()
    )


def consumer(service: str, handler: str) -> Consumer:
    """The consumer named `<service>.<handler>`."""
    for candidate in CONSUMERS:
        if candidate.service == service and candidate.handler == handler:
            return candidate
    raise KeyError(f"no queue {service}.{handler} is declared by any saga (contracts.sagas)")


def published_by(service: str) -> tuple[type[Event], ...]:
    """Every event `service` may publish, in every saga it takes part in (and the runtime's)."""
    events = [event for saga in SAGAS for event in saga.produced_by(service)]
    return tuple(dict.fromkeys([*events, *RUNTIME_EVENTS]))


def work_queue_arguments(consumer: Consumer) -> dict[str, Any]:
    """Arguments of a work queue; identical in every declaration or RabbitMQ refuses it."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": consumer.dead_letter_queue,
    }


def retry_queue_arguments(consumer: Consumer) -> dict[str, Any]:
    """Arguments of a retry tier queue: expired messages go back to the work queue."""
    return {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": consumer.queue,
    }


HOLDING_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
