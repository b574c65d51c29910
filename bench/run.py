"""The benchmark: the services as real processes (the `make dev` topology, saga history
included), driven like a real client that publishes orders to the broker and waits for
each saga's terminal event. Everything durable: fsync on, persistent messages, publisher
confirms, outbox and inbox.

    python -m bench                 the full run (make bench)
    python -m bench --short         under a minute, for CI (prints, asserts nothing)
    python -m bench --profile       a closed loop sampled by py-spy, a profile per service
    python -m bench --soak 600      ten minutes of load, a line a minute
    python -m bench --hops-only     only the per-hop breakdown (bench/hops.py)

It prints, and writes to bench-results/latest.json:
- the raw ceiling: persistent, confirmed messages per second that one aio-pika process
  pushes through a local durable (quorum) queue;
- the latency floor: one PostgreSQL commit and one confirmed publish to a quorum queue,
  each timed alone on the idle machine (every hop of a saga needs both);
- closed loop (N sagas in flight): sagas/s sustained, latency p50/p95/p99/max from
  publishing the order to receiving its terminal event, CPU seconds per saga of every
  process (each service, PostgreSQL, RabbitMQ), memory;
- idle: the percent of one core each process uses with no saga running;
- open loop (a fixed arrival rate): the all-success mix at 20, 60 and 100 sagas/s (first,
  on fresh tables), the sample mix at fractions of its best closed loop; latency, CPU and
  PostgreSQL commits per saga at each (PostgreSQL's CPU split: `postgresql_exited` is what
  its ended processes, mostly autovacuum workers, used meanwhile);
- for the all-success mix and the sample's scenario mix;
- last, the per-hop breakdown of one saga's latency at low load, from the services' spans
  (`--hops N` sagas one at a time, 0 to skip; bench/hops.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika

from bench import hops
from bench.host import CpuTicks, steal_note
from contracts import CONSUMERS
from contracts.samples import SCENARIOS, fresh_order_id, sample_order
from tests.support import (
    ROOT,
    Stack,
    drop_databases,
    make_stack,
    management_get,
    provisioned,
    rabbit_vhost,
)

RESULTS = ROOT / "bench-results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICES = ("order", "payment", "inventory", "saga_log")


# --- measuring processes ----------------------------------------------------------------


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU of `pid`; with `reaped_children`, plus that of its children that
    have exited (a PostgreSQL backend's CPU moves to the postmaster's when it ends)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pids_named(*names: str) -> list[int]:
    """This host's processes called `names`: those of containers (test stacks, a cluster
    started meanwhile, which come and go) would make the figures jump, even below zero."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm in names and not _in_container((entry / "cgroup").read_text()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _in_container(cgroup: str) -> bool:
    return any(mark in cgroup for mark in ("/docker", "/containerd", "/kubepods", "libpod"))


def commits(stack: Stack) -> float:
    """Transactions committed so far in the stack's databases (pg_stat_database, which
    the statistics collector updates within about half a second)."""
    names = ",".join(f"'{u.rsplit('/', 1)[1]}'" for u in stack.database_urls.values())
    out = subprocess.run(
        [
            "psql",
            os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
            "-Atc",
            "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database"
            f" WHERE datname IN ({names})",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return float(out.stdout.strip())
    except ValueError:
        return float("nan")  # no psql here: the figure is missing, nothing else


#: Keys of a snapshot that are not a process's CPU seconds.
NOT_CPU = ("commits", "ticks_total", "ticks_steal")


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    snapshot = {name: cpu_seconds(p.pid) for name, p in stack.processes.items()}
    snapshot["commits"] = commits(stack)
    ticks = CpuTicks.now()
    snapshot["ticks_total"], snapshot["ticks_steal"] = ticks.total, ticks.steal
    for label, names in (("postgresql", ("postgres",)), ("rabbitmq", ("beam.smp",))):
        pids = set(pids_named(*names))
        total = exited = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):
                # The server's root process (whose parent is not one of its own) also
                # carries its exited children's CPU: backends come and go during a run.
                root = parent_pid(pid) not in pids
                own = cpu_seconds(pid)
                total += cpu_seconds(pid, reaped_children=root) if root else own
                if root:
                    exited += cpu_seconds(pid, reaped_children=True) - own
        snapshot[label] = total
        if label == "postgresql":
            # Of which: processes that ended meanwhile. The services' backends live as long
            # as their pools; what comes and goes is mostly autovacuum's workers.
            snapshot["postgresql_exited"] = exited
    return snapshot


def queues_elsewhere(management_url: str, amqp_url: str) -> int | None:
    """How many queues RabbitMQ holds outside `amqp_url`'s vhost (None if its management
    API does not answer). Every quorum queue has work of its own at idle: a `make dev`
    stack's 147 queues, left in another vhost, added 0.6 % of a core to RabbitMQ's idle
    figure."""
    parts = urlsplit(amqp_url)
    vhost = unquote(parts.path[1:]) or "/"
    queues = management_get(
        management_url,
        parts.username or "guest",
        parts.password or "guest",
        "/api/queues?columns=vhost",
    )
    if not isinstance(queues, list):
        return None
    return sum(1 for queue in queues if queue.get("vhost") != vhost)


async def idle_cost(stack: Stack, seconds: float) -> dict[str, float]:
    """Percent of one core each process uses with no saga running (and the total)."""
    before, began = cpu_snapshot(stack), time.perf_counter()
    await asyncio.sleep(seconds)
    after, elapsed = cpu_snapshot(stack), time.perf_counter() - began
    cost = {k: round(100 * (after[k] - before[k]) / elapsed, 2) for k in after if k not in NOT_CPU}
    cost["all"] = round(sum(v for k, v in cost.items() if k != "postgresql_exited"), 2)
    cost["host_steal_percent"] = _steal(before, after)
    return cost


# --- the client ---------------------------------------------------------------------------


class Client:
    """Publishes orders (persistent, confirmed) and times each saga to its terminal event."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.started: dict[str, float] = {}
        self.latencies: list[float] = []
        self.completed = 0
        self.outcomes: dict[str, int] = {}
        self.completions: asyncio.Queue[None] = asyncio.Queue()
        self._done = asyncio.Condition()

    async def __aenter__(self) -> Client:
        self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=2000)
        self.exchange = await channel.get_exchange("saga.events", ensure=True)
        queue = await channel.declare_queue(f"watch.bench-{uuid.uuid4().hex}", exclusive=True)
        for key in ("order.succeeded", "order.failed"):
            await queue.bind(self.exchange, key)
        await queue.consume(self._on_terminal, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def _on_terminal(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        began = self.started.pop(body["order_id"], None)
        if began is None:
            return
        self.latencies.append(time.perf_counter() - began)
        self.completed += 1
        self.outcomes[body["type"]] = self.outcomes.get(body["type"], 0) + 1
        self.completions.put_nowait(None)
        async with self._done:
            self._done.notify_all()

    async def place(self, scenario: str) -> None:
        order_id = fresh_order_id(scenario)
        body = json.dumps(sample_order(scenario, order_id=order_id)).encode()
        self.started[order_id] = time.perf_counter()
        await self.exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="order.placed",
        )

    async def drain(self, timeout: float) -> None:
        """Wait until every saga placed has ended (so the next measurement starts clean)."""
        async with self._done:
            await asyncio.wait_for(self._done.wait_for(lambda: not self.started), timeout)
        while not self.completions.empty():
            self.completions.get_nowait()

    async def settle(self, timeout: float = 180.0) -> None:
        """Wait until every work queue is empty: the history may still be catching up with
        the last run, and its backlog would take CPU from the next measurement."""
        channel = await self.connection.channel()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                waiting = 0
                for consumer in CONSUMERS:
                    queue = await channel.declare_queue(consumer.queue, passive=True)
                    waiting += queue.declaration_result.message_count or 0
                if not waiting:
                    return
                await asyncio.sleep(0.5)
        finally:
            await channel.close()

    def reset(self) -> None:
        self.latencies.clear()
        self.completed = 0
        self.outcomes.clear()


@dataclass
class Result:
    shape: str
    mix: str
    seconds: float
    sagas: int
    sagas_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    in_flight: int | None = None
    rate: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    cpu_s_per_saga: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    #: PostgreSQL transactions per saga: group commit makes fewer at high load.
    commits_per_saga: float = float("nan")
    #: Percent of the host's CPU time the hypervisor took meanwhile (bench/host.py).
    host_steal_percent: float = float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def pick(mix: str, rng: random.Random) -> str:
    return "ok" if mix == "success" else rng.choice(SCENARIOS)


async def closed_loop(
    client: Client, stack: Stack, *, mix: str, in_flight: int, seconds: float, warmup: float
) -> Result:
    """Keep `in_flight` sagas running: every completion places the next one."""
    await client.settle()
    rng = random.Random(1)
    for _ in range(in_flight):
        await client.place(pick(mix, rng))
    placed_until = time.perf_counter() + warmup + seconds
    measuring = False
    before: dict[str, float] = {}
    began = 0.0
    while time.perf_counter() < placed_until:
        await client.completions.get()
        if not measuring and time.perf_counter() >= placed_until - seconds:
            measuring = True
            client.reset()
            before, began = cpu_snapshot(stack), time.perf_counter()
        await client.place(pick(mix, rng))
    elapsed = time.perf_counter() - began
    result = _result("closed", mix, client, elapsed, before, cpu_snapshot(stack), stack)
    result.in_flight = in_flight
    await client.drain(timeout=60)
    return result


async def soak(
    client: Client, stack: Stack, *, in_flight: int, seconds: float
) -> list[dict[str, Any]]:
    """The closed loop for a long time, a line a minute: is throughput flat, is memory?"""
    rng = random.Random(3)
    for _ in range(in_flight):
        await client.place(pick("success", rng))
    began = time.perf_counter()
    minutes: list[dict[str, Any]] = []
    client.reset()
    mark = began
    while time.perf_counter() - began < seconds:
        await client.completions.get()
        await client.place(pick("success", rng))
        if time.perf_counter() - mark >= 60:
            now = time.perf_counter()
            line = {
                "minute": len(minutes) + 1,
                "sagas_per_s": round(client.completed / (now - mark), 1),
                "p50_ms": round(percentile(client.latencies, 0.5), 1),
                "p99_ms": round(percentile(client.latencies, 0.99), 1),
                "rss_mb": {name: round(rss_mb(p.pid), 1) for name, p in stack.processes.items()},
            }
            print(
                f"  minute {line['minute']:>2}: {line['sagas_per_s']} sagas/s, "
                f"p50 {line['p50_ms']} ms, p99 {line['p99_ms']} ms, RSS MB {line['rss_mb']}",
                flush=True,
            )
            minutes.append(line)
            client.reset()
            mark = now
    await client.drain(timeout=120)
    return minutes


async def open_loop(
    client: Client, stack: Stack, *, mix: str, rate: float, seconds: float
) -> Result:
    await client.settle()
    rng = random.Random(2)
    client.reset()
    before, began = cpu_snapshot(stack), time.perf_counter()
    placed = 0
    while (now := time.perf_counter()) - began < seconds:
        due = int((now - began) * rate) + 1
        while placed < due:
            await client.place(pick(mix, rng))
            placed += 1
        await asyncio.sleep(max(0.0, began + placed / rate - time.perf_counter()))
    await client.drain(timeout=60)
    elapsed = time.perf_counter() - began
    after = cpu_snapshot(stack)
    result = _result("open", mix, client, elapsed, before, after, stack)
    result.rate = rate
    return result


def _result(
    shape: str,
    mix: str,
    client: Client,
    elapsed: float,
    before: dict[str, float],
    after: dict[str, float],
    stack: Stack,
) -> Result:
    done = max(client.completed, 1)
    return Result(
        shape=shape,
        mix=mix,
        seconds=round(elapsed, 2),
        sagas=client.completed,
        sagas_per_s=round(client.completed / elapsed, 1),
        p50_ms=round(percentile(client.latencies, 0.50), 2),
        p95_ms=round(percentile(client.latencies, 0.95), 2),
        p99_ms=round(percentile(client.latencies, 0.99), 2),
        max_ms=round(max(client.latencies, default=float("nan")) * 1000, 2),
        outcomes=dict(client.outcomes),
        cpu_s_per_saga={
            k: round((after[k] - before[k]) / done * 1000, 3) for k in after if k not in NOT_CPU
        },
        commits_per_saga=round((after["commits"] - before["commits"]) / done, 2),
        rss_mb={name: round(rss_mb(p.pid), 1) for name, p in stack.processes.items()},
        host_steal_percent=_steal(before, after),
    )


def _steal(before: dict[str, float], after: dict[str, float]) -> float:
    return CpuTicks(int(after["ticks_total"]), int(after["ticks_steal"])).steal_percent_since(
        CpuTicks(int(before["ticks_total"]), int(before["ticks_steal"]))
    )


# --- the raw ceiling ------------------------------------------------------------------------


async def raw_ceiling(amqp_url: str, *, seconds: float, window: int = 512) -> float:
    """Persistent, confirmed messages per second that one aio-pika process pushes through a
    local durable quorum queue (publish with confirms, consume with acks, same process)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=window)
        name = f"bench.ceiling.{uuid.uuid4().hex[:6]}"
        queue = await consume_channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        consumed = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1

        await queue.consume(on_message)
        body = json.dumps(sample_order("ok")).encode()
        stop = time.perf_counter() + seconds
        began = time.perf_counter()
        start_count = consumed

        async def publisher() -> None:
            while time.perf_counter() < stop:
                await publish_channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=name,
                )

        await asyncio.gather(*(publisher() for _ in range(window)))
        elapsed = time.perf_counter() - began
        rate = (consumed - start_count) / elapsed
        await queue.delete(if_unused=False, if_empty=False)
        return rate


async def latency_floor(amqp_url: str, pg_url: str, *, samples: int = 300) -> dict[str, float]:
    """p50 of one PostgreSQL commit (BEGIN, one INSERT, COMMIT with fsync) and of one
    persistent publish confirmed by a durable quorum queue, one at a time, idle machine."""
    import asyncpg

    def p50(values: list[float]) -> float:
        return round(percentile(values, 0.5), 3)

    conn = await asyncpg.connect(pg_url)
    table = f"bench_floor_{uuid.uuid4().hex[:6]}"
    commits: list[float] = []
    try:
        await conn.execute(f"CREATE TABLE {table} (id int)")
        for i in range(samples):
            began = time.perf_counter()
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES ($1)", i)
            commits.append(time.perf_counter() - began)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
    confirms: list[float] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        name = f"bench.floor.{uuid.uuid4().hex[:6]}"
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        body = json.dumps(sample_order("ok")).encode()
        for _ in range(samples):
            began = time.perf_counter()
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=name,
            )
            confirms.append(time.perf_counter() - began)
        await queue.delete(if_unused=False, if_empty=False)
    return {"pg_commit_p50_ms": p50(commits), "quorum_confirm_p50_ms": p50(confirms)}


# --- profiles -------------------------------------------------------------------------------


def start_profiles(stack: Stack, seconds: float, directory: Path) -> list[Any]:
    """py-spy sampling every service for `seconds` (collapsed stacks, for flamegraph.pl or
    speedscope.app)."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(process.pid),
                "--rate",
                "100",
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(directory / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, process in stack.processes.items()
    ]


def summarise_profile(path: Path, top: int = 12) -> str:
    """The functions where a service spent its CPU (self time), and by library."""
    import collections
    import re

    own: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[re.sub(r":\d+\)$", ")", frames[-1])] += samples
        layers[_layer(frames)] += samples
    if not total:
        return f"{path.stem}: no samples"
    lines = [f"{path.stem}: {total} samples"]
    lines.append(
        "  by library (self time): "
        + ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in layers.most_common())
    )
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


_LAYERS = (
    ("asyncpg/", "asyncpg"),
    ("sqlalchemy/", "sqlalchemy"),
    ("pydantic", "pydantic"),
    ("faststream/", "faststream"),
    ("aio_pika/", "aio-pika"),
    ("aiormq/", "aiormq"),
    ("pamqp/", "aiormq"),
    ("prometheus_client/", "prometheus"),
    ("json/", "json"),
    ("saga_log/", "ours"),
    ("services/", "ours"),
    ("contracts/", "ours"),
    ("asyncio/", "event loop and sockets"),
)


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for marker, name in _LAYERS:
            if marker in frame:
                return name
    return "other"


# --- running it -------------------------------------------------------------------------------


def print_result(result: Result) -> None:
    shape = (
        f"closed, {result.in_flight} in flight"
        if result.shape == "closed"
        else f"open, {result.rate:.0f}/s offered"
    )
    print(
        f"  {result.mix:<8} {shape:<24} {result.sagas_per_s:>7.1f} sagas/s  "
        f"p50 {result.p50_ms:>7.1f}  p95 {result.p95_ms:>7.1f}  p99 {result.p99_ms:>7.1f}  "
        f"max {result.max_ms:>7.1f} ms  ({result.sagas} sagas)"
    )


def print_cpu(result: Result) -> None:
    parts = ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_s_per_saga.items())
    print(
        f"    CPU ms per saga: {parts}; PostgreSQL commits per saga {result.commits_per_saga}; "
        f"{steal_note(result.host_steal_percent)}"
    )
    print(f"    RSS MB: {', '.join(f'{k} {v}' for k, v in result.rss_mb.items())}")


async def run(args: argparse.Namespace, amqp_url: str, stack: Stack) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
    }
    print(f"raw ceiling: measuring for {args.ceiling_seconds:.0f} s ...", flush=True)
    ticks = CpuTicks.now()
    ceiling = await raw_ceiling(amqp_url, seconds=args.ceiling_seconds)
    steal = CpuTicks.now().steal_percent_since(ticks)
    report["raw_ceiling_msgs_per_s"] = round(ceiling, 1)
    report["raw_ceiling_host_steal_percent"] = steal
    print(
        f"  {ceiling:.0f} persistent confirmed msgs/s through one durable quorum queue; "
        f"{steal_note(steal)}"
    )
    floor = await latency_floor(amqp_url, args.postgres_url)
    report["latency_floor"] = floor
    print(
        f"latency floor: one PostgreSQL commit p50 {floor['pg_commit_p50_ms']:.2f} ms, one "
        f"quorum publish-confirm p50 {floor['quorum_confirm_p50_ms']:.2f} ms; a saga is 4 hops "
        f"after the order, each needing both: at least "
        f"{4 * (floor['pg_commit_p50_ms'] + floor['quorum_confirm_p50_ms']):.1f} ms end to end"
    )
    if args.idle_seconds > 0:
        elsewhere = queues_elsewhere(args.management_url, amqp_url)
        if elsewhere:
            print(
                f"  ! RabbitMQ holds {elsewhere} queue(s) outside this run's vhost (a make dev "
                "stack?): their idle work counts in RabbitMQ's figures below",
                flush=True,
            )
        report["queues_elsewhere"] = elsewhere
        await asyncio.sleep(3)  # past the services' start
        print(f"idle: no saga running, {args.idle_seconds:.0f} s ...", flush=True)
        idle = await idle_cost(stack, args.idle_seconds)
        report["idle_percent_of_a_core"] = idle
        shares = ", ".join(f"{k} {v:.2f}" for k, v in idle.items() if k != "host_steal_percent")
        print(f"  % of one core: {shares}; {steal_note(idle['host_steal_percent'])}")
    results: list[Result] = []
    async with Client(stack.amqp_url) as client:
        if args.soak:
            in_flight = args.in_flight[0]
            print(f"soak: closed loop, {in_flight} in flight, {args.soak:.0f} s", flush=True)
            report["soak"] = await soak(client, stack, in_flight=in_flight, seconds=args.soak)
            return report
        if args.profile:
            return await profile(args, client, stack, report)
        for mix in args.mixes:
            if mix == "success":
                # The fixed rates first, on tables the heavy loops have not yet filled with
                # dead rows: otherwise the low rates pay for vacuuming the closed loops'.
                results += await open_loops(client, stack, mix, args.open_rates, args)
            closed_runs = []
            for in_flight in args.in_flight:
                print(
                    f"closed loop, {mix} mix, {in_flight} in flight, {args.seconds:.0f} s ...",
                    flush=True,
                )
                closed = await closed_loop(
                    client,
                    stack,
                    mix=mix,
                    in_flight=in_flight,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
                print_result(closed)
                print_cpu(closed)
                results.append(closed)
                closed_runs.append(closed)
                await asyncio.sleep(2)
            if mix != "success":
                # At fractions of its own best, which is lower than the success mix's.
                top = max(closed_runs, key=lambda r: r.sagas_per_s).sagas_per_s
                rates = [max(1.0, top * f) for f in args.open_fractions]
                results += await open_loops(client, stack, mix, rates, args)
    report["results"] = [asdict(r) for r in results]
    best = max(
        (r for r in results if r.shape == "closed" and r.mix == "success"),
        key=lambda r: r.sagas_per_s,
        default=None,
    )
    if best is not None:
        # Each saga of the success mix publishes five messages (the order and four events)
        # and makes ten deliveries (five to the services, five to the history); the ceiling
        # is per message, so the ratio compares sagas/s with the ceiling's messages/s.
        report["ratio_sagas_to_ceiling_msgs"] = round(best.sagas_per_s / ceiling, 4)
        print(
            f"ratio: {best.sagas_per_s:.1f} sagas/s / {ceiling:.0f} msgs/s = "
            f"{best.sagas_per_s / ceiling:.3f} (one saga = 5 published messages, 10 deliveries)"
        )
    return report


async def open_loops(
    client: Client, stack: Stack, mix: str, rates: list[float], args: argparse.Namespace
) -> list[Result]:
    """An open loop of `mix` at each of `rates`, one after the other, each printed."""
    results = []
    for rate in rates:
        opened = await open_loop(client, stack, mix=mix, rate=rate, seconds=args.open_seconds)
        print_result(opened)
        print_cpu(opened)
        results.append(opened)
        await asyncio.sleep(1)
    return results


async def profile(
    args: argparse.Namespace, client: Client, stack: Stack, report: dict[str, Any]
) -> dict[str, Any]:
    """The closed loop (success mix) with py-spy sampling every service meanwhile."""
    in_flight = args.in_flight[-1]
    directory = RESULTS / "profiles"
    print(
        f"profile: closed loop, success mix, {in_flight} in flight, {args.seconds:.0f} s, "
        f"py-spy at 100 Hz on every service ...",
        flush=True,
    )
    loop = asyncio.create_task(
        closed_loop(
            client,
            stack,
            mix="success",
            in_flight=in_flight,
            seconds=args.seconds,
            warmup=args.warmup,
        )
    )
    await asyncio.sleep(args.warmup)
    spies = start_profiles(stack, args.seconds - 1, directory)
    result = await loop
    for spy in spies:
        await asyncio.to_thread(spy.wait)
    print_result(result)
    print_cpu(result)
    print("where each service spends its CPU (py-spy, self time):")
    for name in stack.processes:
        path = directory / f"{name}.txt"
        print(summarise_profile(path) if path.exists() else f"{name}: no profile (py-spy?)")
    print(f"collapsed stacks in {directory}/ (flamegraph.pl or https://speedscope.app)")
    report["profile"] = {"result": asdict(result), "directory": str(directory)}
    return report


def stack_settings(*, soak: bool = False) -> dict[str, str]:
    """The services' settings under the benchmark (python -m bench, python -m bench.peers)."""
    return {
        "SAGA_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "SAGA_STEP_TIMEOUT": "60",
        "SAGA_RETRY_FIRST_DELAY": "2",
        "SAGA_RETRY_MAX_DELAY": "8",
        # Short retention, so that a soak run shows the pruning keeping the tables flat.
        "SAGA_OUTBOX_RETENTION": "120" if soak else "3600",
        "SAGA_INBOX_RETENTION": "300" if soak else "604800",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--short", action="store_true", help="under a minute (CI)")
    parser.add_argument(
        "--soak", type=float, default=0.0, help="instead: run this many seconds, a line a minute"
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--in-flight", type=int, nargs="+", default=[64, 256], help="closed loop levels"
    )
    parser.add_argument("--profile", action="store_true", help="instead: profile the services")
    parser.add_argument("--open-seconds", type=float, default=15.0)
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--mixes", nargs="+", default=["success", "sample"])
    parser.add_argument(
        "--open-fractions",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 0.75, 0.9],
        help="the sample mix's open loops, as fractions of its best closed loop",
    )
    parser.add_argument(
        "--open-rates",
        type=float,
        nargs="+",
        default=[20.0, 60.0, 100.0],
        help="the success mix's open loops, sagas/s",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=20.0, help="measure the idle cost this long"
    )
    parser.add_argument(
        "--hops",
        type=int,
        default=None,
        help="sagas for the per-hop breakdown at the end (default 40, 10 with --short; 0: none)",
    )
    parser.add_argument(
        "--hops-only", action="store_true", help="only the per-hop breakdown (to hops.json)"
    )
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.warmup, args.open_seconds, args.ceiling_seconds = 8.0, 2.0, 5.0, 4.0
        args.open_fractions = [0.5]
        args.open_rates = [20.0, 60.0]
        args.idle_seconds = 6.0
        args.in_flight = args.in_flight[-1:]
    if args.hops is None:
        args.hops = 10 if args.short else 40
    if args.soak or args.profile:
        args.hops = 0
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    management = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
    pg = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    args.postgres_url = pg
    args.management_url = management
    with rabbit_vhost(amqp_url, management) as url, provisioned(url, management) as broker:
        stack = make_stack(broker, pg, faults="seed", **stack_settings(soak=bool(args.soak)))
        try:
            for service in SERVICES:
                stack.start(service)
            if args.hops_only:
                report = {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "command": " ".join(["python -m bench", *sys.argv[1:]]),
                }
            else:
                report = asyncio.run(run(args, url, stack))
            if args.hops:
                report["hops"] = hops.measure(stack, SERVICES, sagas=args.hops)
        finally:
            stack.stop_all()
            names = [u.rsplit("/", 1)[1] for u in stack.database_urls.values()]
            asyncio.run(drop_databases(pg, names))
    RESULTS.mkdir(exist_ok=True)
    # Alone, the breakdown does not overwrite the last full run's figures.
    results = RESULTS / ("hops.json" if args.hops_only else "latest.json")
    results.write_text(json.dumps(report, indent=2))
    print(f"figures written to {results}")


if __name__ == "__main__":
    main()
