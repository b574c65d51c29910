"""Chaos on the cluster: `make up-cluster` (three RabbitMQ nodes, two replicas of every
service and of the history, one PostgreSQL per service) runs sagas of both types while a
RabbitMQ node is killed (`docker kill`) and started again, another is cut off the network
for a while (`docker network disconnect`) and service replicas are SIGKILLed (`docker
kill`) and started again, one at a time, throughout. Afterwards every saga has concluded
as its scenario says, nothing was lost and nothing was done twice (the checks of
tests/e2e/test_chaos.py, saga by saga).

The node killed is node 1: the first to start, where the definitions put every classic
queue (the retry tiers), and the node whose host port a client from the host uses. The
node cut off is node 2: with pause_minority it pauses itself, its healthcheck turns
unhealthy, and it comes back by itself once reconnected.

The stack runs under a compose project of its own on host ports picked free here (the
databases published too, for the checks), and is always taken down with its volumes.
Skipped, saying why, when no Docker engine answers.

Tuning, from the environment: `CLUSTER_CHAOS_SAGAS` (150), `CLUSTER_CHAOS_SEED` (random,
printed), `CLUSTER_CHAOS_SETTLE_SECONDS` (180). The figures (sagas, kills, partitions,
how long the cluster took to recover, where the queue leaders are) are printed and
written to `test-artifacts/cluster-chaos.json`, with a timeline; the stack's logs to
`test-artifacts/cluster-chaos.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from contracts import EXCHANGE, FARE, ORDER
from contracts.samples import fresh_fare_id, fresh_order_id
from saga_log.ops.env import local_env
from tests.e2e.test_chaos import Broker as ChaosBroker
from tests.e2e.test_chaos import (
    Planned,
    _env,
    check_every_saga,
    clock,
    in_flight,
    plan_sagas,
    wait_until_concluded,
    wait_until_quiet,
)
from tests.e2e.test_compose_smoke import (
    _compose_command,
    _docker_answers,
    _make,
    _save_logs,
    _tail,
)
from tests.support import ARTIFACTS, ROOT, Stack, management_publish
from tests.support import Broker as Access

pytestmark = pytest.mark.docker


PROJECT = os.environ.get("SAGA_CLUSTER_CHAOS_PROJECT", "saga-cluster-chaos")
SAGAS = int(_env("CLUSTER_CHAOS_SAGAS", 150))
SETTLE_SECONDS = _env("CLUSTER_CHAOS_SETTLE_SECONDS", 180)
#: How long the killed node stays down, and the cut node off the network: longer than
#: the nodes take to see a peer gone (net_ticktime 15 s: 11 to 19 s), so that the cut
#: node pauses and the others carry on without it.
NODE_DOWN_SECONDS = 15.0
PARTITION_SECONDS = 35.0
#: Replica kills go on this long after the last wave is placed.
KILL_TAIL_SECONDS = 15.0
UP_TIMEOUT = 900.0
DOWN_TIMEOUT = 240.0

#: The nodes, by compose service, with the names their peers know them by.
NODES = {"rabbitmq": "rabbitmq-1", "rabbitmq-2": "rabbitmq-2", "rabbitmq-3": "rabbitmq-3"}
KILLED_NODE = "rabbitmq"
CUT_NODE = "rabbitmq-2"
#: Every service replica (compose services): these are SIGKILLed and started again.
REPLICAS = tuple(
    f"{service}{suffix}"
    for service in ("order", "payment", "inventory", "fare", "accounting", "saga-log")
    for suffix in ("", "-2")
)
#: Each service's database: (compose service, database name).
DATABASES = {
    "order": ("order-db", "orders"),
    "payment": ("payment-db", "payments"),
    "inventory": ("inventory-db", "inventory"),
    "fare": ("fare-db", "fares"),
    "accounting": ("accounting-db", "accounting"),
    "saga_log": ("saga-log-db", "saga_log"),
}
#: Far longer than any node kill or partition: no saga is cancelled by its deadline
#: watcher during the chaos (a cancellation is counted wrong; see test_chaos).
STEP_TIMEOUT = "600"
NODE_PORTS = {
    "rabbitmq": ("SAGA_RABBITMQ_HOST_PORT", "SAGA_RABBITMQ_UI_HOST_PORT"),
    "rabbitmq-2": ("SAGA_RABBITMQ_2_HOST_PORT", "SAGA_RABBITMQ_2_UI_HOST_PORT"),
    "rabbitmq-3": ("SAGA_RABBITMQ_3_HOST_PORT", "SAGA_RABBITMQ_3_UI_HOST_PORT"),
}
SERVICE_PORTS = (
    "SAGA_ORDER_HOST_PORT",
    "SAGA_PAYMENT_HOST_PORT",
    "SAGA_INVENTORY_HOST_PORT",
    "SAGA_FARE_HOST_PORT",
    "SAGA_ACCOUNTING_HOST_PORT",
    "SAGA_LOG_HOST_PORT",
)


@dataclass
class Figures:
    """What happened; printed and written to test-artifacts/cluster-chaos.json."""

    seed: int
    sagas: int = 0
    scenarios: dict[str, int] = field(default_factory=dict)
    placed: int = 0
    publish_retries: int = 0
    #: Sagas started through a node's management UI (its HTTP API) while node 1 was down.
    through_ui: dict[str, int] = field(default_factory=dict)
    #: Times the load's client moved to another node's host port.
    publish_failovers: int = 0
    replica_kills: int = 0
    node_kills: int = 0
    partitions: int = 0
    #: Nodes that did not rejoin by themselves after the partition and were restarted.
    restarted_after_partition: list[str] = field(default_factory=list)
    #: Seconds: the killed node from `docker start` to healthy; the cut node from the cut
    #: to its healthcheck failing, and from reconnected to healthy; every container of the
    #: stack healthy again after the chaos.
    recovery_seconds: dict[str, float] = field(default_factory=dict)
    #: Quorum queue leaders per node, after start and at the end.
    leaders: dict[str, dict[str, int]] = field(default_factory=dict)
    quorum_queues: int = 0
    stuck: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong: int = 0
    parked: int = 0
    parked_copies: int = 0
    dead_letters: int = 0
    elapsed_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    findings: dict[str, list[str]] = field(default_factory=dict)
    timeline: list[str] = field(default_factory=list)

    def found(self, kind: str, what: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        examples = self.findings.setdefault(kind, [])
        if len(examples) < 50:
            examples.append(what)

    def happened(self, what: str) -> None:
        self.timeline.append(f"{clock()} {what}")


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Cluster:
    """The running cluster stack: its compose command, host ports and secrets."""

    compose: list[str]
    ports: dict[str, int]
    secrets: dict[str, str]
    #: How long `make up-cluster` took.
    up_seconds: float = 0.0
    _containers: dict[str, str] = field(default_factory=dict)

    def container(self, service: str) -> str:
        """The container id of a compose service (one container each)."""
        if service not in self._containers:
            found = subprocess.run(
                [*self.compose, "ps", "-q", service],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.split()
            assert len(found) == 1, f"{service}: containers {found}"
            self._containers[service] = found[0]
        return self._containers[service]

    def url(self, role: str, node: str) -> str:
        password = self.secrets[f"RABBITMQ_PASSWORD_{role.upper()}"]
        return f"amqp://{role}:{password}@127.0.0.1:{self.ports[NODE_PORTS[node][0]]}/"

    def management(self, node: str) -> str:
        return f"http://127.0.0.1:{self.ports[NODE_PORTS[node][1]]}"

    @property
    def database_urls(self) -> dict[str, str]:
        """Each service's database as PostgreSQL's superuser, through its published port."""
        password = self.secrets["POSTGRES_PASSWORD"]
        return {
            service: f"postgresql://postgres:{password}@127.0.0.1:{self.ports[db]}/{name}"
            for service, (db, name) in DATABASES.items()
        }

    def stack(self) -> Stack:
        """What test_chaos's checks read: the databases."""
        access = Access(admin_url=self.url("operator", "rabbitmq"), prefix="", passwords={})
        return Stack(broker=access, database_urls=self.database_urls, ports={}, env={})

    def chaos_broker(self, node: str) -> ChaosBroker:
        """What test_chaos's queue checks read, as the operator on `node`."""
        operator = self.secrets["RABBITMQ_PASSWORD_OPERATOR"]
        access = Access(
            admin_url=self.url("operator", node), prefix="", passwords={"operator": operator}
        )
        return ChaosBroker(container=None, access=access)

    def ctl(self, node: str, *args: str) -> Any:
        """`rabbitmqctl ... --formatter json` on `node`, parsed."""
        done = docker(
            "exec", self.container(node), "rabbitmqctl", "-q", *args, "--formatter", "json"
        )
        assert done.returncode == 0, f"rabbitmqctl {args} on {node}: {done.stderr}"
        return json.loads(done.stdout)

    def healthy(self, node: str) -> bool:
        """The node's own healthcheck (deploy/rabbitmq/healthcheck.sh), run now."""
        try:
            check = docker(
                "exec", self.container(node), "sh", "/etc/rabbitmq/healthcheck.sh", timeout=30
            )
        except subprocess.TimeoutExpired:
            return False  # a check that cannot finish is a failed one, as Docker counts it
        return check.returncode == 0


UP_ATTEMPTS = 3


def _host_ports() -> dict[str, int]:
    """A free host port for each node, service and database, all different: the sockets
    stay bound until every port is chosen, so none is handed out twice."""
    names = [
        *(name for pair in NODE_PORTS.values() for name in pair),
        *SERVICE_PORTS,
        *(db for db, _ in DATABASES.values()),
    ]
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in names]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return {name: int(sock.getsockname()[1]) for name, sock in zip(names, sockets, strict=True)}


def _databases_override(ports: dict[str, int]) -> str:
    """A compose file of this test's own: the databases published (for the checks), and
    the step timeout of every service raised (see STEP_TIMEOUT)."""
    services: dict[str, Any] = {
        db: {"ports": [f"127.0.0.1:{ports[db]}:5432"]} for db, _ in DATABASES.values()
    }
    for replica in REPLICAS:
        services[replica] = {"environment": {"SAGA_STEP_TIMEOUT": STEP_TIMEOUT}}
    return json.dumps({"services": services})  # JSON is YAML


#: `SAGA_CLUSTER_CHAOS=0` skips it (three minutes, 21 containers) in a quick local run.
OPT_OUT = "SAGA_CLUSTER_CHAOS"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if os.environ.get(OPT_OUT) == "0":
        pytest.skip(f"{OPT_OUT}=0: the cluster chaos test is switched off")
    reason = _docker_answers()
    if reason is not None:
        pytest.skip(reason)
    compose = _compose_command()
    assert compose is not None
    with tempfile.TemporaryDirectory() as scratch:
        override = Path(scratch) / "databases.yml"
        try:
            for attempt in range(1, UP_ATTEMPTS + 1):
                ports = _host_ports()
                override.write_text(_databases_override(ports))
                files = f"-f docker-compose.yml -f docker-compose.cluster.yml -f {override}"
                env = {
                    **{key: value for key, value in os.environ.items() if key != "COMPOSE_FILE"},
                    "SAGA_CLUSTER_PROJECT": PROJECT,
                    "CLUSTER_FILES": files,
                    "SAGA_BIND_ADDRESS": "127.0.0.1",
                    **{name: str(port) for name, port in ports.items() if name.startswith("SAGA_")},
                }
                command = [*compose, "-p", PROJECT, *files.split()]
                # A stack this test left behind (an interrupted run) would otherwise be reused.
                _make("down-cluster", env, DOWN_TIMEOUT)
                began = time.monotonic()
                up = _make("up-cluster", env, UP_TIMEOUT)
                taken = "port is already allocated" in up.stdout + up.stderr
                if up.returncode == 0 or not taken or attempt == UP_ATTEMPTS:
                    break
                # A port free a moment ago that Docker still counts as taken (a container
                # of the test before, being removed): the same again on other ports.
                print(f"`make up-cluster`: a host port was taken; again on others ({attempt})")
            assert up.returncode == 0, (
                f"`make up-cluster` failed (exit {up.returncode}):\n"
                f"{_tail(up.stdout)}\n{_tail(up.stderr)}"
            )
            secrets = local_env(ROOT / ".env")
            yield Cluster(command, ports, secrets, up_seconds=round(time.monotonic() - began))
        finally:
            _save_logs(env, compose=command, artifact="cluster-chaos.log", timeout=120)
            down = _make("down-cluster", env, DOWN_TIMEOUT)
            if down.returncode != 0:
                print(f"`make down-cluster` failed (exit {down.returncode}):\n{_tail(down.stderr)}")


# --- what the cluster looks like --------------------------------------------------------


def quorum_queues(cluster: Cluster, node: str) -> list[dict[str, Any]]:
    """Every quorum queue with its members, online members and leader."""
    rows = cluster.ctl(node, "list_queues", "name", "type", "members", "online", "leader")
    return [row for row in rows if row["type"] == "quorum"]


def leaders(queues: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(str(q["leader"]) for q in queues).items()))


def fully_replicated(queues: list[dict[str, Any]]) -> list[str]:
    """The quorum queues that lack a member, or an online one, on some node."""
    wanted = {f"rabbit@{name}" for name in NODES.values()}
    return [
        f"{q['name']}: members {q['members']}, online {q['online']}"
        for q in queues
        if set(q["members"]) != wanted or set(q["online"]) != wanted
    ]


def management_answers(cluster: Cluster, node: str) -> bool:
    """The node's management API answers the operator (its UI is served alongside)."""
    password = cluster.secrets["RABBITMQ_PASSWORD_OPERATOR"]
    request = urllib.request.Request(f"{cluster.management(node)}/api/overview")
    request.add_header(
        "Authorization", "Basic " + b64encode(f"operator:{password}".encode()).decode()
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


async def until(
    probe: Callable[[], bool], *, timeout: float, interval: float = 2.0, what: str
) -> float:
    """Poll `probe` (in a thread: it runs docker) until true; the seconds it took. Not
    faster than every 2 s: each probe starts a RabbitMQ CLI, about a second of CPU."""
    began = time.monotonic()
    while not await asyncio.to_thread(probe):
        assert time.monotonic() - began < timeout, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(interval)
    return round(time.monotonic() - began, 1)


def all_containers_healthy(cluster: Cluster) -> bool:
    ids = [cluster.container(name) for name in (*NODES, *REPLICAS)]
    found = docker("inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", *ids)
    return found.returncode == 0 and all(
        line == "running healthy" for line in found.stdout.splitlines()
    )


# --- the chaos --------------------------------------------------------------------------


async def kill_node(
    cluster: Cluster,
    node: str,
    figures: Figures,
    while_down: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """`docker kill` the node (SIGKILL), run `while_down`, leave it down a while, start it
    again; how long it takes to be a healthy member again is its recovery."""
    container = cluster.container(node)
    figures.happened(f"{node} killed")
    assert (await asyncio.to_thread(docker, "kill", container)).returncode == 0
    figures.node_kills += 1
    down_at = time.monotonic()
    if while_down is not None:
        await while_down()
    await asyncio.sleep(max(0.0, down_at + NODE_DOWN_SECONDS - time.monotonic()))
    assert (await asyncio.to_thread(docker, "start", container)).returncode == 0
    figures.happened(f"{node} started again")
    figures.recovery_seconds[f"{node} killed: start to healthy"] = await until(
        lambda: cluster.healthy(node), timeout=180, what=f"{node} healthy again"
    )
    figures.happened(f"{node} healthy")


async def cut_node(cluster: Cluster, node: str, figures: Figures) -> None:
    """Disconnect the node from the stack's network, wait until its healthcheck says it
    is out (pause_minority: alone, it pauses), check that the two others still form a
    healthy majority, keep it off a while, reconnect it under its names, and time how
    long it takes to be a healthy member again."""
    container = cluster.container(node)
    networks = json.loads(
        docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container).stdout
    )
    assert len(networks) == 1, networks
    network = next(iter(networks))
    cut_at = time.monotonic()
    done = await asyncio.to_thread(docker, "network", "disconnect", network, container)
    assert done.returncode == 0, done.stderr
    figures.partitions += 1
    figures.happened(f"{node} cut off the network")
    figures.recovery_seconds[f"{node} cut: cut to unhealthy"] = await until(
        lambda: not cluster.healthy(node), timeout=90, what=f"{node} seen as out"
    )
    figures.happened(f"{node} unhealthy (its healthcheck)")
    for other in NODES:
        if other != node:
            assert await asyncio.to_thread(cluster.healthy, other), f"{other} unhealthy"
    await asyncio.sleep(max(0.0, cut_at + PARTITION_SECONDS - time.monotonic()))
    # Back under every name it had: its peers know it by its host name, the services by
    # the shared alias `rabbitmq`.
    aliases = [node, NODES[node], "rabbitmq"]
    connect = ["network", "connect", *(f"--alias={a}" for a in dict.fromkeys(aliases))]
    done = await asyncio.to_thread(docker, *connect, network, container)
    assert done.returncode == 0, done.stderr
    figures.happened(f"{node} reconnected")
    reconnected = time.monotonic()
    try:
        await until(lambda: cluster.healthy(node), timeout=90, what=f"{node} rejoining")
    except AssertionError:
        # Seen with RabbitMQ 3.10: the paused node restarts its application once it sees
        # the majority again, and the management agent fails to start, leaving RabbitMQ
        # stopped on the node. What an operator does then: restart the node's container.
        figures.restarted_after_partition.append(node)
        figures.happened(f"{node} did not rejoin by itself: docker restart")
        assert (await asyncio.to_thread(docker, "restart", container)).returncode == 0
        await until(lambda: cluster.healthy(node), timeout=180, what=f"{node} healthy again")
    figures.recovery_seconds[f"{node} cut: reconnected to healthy"] = round(
        time.monotonic() - reconnected, 1
    )
    figures.happened(f"{node} healthy")


async def kill_replicas(
    cluster: Cluster, rng: random.Random, stop: asyncio.Event, figures: Figures
) -> None:
    """SIGKILL a random service replica every two to four seconds and start it again a
    second or two later (one down at a time: its twin carries on), until `stop`."""
    while not stop.is_set():
        with_pause = rng.uniform(2.0, 4.0)
        try:
            await asyncio.wait_for(stop.wait(), with_pause)
            return
        except TimeoutError:
            pass
        replica = rng.choice(REPLICAS)
        container = cluster.container(replica)
        await asyncio.to_thread(docker, "kill", container)
        figures.replica_kills += 1
        figures.happened(f"{replica} killed")
        await asyncio.sleep(rng.uniform(1.0, 2.0))
        await asyncio.to_thread(docker, "start", container)
        figures.happened(f"{replica} started again")


class Publisher:
    """A client that starts sagas through whichever node's host port answers: on any
    failure it moves to the next node (a client outside Docker's network has a port per
    node, not the shared name)."""

    def __init__(self, urls: list[str], figures: Figures) -> None:
        self.urls = urls
        self.figures = figures
        self._next = 0
        self._lock = asyncio.Lock()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def _current(self) -> aio_pika.abc.AbstractExchange:
        async with self._lock:
            if self._exchange is None:
                url = self.urls[self._next % len(self.urls)]
                self._connection = await aio_pika.connect(url, timeout=5)
                channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await channel.get_exchange(EXCHANGE, ensure=True)
            return self._exchange

    async def _failed(self, exchange: aio_pika.abc.AbstractExchange | None) -> None:
        async with self._lock:
            if exchange is not None and exchange is not self._exchange:
                return  # another publish already moved on
            connection, self._connection, self._exchange = self._connection, None, None
            self._next += 1
            self.figures.publish_failovers += 1
            if connection is not None:
                # It is broken already: nothing to keep, whatever closing it says.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 5)

    async def start(self, saga: Planned) -> None:
        """Start the saga, persistent and confirmed, as often as it takes (a copy that
        did arrive is harmless: the same saga id starts one saga)."""
        deadline = time.monotonic() + 180
        while True:
            exchange = None
            try:
                exchange = await self._current()
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
                    self.figures.placed += 1
                    return
                problem = f"not confirmed: {confirmation!r}"
            except Exception as exc:  # the node is away: connection, channel or timeout
                problem = f"{type(exc).__name__}: {exc}"
                await self._failed(exchange)
            self.figures.publish_retries += 1
            assert time.monotonic() < deadline, f"could not start {saga.saga_id}: {problem}"
            await asyncio.sleep(0.5)

    async def wave(self, sagas: list[Planned], what: str) -> None:
        self.figures.happened(f"starting {what}: {len(sagas)} sagas")
        await asyncio.gather(*(self.start(saga) for saga in sagas))
        self.figures.happened(f"{what} placed")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def through_management_ui(
    cluster: Cluster, sagas: list[tuple[Planned, str]], figures: Figures
) -> None:
    """Start each saga through the management HTTP API of its node, logged in as the
    client, exactly as the UI's "Publish message" form does; retried while the node is
    still busy noticing its peer gone (the UI's user would click again)."""
    password = cluster.secrets["RABBITMQ_PASSWORD_CLIENT"]
    for saga, node in sagas:
        deadline = time.monotonic() + 90
        while True:
            try:
                answer = await asyncio.to_thread(
                    management_publish,
                    cluster.management(node),
                    "/",
                    saga.saga.starts_with.routing_key,
                    json.dumps(saga.payload()),
                    user="client",
                    password=password,
                )
                if answer.get("routed"):
                    break
                problem = f"not routed: {answer}"
            except (urllib.error.URLError, OSError) as exc:
                problem = repr(exc)
            assert time.monotonic() < deadline, f"{node}'s UI refused {saga.saga_id}: {problem}"
            await asyncio.sleep(1)
        figures.placed += 1
        figures.through_ui[node] = figures.through_ui.get(node, 0) + 1
        figures.happened(f"{saga.saga.name} {saga.saga_id} started through {node}'s UI")


def report(figures: Figures) -> str:
    data = asdict(figures)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cluster-chaos.json").write_text(json.dumps(data, indent=2) + "\n")
    data["timeline"] = f"{len(figures.timeline)} entries in test-artifacts/cluster-chaos.json"
    text = json.dumps(data, indent=2)
    print("cluster chaos figures:\n" + text, flush=True)
    return text


# --- the test ---------------------------------------------------------------------------


@pytest.mark.timeout(UP_TIMEOUT + DOWN_TIMEOUT * 2 + 900)
async def test_sagas_survive_a_node_killed_a_node_cut_off_and_replicas_killed(
    cluster: Cluster,
) -> None:
    seed = int(os.environ.get("CLUSTER_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\ncluster chaos: seed {seed} (CLUSTER_CHAOS_SEED={seed} replays the mix)")
    figures = Figures(seed=seed)
    figures.phases["up"] = cluster.up_seconds
    planned = plan_sagas(random.Random(seed), SAGAS)
    # Started by hand, as a user would, through the UI of a node that survives node 1.
    by_hand = [
        (Planned(ORDER, fresh_order_id("ok"), "ok"), "rabbitmq-2"),
        (Planned(FARE, fresh_fare_id(), "ok"), "rabbitmq-3"),
    ]
    planned += [saga for saga, _ in by_hand]
    figures.sagas = len(planned)
    figures.scenarios = dict(
        sorted(Counter(f"{s.saga.name} {s.scenario}" for s in planned).items())
    )
    orders = {s.saga_id: s.scenario for s in planned if s.saga is ORDER}
    fares = {s.saga_id: s.scenario for s in planned if s.saga is FARE}
    # test_chaos's checks read the stack's `database_urls` and call their figures'
    # `found`: this test's own figures and stack serve them.
    stack = cluster.stack()
    begun = time.monotonic()

    # As made: every quorum queue on all three nodes, the leaders spread, a management
    # API on every node.
    queues = await asyncio.to_thread(quorum_queues, cluster, "rabbitmq")
    figures.quorum_queues = len(queues)
    figures.leaders["after start"] = leaders(queues)
    assert queues and not fully_replicated(queues), fully_replicated(queues)
    assert len(figures.leaders["after start"]) == len(NODES), figures.leaders
    for node in NODES:
        assert await asyncio.to_thread(management_answers, cluster, node), node

    publisher = Publisher([cluster.url("client", node) for node in NODES], figures)
    third = -(-SAGAS // 3)
    waves = [planned[i : i + third] for i in range(0, SAGAS, third)]
    stop = asyncio.Event()
    figures.happened("chaos begins")
    chaos_began = time.monotonic()
    killing = asyncio.create_task(kill_replicas(cluster, random.Random(seed + 1), stop, figures))
    try:
        # Each one-off event meets a wave of sagas in flight.
        await publisher.wave(waves[0], "wave 1")
        figures.happened(await in_flight(stack, figures))
        await kill_node(
            cluster,
            KILLED_NODE,
            figures,
            while_down=lambda: through_management_ui(cluster, by_hand, figures),
        )
        await publisher.wave(waves[1], "wave 2")
        figures.happened(await in_flight(stack, figures))
        await cut_node(cluster, CUT_NODE, figures)
        await publisher.wave(waves[2], "wave 3")
        await asyncio.sleep(KILL_TAIL_SECONDS)
    finally:
        stop.set()
        await killing
        await publisher.close()
    figures.phases["chaos"] = round(time.monotonic() - chaos_began, 1)
    figures.happened("chaos ends")

    settling = time.monotonic()
    figures.recovery_seconds["every container healthy after the chaos"] = await until(
        lambda: all_containers_healthy(cluster), timeout=240, interval=2, what="stack healthy"
    )
    stuck = await wait_until_concluded(stack, planned, SETTLE_SECONDS)
    figures.phases["settle"] = round(time.monotonic() - settling, 1)
    figures.happened("every saga concluded" if not stuck else f"{len(stuck)} sagas stuck")
    broker = cluster.chaos_broker("rabbitmq-3")
    busy: dict[str, int] = {}
    if not stuck:
        draining = time.monotonic()
        busy = await wait_until_quiet(stack, broker.amqp_url, 90)
        figures.phases["drain"] = round(time.monotonic() - draining, 1)

    sagas = {**orders, **fares}
    for row in stuck:
        figures.found(
            "stuck",
            f"{row['saga_id']} ({sagas[row['saga_id']]}): status {row['status']},"
            f" saga {row['outcome']}, last progress {row['updated_at']}",
        )
    for what, n in busy.items():
        figures.found("wrong", f"still busy after 90 s: {what} ({n})")
    await check_every_saga(stack, broker, planned, figures)

    # Still one cluster, every quorum queue on every node, every replica online.
    queues = await asyncio.to_thread(quorum_queues, cluster, "rabbitmq-3")
    figures.leaders["at the end"] = leaders(queues)
    unreplicated = fully_replicated(queues)
    for problem in unreplicated:
        figures.found("wrong", f"quorum queue not on every node: {problem}")
    figures.elapsed_seconds = round(time.monotonic() - begun, 1)
    text = report(figures)

    assert figures.stuck == 0, f"sagas that never concluded (logs in test-artifacts/):\n{text}"
    assert figures.lost == 0, f"sagas without a terminal event:\n{text}"
    assert figures.duplicated == 0, f"effects or events found twice:\n{text}"
    assert figures.wrong == 0, f"end states that do not fit their scenario:\n{text}"
    assert figures.placed == len(planned), text
    assert figures.through_ui == {"rabbitmq-2": 1, "rabbitmq-3": 1}, text
    # The chaos did happen (else the test proves nothing).
    assert figures.node_kills == 1 and figures.partitions == 1, text
    assert figures.replica_kills >= 10, text
