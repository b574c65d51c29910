"""Chaos: several hundred sagas of both types (orders and fares, mixed) at once while
service processes are SIGKILLed and started again, processes crash by themselves at the
dangerous points (fault plan), the broker restarts and PostgreSQL drops every connection.
Afterwards every saga has concluded as its scenario says, nothing was lost and nothing was
done twice.

The broker is a RabbitMQ container of this test's own (it is restarted, so it is never
the machine's); PostgreSQL is the local one, with fresh databases. Needs a Docker engine:
without one the test is skipped, with the reason.

Tuning, from the environment:

- `CHAOS_SAGAS` (300): sagas started, a seeded random mix: a quarter of them fares (the
  lab's five scenarios), the rest orders (the sample's seven);
- `CHAOS_SECONDS` (40): how long the chaos lasts; the orders are placed in waves, each
  just before a one-off event (connection cut, broker restarts), so that every kind of
  chaos meets many sagas in flight (the timeline says how many);
- `CHAOS_SETTLE_SECONDS` (120): how long the sagas may take to conclude afterwards;
- `CHAOS_SEED` (random, printed): replays a run's scenario mix and the monkey's choices
  (not the timing, nor the fault plan's dice);
- `CHAOS_CRASH_PROBABILITY` (0.01): the fault plan's chance to crash at each point.

The figures are printed and written to `test-artifacts/chaos.json`, with a timeline of
the chaos and the log file of every process.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import aiormq
import asyncpg
import pytest

from contracts import CONSUMERS, EXCHANGE, FARE, ORDER, RETRY_TIERS, Saga
from contracts.samples import (
    EXPECTED,
    FARE_EXPECTED,
    FARE_SCENARIOS,
    SCENARIOS,
    fresh_fare_id,
    fresh_order_id,
    sample_fare,
    sample_order,
)
from saga_log.ops.client import TERMINAL_TYPES
from saga_log.ops.operator import DEAD, PARKED, HeldMessage, list_held
from tests.e2e.test_containers import docker_engine_problem
from tests.support import ARTIFACTS, Stack, drop_databases, fetch, make_stack, provisioned
from tests.support import Broker as Access

pytestmark = pytest.mark.docker


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


SAGAS = int(_env("CHAOS_SAGAS", 300))
CHAOS_SECONDS = _env("CHAOS_SECONDS", 40)
SETTLE_SECONDS = _env("CHAOS_SETTLE_SECONDS", 120)
CRASH_PROBABILITY = _env("CHAOS_CRASH_PROBABILITY", 0.01)

#: Every process of the stack, by name, and the service it runs. The second replicas make
#: two processes of one service compete for the same queues, and so for the same sagas.
#: The saga history (saga_log) runs too: its queue `saga_log.record` sees every message on
#: the exchange, so it drains, and its database shows what went over the bus (including
#: what the runtime publishes directly rather than through an outbox).
PROCESSES = {
    "order": "order",
    "payment": "payment",
    "payment-2": "payment",
    "inventory": "inventory",
    "inventory-2": "inventory",
    "fare": "fare",
    "accounting": "accounting",
    "saga_log": "saga_log",
}
#: These also crash by themselves, where a crash hurts most: committed but not acked (and
#: not relayed yet), and published but not stamped as published.
CRASHING = ("order", "payment-2", "inventory-2", "fare")
#: One saga in FARE_SHARE is a fare.
FARE_SHARE = 4
CRASH_PLAN = json.dumps(
    {
        "crash": [
            {"at": "after_commit", "probability": CRASH_PROBABILITY},
            {"at": "relay_after_publish", "probability": CRASH_PROBABILITY},
        ]
    }
)
#: The exit status of a crash the fault plan asked for (`os._exit(137)`); a process the
#: test killed shows -9 instead.
FAULT_PLAN_EXIT = 137

#: The one-off events of the chaos window, at these fractions of it: the connection cut
#: first, while every process is up and holds connections; then two broker restarts.
CUT_AT = 0.15
BROKER_RESTARTS_AT = (0.3, 0.65)
#: When the waves of orders are placed (each wave all at once, the orders split evenly):
#: shortly before each one-off event (`rabbitmqctl stop_app` takes a few seconds to stop
#: the broker), so that each meets a crowd of sagas in flight. The kills go on throughout.
WAVES = (0.1, 0.27, 0.6)
#: Every TRICKLE-th order is kept out of the waves and placed on its own, evenly over the
#: chaos window: some of them while the broker is down, so that placing them takes retries.
TRICKLE = 10

#: Where the message of a failed compensation waits, by scenario (parked by design: the
#: chain stops there, and an operator redrives it once the cause is fixed).
PARKED_BY_DESIGN = {
    "11": ("order.update_order_status.parked", "ErrUpdateOrderStatus"),
    "22": ("payment.refund_payment.parked", "ErrProcessRefund"),
    "33": ("inventory.release_inventory.parked", "ErrReleaseInventory"),
    "fail_refund": ("payment.refund_fare.parked", "RefundException"),
}

#: A step timeout far longer than any kill or restart: the order service's deadline
#: watcher cancels no saga during the chaos, so no saga takes the cancellation path (see
#: `check_outboxes` for why that matters). A quorum-queue broker restarting under this
#: load has been seen to take 85 s to come back on this 2-core machine.
STEP_TIMEOUT = "600"

WORK_QUEUES = [consumer.queue for consumer in CONSUMERS]
RETRY_QUEUES = [
    consumer.retry_queue(tier) for consumer in CONSUMERS for tier in range(1, RETRY_TIERS + 1)
]


def clock() -> str:
    """Wall-clock time as the services' logs write it (UTC), to line the timeline up."""
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]


@dataclass
class Figures:
    """What happened during the run; printed and written to test-artifacts/chaos.json."""

    seed: int
    sagas: int = 0
    scenarios: dict[str, int] = field(default_factory=dict)
    chaos_seconds: float = CHAOS_SECONDS
    kills: int = 0
    restarts: int = 0
    #: Starts that failed (mostly while the broker was down: the service gives up and
    #: exits); the supervisor tries again.
    failed_starts: int = 0
    broker_restarts: int = 0
    connection_cuts: int = 0
    connections_terminated: int = 0
    #: Processes found dead by the fault plan's hand (exit status 137).
    crashes: int = 0
    #: Processes that died while running for any other reason, "name: status" (a service
    #: must survive a broker restart and a connection cut).
    unexpected_exits: list[str] = field(default_factory=list)
    placed: int = 0
    publish_retries: int = 0
    stuck: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    #: Messages on the parking queues, and how many of them are extra copies of one
    #: message (same message_id), see `check_queues`.
    parked: int = 0
    parked_copies: int = 0
    dead_letters: int = 0
    elapsed_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    #: Up to 50 examples of every kind of problem found, with the saga it concerns.
    findings: dict[str, list[str]] = field(default_factory=dict)
    #: What the chaos did and when (UTC, as in the services' logs).
    timeline: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)

    def found(self, kind: str, what: str) -> None:
        """Note a problem of `kind` (stuck, lost, duplicated or wrong)."""
        setattr(self, kind, getattr(self, kind) + 1)
        examples = self.findings.setdefault(kind, [])
        if len(examples) < 50:
            examples.append(what)

    def happened(self, what: str) -> None:
        self.timeline.append(f"{clock()} {what}")


# --- the broker: a container of this test's own ---------------------------------------


@dataclass
class Broker:
    """The RabbitMQ container of this test, with the system's broker users on it."""

    container: Any
    access: Access

    @property
    def amqp_url(self) -> str:
        """The administrator's URL (queue counts)."""
        return self.access.admin_url

    async def restart(self, figures: Figures, *, down_seconds: float = 1.0) -> None:
        """Stop RabbitMQ's application and start it again inside the container: every
        connection drops, the mapped ports stay, durable queues and persistent messages
        survive. (`rabbitmqctl stop_app` itself takes about 5 s.)"""
        wrapped = self.container.get_wrapped_container()
        for command in ("rabbitmqctl stop_app", "rabbitmqctl start_app"):
            figures.happened(command)
            code, output = await asyncio.to_thread(wrapped.exec_run, command)
            assert code == 0, f"{command}: {output.decode(errors='replace')}"
            if command.endswith("stop_app"):
                await asyncio.sleep(down_seconds)
        figures.broker_restarts += 1
        figures.happened("broker up again")


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    problem = docker_engine_problem()
    if problem:
        print(f"chaos test skipped: {problem}")
        pytest.skip(problem)
    from testcontainers.community.rabbitmq import RabbitMqContainer

    try:
        # A context manager, not a reaper: the container goes when the test is done.
        with RabbitMqContainer("rabbitmq:4-management").with_exposed_ports(15672) as rabbit:
            host = rabbit.get_container_host_ip()
            admin_url = (
                f"amqp://{rabbit.username}:{rabbit.password}@"
                f"{host}:{rabbit.get_exposed_port(5672)}/"
            )
            management_url = f"http://{host}:{rabbit.get_exposed_port(15672)}"
            # The real users and permissions: every service as itself, the load as a client.
            with provisioned(admin_url, management_url) as access:
                yield Broker(rabbit, access)
    except Exception as exc:  # the image or the engine failed us, not the code under test
        if "docker" in type(exc).__module__ or "ContainerStartException" in type(exc).__name__:
            pytest.fail(f"the RabbitMQ container could not start: {exc}")
        raise


@pytest.fixture
def stack(broker: Broker, pg_server_url: str) -> Iterator[Stack]:
    """The stack on the container broker and fresh local databases, not started yet (the
    test starts it, under its supervisor); stopped and its databases dropped afterwards."""
    stack = make_stack(broker.access, pg_server_url, faults="seed", SAGA_STEP_TIMEOUT=STEP_TIMEOUT)
    try:
        yield stack
    finally:
        stack.stop_all()
        asyncio.run(
            drop_databases(
                pg_server_url, [url.rsplit("/", 1)[1] for url in stack.database_urls.values()]
            )
        )


# --- processes: the supervisor and the monkey -----------------------------------------


class Supervisor:
    """Keeps every process of the stack running: whatever is found dead (killed by the
    monkey, or crashed by its fault plan) is started again, and counted."""

    def __init__(self, stack: Stack, figures: Figures) -> None:
        self.stack = stack
        self.figures = figures
        #: Names being started right now (the monkey leaves them alone).
        self.starting: set[str] = set()
        #: After a failed start, when to try again (a Python process costs a second of
        #: CPU to start; while the broker is down, trying in a tight loop starves the rest).
        self._not_before: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        #: Set when the chaos ends: what is started from then on runs without the fault
        #: plan, so that the sagas settle in bounded time. (Under the plan a restarted
        #: process takes a whole backlog at once and crashes again within about a hundred
        #: messages; it does converge, but slowly.)
        self.calm = False

    def env(self, name: str) -> dict[str, str]:
        return {"SAGA_FAULT_PLAN": CRASH_PLAN} if name in CRASHING and not self.calm else {}

    def running(self) -> list[str]:
        """The processes up and not being started."""
        # A copy: the starts running in threads add to the dict meanwhile.
        processes = dict(self.stack.processes)
        return [
            name
            for name, process in processes.items()
            if name not in self.starting and process.poll() is None
        ]

    async def start_all(self) -> None:
        """The first start: order first (it is where sagas begin), then the others."""
        for name, service in PROCESSES.items():
            await asyncio.to_thread(
                self.stack.start, service, name=name, timeout=120, **self.env(name)
            )
            self.figures.logs[name] = str(self.stack.logs[name])

    def _died(self, name: str, status: int | None, *, starting: bool) -> None:
        if status == FAULT_PLAN_EXIT:
            self.figures.crashes += 1
            self.figures.happened(f"{name} crashed (fault plan)")
        elif status is not None and not starting:
            self.figures.unexpected_exits.append(f"{name}: {status}")
            self.figures.happened(f"{name} exited with status {status}")

    async def _restart(self, name: str) -> None:
        began = time.monotonic()
        try:
            await asyncio.to_thread(
                self.stack.start, PROCESSES[name], name=name, timeout=90, **self.env(name)
            )
            self.figures.restarts += 1
            self.figures.happened(f"{name} restarted in {time.monotonic() - began:.1f} s")
        except RuntimeError:
            # It died while starting (its fault plan, or the broker was down and it gave
            # up) or never answered: clear it away; the next round starts it again.
            process = self.stack.processes.get(name)
            status = process.poll() if process else None
            self.figures.failed_starts += 1
            self.figures.happened(f"{name} did not start (status {status})")
            self._died(name, status, starting=True)
            self.stack.kill(name)
            self._not_before[name] = time.monotonic() + 2
        finally:
            self.starting.discard(name)

    async def run(self) -> None:
        """Every 0.3 s, start again whatever is not running (until `stop`)."""
        while not self._stopping:
            for name in PROCESSES:
                if name in self.starting or time.monotonic() < self._not_before.get(name, 0):
                    continue
                process = self.stack.processes.get(name)
                if process is not None and process.poll() is None:
                    continue
                if process is not None:  # it died by itself
                    self._died(name, process.returncode, starting=False)
                    self.stack.processes.pop(name, None)
                self.starting.add(name)
                task = asyncio.create_task(self._restart(name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.3)

    async def all_running(self, timeout: float = 120) -> None:
        """Wait until every process is up (after the chaos, before draining)."""
        deadline = time.monotonic() + timeout
        while sorted(self.running()) != sorted(PROCESSES):
            assert time.monotonic() < deadline, f"processes not all up: {self.running()}"
            await asyncio.sleep(0.3)

    async def stop(self) -> None:
        """Stop restarting; wait for the starts under way (they run in threads)."""
        self._stopping = True
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def kill_randomly(
    stack: Stack, supervisor: Supervisor, rng: random.Random, until: float, figures: Figures
) -> None:
    """SIGKILL a random running process every second or two until `until`; the supervisor
    starts it again."""
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(1.0, 2.0))
        candidates = sorted(supervisor.running())
        if candidates:
            name = rng.choice(candidates)
            stack.kill(name)
            figures.kills += 1
            figures.happened(f"{name} killed")


# --- PostgreSQL -----------------------------------------------------------------------


async def in_flight(stack: Stack, figures: Figures) -> str:
    """How many placed sagas have not concluded yet (for the timeline)."""
    try:
        ended = 0
        for service, table in (("order", "order_sagas"), ("fare", "fare_sagas")):
            rows = await fetch(
                stack.database_urls[service],
                f"SELECT count(*) AS n FROM {table} WHERE outcome <> 'running'",
            )
            ended += int(rows[0]["n"])
    except (OSError, asyncpg.PostgresError):
        return "sagas in flight unknown"
    return f"{figures.placed - ended} sagas in flight"


async def cut_connections(pg_server_url: str, stack: Stack, figures: Figures) -> None:
    """Terminate every backend connected to the stack's databases (as a failover would).
    Should the moment find none (every process just killed or starting), try again a
    little later: the point is to cut connections in use."""
    databases = [url.rsplit("/", 1)[1] for url in stack.database_urls.values()]
    for _ in range(10):
        conn = await asyncpg.connect(pg_server_url)
        try:
            cut = int(
                await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                    " FROM pg_stat_activity"
                    " WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()",
                    databases,
                )
                or 0
            )
        finally:
            await conn.close()
        figures.happened(f"{cut} PostgreSQL connections terminated")
        if cut:
            figures.connection_cuts += 1
            figures.connections_terminated += cut
            return
        await asyncio.sleep(0.5)


async def run_chaos_events(
    broker: Broker, pg_server_url: str, stack: Stack, started: float, figures: Figures
) -> None:
    """The one-off events of the chaos window, each at its time (see CUT_AT)."""
    events: list[tuple[float, Callable[[], Awaitable[None]]]] = [
        (CUT_AT, lambda: cut_connections(pg_server_url, stack, figures)),
        *((at, lambda: broker.restart(figures)) for at in BROKER_RESTARTS_AT),
    ]
    for at, event in events:
        await asyncio.sleep(max(0.0, started + at * CHAOS_SECONDS - time.monotonic()))
        figures.happened(await in_flight(stack, figures))
        await event()


# --- the load -------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """A saga to start: its type, id and scenario."""

    saga: Saga
    saga_id: str
    scenario: str

    def payload(self) -> dict[str, Any]:
        if self.saga is ORDER:
            return sample_order(self.scenario, order_id=self.saga_id)
        return sample_fare(self.scenario, fare_id=self.saga_id)


def plan_sagas(rng: random.Random, count: int) -> list[Planned]:
    """`count` new sagas, a seeded random mix of both types and their scenarios."""
    planned = []
    for _ in range(count):
        if rng.randrange(FARE_SHARE) == 0:
            planned.append(Planned(FARE, fresh_fare_id(), rng.choice(FARE_SCENARIOS)))
        else:
            scenario = rng.choice(SCENARIOS)
            planned.append(Planned(ORDER, fresh_order_id(scenario), scenario))
    return planned


async def publish_until_confirmed(
    exchange: aio_pika.abc.AbstractExchange, saga: Planned, figures: Figures
) -> None:
    """Start the saga, persistent and confirmed, as often as it takes while the broker
    restarts (a copy that did arrive is harmless: the same saga id starts one saga)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            confirmation = await exchange.publish(
                aio_pika.Message(
                    json.dumps(saga.payload()).encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="application/json",
                    message_id=saga.saga_id,
                ),
                routing_key=saga.saga.starts_with.routing_key,
                mandatory=True,
                timeout=10,
            )
            if isinstance(confirmation, aiormq.spec.Basic.Ack):
                figures.placed += 1
                return
            problem = f"not confirmed: {confirmation!r}"
        except Exception as exc:  # the broker is away: connection, channel or timeout
            problem = f"{type(exc).__name__}: {exc}"
        figures.publish_retries += 1
        assert time.monotonic() < deadline, f"could not start {saga.saga_id}: {problem}"
        await asyncio.sleep(0.5)


async def start_sagas(
    amqp_url: str, planned: list[Planned], started: float, figures: Figures
) -> None:
    """Start the sagas: most in WAVES, each wave all at once, and every TRICKLE-th one on
    its own schedule over the chaos window (the publishes run side by side, so that one
    held up while the broker restarts does not hold the others back)."""
    connection = await aio_pika.connect_robust(amqp_url, reconnect_interval=1)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE, ensure=True)

        async def place(at: float, batch: list[Planned], what: str | None) -> None:
            await asyncio.sleep(max(0.0, started + at * CHAOS_SECONDS - time.monotonic()))
            if what:
                figures.happened(f"starting {what}: {len(batch)} sagas")
            await asyncio.gather(*(publish_until_confirmed(exchange, s, figures) for s in batch))

        items = list(planned)
        trickle, rest = items[::TRICKLE], [s for i, s in enumerate(items) if i % TRICKLE]
        size = -(-len(rest) // len(WAVES))
        await asyncio.gather(
            *(
                place(at, rest[number * size : (number + 1) * size], f"wave {number + 1}")
                for number, at in enumerate(WAVES)
            ),
            *(place(i / len(trickle), [order], None) for i, order in enumerate(trickle)),
        )
    figures.happened(f"all {len(planned)} sagas started")


# --- waiting for the end --------------------------------------------------------------

#: The sagas still running (or unknown), by the service that ends them: (saga_id, status
#: of its order or fare, saga outcome, last progress).
STILL_RUNNING = {
    "order": """
        SELECT p.id AS saga_id, o.order_status AS status, s.outcome, s.updated_at
        FROM unnest($1::text[]) AS p(id)
        LEFT JOIN orders o ON o.order_id = p.id
        LEFT JOIN order_sagas s ON s.order_id = p.id
        WHERE s.outcome IS NULL OR s.outcome = 'running'
        ORDER BY p.id
    """,
    "fare": """
        SELECT p.id AS saga_id, f.fare_status AS status, s.outcome, s.updated_at
        FROM unnest($1::text[]) AS p(id)
        LEFT JOIN fares f ON f.fare_id = p.id
        LEFT JOIN fare_sagas s ON s.fare_id = p.id
        WHERE s.outcome IS NULL OR s.outcome = 'running'
        ORDER BY p.id
    """,
}


async def wait_until_concluded(
    stack: Stack, planned: list[Planned], timeout: float
) -> list[asyncpg.Record]:
    """Poll the order and fare databases until no started saga is running (or unknown);
    returns the ones still running after `timeout` (empty when all concluded). The
    databases, not a watcher: an exclusive watcher queue loses events while the broker
    restarts."""
    deadline = time.monotonic() + timeout
    running: list[asyncpg.Record] = []
    while True:
        try:
            found: list[asyncpg.Record] = []
            for service, query in STILL_RUNNING.items():
                ids = [s.saga_id for s in planned if s.saga.name == service]
                found += await fetch(stack.database_urls[service], query, ids)
            running = found
        except (OSError, asyncpg.PostgresError):
            pass  # try again at the next poll
        else:
            if not running:
                return []
        if time.monotonic() > deadline:
            return running
        await asyncio.sleep(1)


async def queue_counts(amqp_url: str, names: list[str]) -> dict[str, int]:
    """Ready messages on each queue, by passive declaration (which never creates one)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        counts = {}
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            counts[name] = int(queue.declaration_result.message_count or 0)
        return counts


async def unpublished(stack: Stack) -> dict[str, int]:
    """Outbox rows not yet confirmed by the broker, by service."""
    counts = {}
    for name, url in stack.database_urls.items():
        rows = await fetch(url, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        counts[name] = int(rows[0]["n"])
    return {name: n for name, n in counts.items() if n}


async def wait_until_quiet(stack: Stack, amqp_url: str, timeout: float) -> dict[str, int]:
    """Wait until every outbox is published and every work and retry queue is empty, for
    three polls in a row (a message being handled is unacked, not ready, so one empty
    poll proves little); returns what was still busy after `timeout` (empty when quiet)."""
    deadline = time.monotonic() + timeout
    quiet_polls = 0
    busy: dict[str, int] = {}
    while quiet_polls < 3:
        try:
            counts = await queue_counts(amqp_url, WORK_QUEUES + RETRY_QUEUES)
            busy = {q: n for q, n in counts.items() if n}
            busy.update({f"{s} outbox": n for s, n in (await unpublished(stack)).items()})
        except (OSError, asyncpg.PostgresError, aio_pika.exceptions.AMQPError) as exc:
            busy = {f"not reachable: {exc!r}": 1}
        quiet_polls = 0 if busy else quiet_polls + 1
        if busy and time.monotonic() > deadline:
            return busy
        await asyncio.sleep(1)
    return {}


async def wait_until_recorded(stack: Stack, planned: list[Planned], timeout: float) -> None:
    """Wait (up to `timeout`) until the history holds every saga's terminal event: its
    consumer may still hold some unacknowledged, which the queues' counts do not show
    (one whose connection died with a node gets them back only once the broker notices).
    `check_bus` then says what is missing."""
    terminal = {s.saga.succeeded.type_name() for s in planned} | {
        s.saga.failed.type_name() for s in planned
    }
    wanted = {s.saga_id for s in planned}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await fetch(
            stack.database_urls["saga_log"],
            "SELECT DISTINCT saga_id FROM saga_events WHERE type = ANY($1)",
            sorted(terminal),
        )
        if wanted <= {row["saga_id"] for row in rows}:
            return
        await asyncio.sleep(1)


async def history(stack: Stack, saga_id: str) -> list[str]:
    """The saga's events as the saga history recorded them, in order (for the report)."""
    rows = await fetch(
        stack.database_urls["saga_log"],
        "SELECT type, producer FROM saga_events WHERE saga_id = $1 ORDER BY received_at",
        saga_id,
    )
    return [f"{row['type']}({row['producer']})" for row in rows]


# --- the checks -----------------------------------------------------------------------


def order_total(scenario: str) -> Decimal:
    """What the Debit must be: the sum of qty x unit_price, to the cent."""
    items = sample_order(scenario)["items"]
    total = sum(Decimal(str(i["qty"])) * Decimal(str(i["unit_price"])) for i in items)
    return Decimal(total).quantize(Decimal("0.01"))


async def check_every_saga(
    stack: Stack, broker: Broker, planned: list[Planned], figures: Figures
) -> None:
    """Every check below, saga by saga: each service's rows, the money, the outboxes, the
    bus and the queues; what does not fit is counted in `figures`."""
    orders = {s.saga_id: s.scenario for s in planned if s.saga is ORDER}
    fares = {s.saga_id: s.scenario for s in planned if s.saga is FARE}
    sagas = {**orders, **fares}
    await wait_until_recorded(stack, planned, 90)
    await check_order_service(stack, orders, figures)
    await check_payments(stack, orders, figures)
    await check_inventory(stack, orders, figures)
    await check_fare_service(stack, fares, figures)
    await check_fare_money(stack, fares, figures)
    await check_outboxes(stack, sagas, figures)
    await check_bus(stack, planned, figures)
    await check_queues(broker, sagas, figures)


async def check_order_service(stack: Stack, orders: dict[str, str], figures: Figures) -> None:
    """Exactly one terminal event per saga in the order service's outbox, of the kind its
    scenario ends with, and the order's status as the scenario leaves it."""
    url = stack.database_urls["order"]
    statuses = {
        r["order_id"]: r["order_status"]
        for r in await fetch(
            url, "SELECT order_id, order_status FROM orders WHERE order_id = ANY($1)", list(orders)
        )
    }
    terminals = await terminal_events(stack, "order")
    for order_id, scenario in orders.items():
        expected = EXPECTED[scenario]
        ends = terminals.get(order_id, [])
        if not ends:
            figures.found("lost", f"{order_id} ({scenario}): no terminal event")
            continue
        if len(ends) > 1:
            kinds = [end["type"] for end in ends]
            figures.found("duplicated", f"{order_id} ({scenario}): terminal events {kinds}")
        end = ends[0]
        seen = (end["type"], end.get("compensation_error"), statuses.get(order_id))
        wanted = (expected["terminal"], expected["compensation_error"], expected["order_status"])
        if seen != wanted or end.get("cause") in ("StepTimedOut", "SagaDeadlineExceeded"):
            figures.found(
                "wrong",
                f"{order_id} ({scenario}): ended (terminal, compensation_error, order_status)"
                f" = {seen!r:.300}, cause {end.get('cause')!r}; expected {wanted}",
            )


async def check_payments(stack: Stack, orders: dict[str, str], figures: Figures) -> None:
    """At most one Debit and one Credit per saga, a Credit only with a Debit and its
    amount negated, the Debit of the order's total; the types the scenario writes."""
    found: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in await fetch(
        stack.database_urls["payment"],
        "SELECT order_id, payment_type, payment_amount FROM payments",
    ):
        found[row["order_id"]].append(row)
    for order_id in set(found) - set(orders):
        figures.found("wrong", f"payments for an order never placed: {order_id}")
    for order_id, scenario in orders.items():
        rows = found.get(order_id, [])
        kinds = Counter(row["payment_type"] for row in rows)
        amounts = {row["payment_type"]: row["payment_amount"] for row in rows}
        what = f"{order_id} ({scenario}): payments {sorted(kinds.elements())}"
        if kinds["Debit"] > 1 or kinds["Credit"] > 1:
            figures.found("duplicated", what)
        if kinds["Credit"] and not kinds["Debit"]:
            figures.found("wrong", f"{what}: a Credit without a Debit")
        if sorted(kinds) != EXPECTED[scenario]["payments"]:
            figures.found("wrong", f"{what}, expected {EXPECTED[scenario]['payments']}")
        if "Debit" in amounts and amounts["Debit"] != order_total(scenario):
            figures.found("wrong", f"{what}: Debit {amounts['Debit']} != {order_total(scenario)}")
        if "Credit" in amounts and amounts["Credit"] != -amounts.get("Debit", 0):
            figures.found("wrong", f"{what}: Credit {amounts['Credit']} is not minus the Debit")


async def terminal_events(stack: Stack, service: str) -> dict[str, list[dict[str, Any]]]:
    """The terminal events in a service's outbox, by saga id, in the order written."""
    terminals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in await fetch(
        stack.database_urls[service],
        "SELECT correlation_id, body FROM outbox WHERE message_type = ANY($1) ORDER BY position",
        sorted(TERMINAL_TYPES),
    ):
        terminals[row["correlation_id"]].append(json.loads(row["body"]))
    return terminals


async def check_fare_service(stack: Stack, fares: dict[str, str], figures: Figures) -> None:
    """Exactly one terminal event per fare in the fare service's outbox, of the kind and
    error its scenario ends with, and the fare's status as the scenario leaves it."""
    statuses = {
        r["fare_id"]: r["fare_status"]
        for r in await fetch(
            stack.database_urls["fare"],
            "SELECT fare_id, fare_status FROM fares WHERE fare_id = ANY($1)",
            list(fares),
        )
    }
    terminals = await terminal_events(stack, "fare")
    for fare_id, scenario in fares.items():
        expected = FARE_EXPECTED[scenario]
        ends = terminals.get(fare_id, [])
        if not ends:
            figures.found("lost", f"{fare_id} ({scenario}): no terminal event")
            continue
        if len(ends) > 1:
            figures.found("duplicated", f"{fare_id} ({scenario}): {[e['type'] for e in ends]}")
        end = ends[0]
        seen = (end["type"], end.get("error"), statuses.get(fare_id, "no fare"))
        wanted = (expected["terminal"], expected["error"], expected["fare_status"])
        if seen != wanted:
            figures.found(
                "wrong", f"{fare_id} ({scenario}): ended {seen!r:.300}, expected {wanted}"
            )


async def check_fare_money(stack: Stack, fares: dict[str, str], figures: Figures) -> None:
    """One charge per fare, in the state its scenario leaves it (captured, declined, voided
    or refunded), a credit exactly when the scenario credits, never reversed (no fare is
    cancelled here), nothing for a fare never started."""
    charges = {
        row["fare_id"]: row
        for row in await fetch(stack.database_urls["payment"], "SELECT * FROM fare_charges")
    }
    credits: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in await fetch(stack.database_urls["accounting"], "SELECT * FROM account_credits"):
        credits[row["fare_id"]].append(row)
    for stranger in (set(charges) | set(credits)) - set(fares):
        figures.found("wrong", f"a charge or credit for a fare never started: {stranger}")
    for fare_id, scenario in fares.items():
        expected = FARE_EXPECTED[scenario]
        charge = charges.get(fare_id)
        status = charge["status"] if charge else None
        if status != expected["charge"]:
            figures.found(
                "wrong", f"{fare_id} ({scenario}): charge {status}, expected {expected['charge']}"
            )
        credited = credits.get(fare_id, [])
        if len(credited) > 1:
            figures.found("duplicated", f"{fare_id} ({scenario}): {len(credited)} credits")
        if bool(credited) != expected["credited"] or any(c["reversed_at"] for c in credited):
            figures.found("wrong", f"{fare_id} ({scenario}): credits {[dict(c) for c in credited]}")


async def check_inventory(stack: Stack, orders: dict[str, str], figures: Figures) -> None:
    """At most one Reserve and one Release per saga, a Release only with a Reserve; the
    types the scenario writes."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for row in await fetch(
        stack.database_urls["inventory"], "SELECT order_id, transaction_type FROM inventory"
    ):
        found[row["order_id"]][row["transaction_type"]] += 1
    for order_id in set(found) - set(orders):
        figures.found("wrong", f"inventory rows for an order never placed: {order_id}")
    for order_id, scenario in orders.items():
        kinds = found.get(order_id, Counter())
        what = f"{order_id} ({scenario}): inventory {sorted(kinds.elements())}"
        if kinds["Reserve"] > 1 or kinds["Release"] > 1:
            figures.found("duplicated", what)
        if kinds["Release"] and not kinds["Reserve"]:
            figures.found("wrong", f"{what}: a Release without a Reserve")
        if sorted(kinds) != EXPECTED[scenario]["inventory"]:
            figures.found("wrong", f"{what}, expected {EXPECTED[scenario]['inventory']}")


CANCELLED = ("OrderCancelled", "FareCancelled")


async def check_outboxes(stack: Stack, sagas: dict[str, str], figures: Figures) -> None:
    """No event was emitted twice: in each service's outbox, at most one row per saga and
    event type.

    No type is exempt. Only two paths make one saga emit a type twice: a cancellation
    (on OrderCancelled, payment and inventory emit PaymentRefunded / InventoryReleased, and
    the order service an OrderFailed, beside what the normal path emits; likewise for
    FareCancelled), and a redriven compensation reaching an ended saga
    (OrderStatusUpdated). With a step timeout of 600 s no saga is cancelled, and nothing is
    redriven here; a cancellation is reported too. (A handler that runs twice emits its
    events under the same message_ids again, which the outbox keeps once: whatever else a
    second run does shows on the bus and on the queues, see `check_bus` and
    `check_queues`.)"""
    for service in ("order", "payment", "inventory", "fare", "accounting"):
        for row in await fetch(
            stack.database_urls[service],
            "SELECT correlation_id, message_type, count(*) AS n FROM outbox"
            " GROUP BY 1, 2 HAVING count(*) > 1 OR message_type = ANY($1)",
            list(CANCELLED),
        ):
            saga = f"{row['correlation_id']} ({sagas.get(row['correlation_id'], '?')})"
            if row["message_type"] in CANCELLED:
                figures.found("wrong", f"{saga}: cancelled by the deadline watcher")
            if row["n"] > 1:
                kind = row["message_type"]
                figures.found("duplicated", f"{saga}: {row['n']} x {kind} in {service}'s outbox")


async def check_bus(stack: Stack, planned: list[Planned], figures: Figures) -> None:
    """What went over the exchange, as the saga history recorded it (every message once,
    by message_id): no saga saw one event type twice, none saw a MessageParked (a forward
    step that spent its retries), a cancellation or a rejection, and each saw its terminal
    event."""
    events: dict[str, Counter[str]] = defaultdict(Counter)
    for row in await fetch(
        stack.database_urls["saga_log"],
        "SELECT saga_id, type, count(*) AS n FROM saga_events GROUP BY 1, 2",
    ):
        events[row["saga_id"]][row["type"]] = row["n"]
    for planned_saga in planned:
        seen = events.get(planned_saga.saga_id, Counter())
        saga = f"{planned_saga.saga_id} ({planned_saga.scenario})"
        twice = {kind: n for kind, n in seen.items() if n > 1}
        if twice:
            figures.found("duplicated", f"{saga}: on the bus {twice}")
        unwanted = ("MessageParked", *CANCELLED, "OrderRejected", "FareRejected")
        for kind in unwanted:
            if seen[kind]:
                figures.found("wrong", f"{saga}: {kind} on the bus")
        if (
            not seen[planned_saga.saga.failed.type_name()]
            and not seen[planned_saga.saga.succeeded.type_name()]
        ):
            figures.found("wrong", f"{saga}: the history never recorded its terminal event")


async def check_queues(broker: Broker, sagas: dict[str, str], figures: Figures) -> None:
    """Nothing left on any work or retry queue (the services are stopped: nothing is
    unacked), no dead letters, and parked only the message of each failed compensation
    (11, 22, 33, fail_refund): one per saga, on that compensation's queue, parked for its
    own error.

    Copies of that one message (same message_id) are counted apart, in `parked_copies`,
    and do not fail the test: parking is a publish followed by an ack, and whatever is
    killed or cut between the two gets the message again and parks it again (as does a
    cause published twice by a relay killed before stamping it). That is at-least-once
    delivery to the operator, whose tools list and redrive such copies once."""
    parking = [consumer.parking_queue for consumer in CONSUMERS]
    dead_letters = [consumer.dead_letter_queue for consumer in CONSUMERS]
    counts = await queue_counts(broker.amqp_url, WORK_QUEUES + RETRY_QUEUES + dead_letters)
    for queue, n in counts.items():
        if n:
            figures.found("wrong", f"{n} messages left on {queue}")
    figures.parked = sum((await queue_counts(broker.amqp_url, parking)).values())
    parked: dict[str | None, dict[tuple[str, str | None], HeldMessage]] = defaultdict(dict)
    for message in await list_held(broker.access.url("operator"), PARKED):
        parked[message.saga_id].setdefault((message.queue, message.message_id), message)
    figures.parked_copies = figures.parked - sum(len(held) for held in parked.values())
    for saga_id, scenario in sagas.items():
        messages = list(parked.pop(saga_id, {}).values())
        wanted, error = PARKED_BY_DESIGN.get(scenario, (None, None))
        if wanted and not messages:
            figures.found("wrong", f"{saga_id} ({scenario}): nothing parked on {wanted}")
        elif len(messages) > 1 or any(
            m.queue != wanted or not m.reason.endswith(f" failed: {error}") for m in messages
        ):
            shown = [
                f"{m.queue} {m.type} {m.message_id}: {m.reason[:100]} (attempts {m.attempts})"
                for m in messages
            ]
            figures.found(
                "wrong",
                f"{saga_id} ({scenario}): parked {shown}; expected one on {wanted} for {error}",
            )
    for stranger, held in parked.items():
        figures.found("wrong", f"parked for a saga never started: {stranger} {len(held)}")
    dead = await list_held(broker.access.url("operator"), DEAD)
    figures.dead_letters = len(dead)
    for letter in dead:
        figures.found("wrong", f"dead letter on {letter.queue}: {letter.saga_id} {letter.reason}")


def report(figures: Figures) -> str:
    """Write the figures to test-artifacts/chaos.json and print them (but the timeline,
    which is in the file); returns what was printed."""
    data = asdict(figures)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "chaos.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    data["timeline"] = f"{len(figures.timeline)} entries in test-artifacts/chaos.json"
    text = json.dumps(data, indent=2, default=str)
    print("chaos figures:\n" + text, flush=True)
    return text


# --- the test -------------------------------------------------------------------------


@pytest.mark.timeout(900)
async def test_sagas_survive_kills_crashes_broker_restarts_and_cut_connections(
    broker: Broker, stack: Stack, pg_server_url: str
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos: seed {seed} (CHAOS_SEED={seed} replays the mix)", flush=True)
    figures = Figures(seed=seed)
    planned = plan_sagas(random.Random(seed), SAGAS)
    orders = {s.saga_id: s.scenario for s in planned if s.saga is ORDER}
    fares = {s.saga_id: s.scenario for s in planned if s.saga is FARE}
    figures.sagas = len(planned)
    figures.scenarios = dict(
        sorted(Counter(f"{s.saga.name} {s.scenario}" for s in planned).items())
    )
    begun = time.monotonic()

    supervisor = Supervisor(stack, figures)
    await supervisor.start_all()
    figures.phases["start"] = round(time.monotonic() - begun, 1)

    # The chaos window: load, kills, crashes, broker restarts and a connection cut at once.
    started = time.monotonic()
    figures.happened("chaos begins")
    supervising = asyncio.create_task(supervisor.run())
    stuck: list[asyncpg.Record] = []
    busy: dict[str, int] = {}
    try:
        await asyncio.gather(
            start_sagas(broker.access.url("client"), planned, started, figures),
            kill_randomly(
                stack, supervisor, random.Random(seed + 1), started + CHAOS_SECONDS, figures
            ),
            run_chaos_events(broker, pg_server_url, stack, started, figures),
        )
        figures.phases["chaos"] = round(time.monotonic() - started, 1)
        figures.happened("chaos ends")

        # No more kills. The processes still running under the fault plan may crash
        # once more; they are started again without it.
        supervisor.calm = True
        settling = time.monotonic()
        await supervisor.all_running()
        stuck = await wait_until_concluded(stack, planned, SETTLE_SECONDS)
        figures.phases["settle"] = round(time.monotonic() - settling, 1)
        figures.happened("every saga concluded" if not stuck else f"{len(stuck)} sagas stuck")
        if not stuck:
            draining = time.monotonic()
            busy = await wait_until_quiet(stack, broker.amqp_url, 60)
            figures.phases["drain"] = round(time.monotonic() - draining, 1)
    finally:
        await supervisor.stop()
        supervising.cancel()
        stack.stop_all()

    sagas = {**orders, **fares}
    for row in stuck:
        events = await history(stack, row["saga_id"]) if figures.stuck < 20 else []
        figures.found(
            "stuck",
            f"{row['saga_id']} ({sagas[row['saga_id']]}): status {row['status']},"
            f" saga {row['outcome']}, last progress {row['updated_at']}, history {events}",
        )
    for what, n in busy.items():
        figures.found("wrong", f"still busy after 60 s: {what} ({n})")
    await check_every_saga(stack, broker, planned, figures)
    figures.elapsed_seconds = round(time.monotonic() - begun, 1)
    text = report(figures)

    assert figures.stuck == 0, f"sagas that never concluded (logs in test-artifacts/):\n{text}"
    assert figures.lost == 0, f"sagas without a terminal event:\n{text}"
    assert figures.duplicated == 0, f"effects or events found twice:\n{text}"
    assert figures.wrong == 0, f"end states that do not fit their scenario:\n{text}"
    assert not figures.unexpected_exits, f"processes died by themselves:\n{text}"
    # The chaos did happen (else the test proves nothing).
    assert figures.kills and figures.broker_restarts == len(BROKER_RESTARTS_AT), text
    assert figures.connections_terminated, text
