"""Who may do what on the broker, derived from the saga declarations.

One broker user per service (named after its participant), one for clients that start
sagas (`client`) and one for operators (`operator`), all with the same optional prefix
(tests give each run users of its own). Each user's permissions on the vhost (configure,
write, read: regular expressions on exchange and queue names) and its topic permissions on
`saga.events` (regular expressions on routing keys) allow exactly what it needs:

- a service configures, binds and reads only its own queues (`<service>.*`), publishes
  only the routing keys of the events the declarations say it produces, and moves its own
  messages to its retry, parking and dead-letter queues through its own holding exchange
  (`<service>.holding`);
- a client publishes only the saga-starting routing keys, and may watch events through
  queues of its own (`watch.*`, `WATCH_QUEUE_PREFIX`) and read the notification queues;
- an operator reads the parking and dead-letter queues and sends messages back through
  the services' holding exchanges (redrive, replay); nobody else may publish into them.

The broker refuses a publish to `saga.events` under another routing key, and any publish
whose `user_id` is not the connection's user. It cannot stop a user from routing other
keys in indirectly (a queue of its own that dead-letters into `saga.events`, an
exchange-to-exchange binding), so these permissions are the first gate, not the
guarantee: every consumer checks `user_id` against the declared producer
(`saga_log.runtime.trust`), and a message so routed keeps its sender's `user_id`. A policy
(tools.broker) bounds the clients' watch queues, so that none can fill the broker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from contracts.declaration import CLIENT
from contracts.sagas import SAGAS
from contracts.topology import (
    CONSUMERS,
    EXCHANGE,
    HISTORY,
    NOTIFICATION_QUEUES,
    holding_exchange,
    published_by,
)

OPERATOR = "operator"
#: The names of the queues through which clients watch events (exclusive, self-deleting).
WATCH_QUEUE_PREFIX = "watch."


def services() -> tuple[str, ...]:
    """Every service with a broker user: the participants of every saga, and the history."""
    names = [p.name for saga in SAGAS for p in saga.participants]
    return (*dict.fromkeys(names), HISTORY.service)


def starting_routing_keys() -> tuple[str, ...]:
    return tuple(saga.starts_with.routing_key for saga in SAGAS)


@dataclass(frozen=True)
class BrokerUser:
    """A broker user's role (`payment`, `client`, `operator`) and what it may do."""

    role: str
    tags: tuple[str, ...]
    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str

    def name(self, prefix: str = "") -> str:
        return f"{prefix}{self.role}"


def _any_of(names: Iterable[str]) -> str:
    """A regular expression matching exactly these names."""
    escaped = sorted({re.escape(name) for name in names})
    return f"^({'|'.join(escaped)})$" if escaped else "^$"


def _service_user(service: str) -> BrokerUser:
    own = f"^{re.escape(service)}\\..*"
    mine = f"^({re.escape(EXCHANGE)}|{re.escape(service)}\\..*)$"
    publishes = [event.routing_key for event in published_by(service)]
    # The runtime's own events carry the service in their routing key.
    publishes = [
        f"{service}.message_parked" if key == "saga.message_parked" else key for key in publishes
    ]
    consumed = {key for c in CONSUMERS if c.service == service for key in c.routing_keys}
    return BrokerUser(
        role=service,
        tags=(),
        configure=own,
        write=mine,
        read=mine,
        topic_write=_any_of(publishes) if service != HISTORY.service else "^$",
        topic_read=".*" if "#" in consumed else _any_of(consumed),
    )


def broker_users() -> tuple[BrokerUser, ...]:
    """Every broker user of the system and its permissions (see the module docstring)."""
    watch = re.escape(WATCH_QUEUE_PREFIX)
    client = BrokerUser(
        role=CLIENT,
        tags=("management",),
        configure=f"^{watch}.*",
        write=f"^({re.escape(EXCHANGE)}|{watch}.*)$",
        read=f"^({re.escape(EXCHANGE)}|{watch}.*|{'|'.join(map(re.escape, NOTIFICATION_QUEUES))})$",
        topic_write=_any_of(starting_routing_keys()),
        topic_read=".*",
    )
    operator = BrokerUser(
        role=OPERATOR,
        tags=("monitoring",),
        configure="^$",
        write=_any_of(holding_exchange(s) for s in services()),
        read="^.*\\.(parked|dlq)$",
        topic_write="^$",
        topic_read="^$",
    )
    return (*(_service_user(s) for s in services()), client, operator)
