"""`make bench-peers` (python -m bench.peers): the order saga on this project, on Restate and
on DBOS, back to back on this machine, under the same load, and one table.

    python -m bench.peers                  the full run (about 6 minutes)
    python -m bench.peers --short          a quick one (about 2 minutes), to see that it works
    python -m bench.peers --seconds 30     each closed loop measured for 30 s
    python -m bench.peers --systems ours restate    a subset (the table keeps every row)

The saga is the order saga's success path (ProcessOrder, ProcessPayment, ReserveInventory),
each step in its own PostgreSQL database, with its compensations (ReleaseInventory,
ProcessRefund, UpdateOrderStatus) when a step fails; everything durable with each
system's defaults:

- this project: the services as processes with the saga history, as `make bench` runs
  them (bench/run.py), driven by publishing orders and waiting for each terminal event;
- Restate: restate-server 1.7 (npm) with its data in a temporary folder, the saga a
  workflow of restate-sdk 1.2 served by one hypercorn worker over HTTP/2 (h2c), called
  through the ingress and waited for (bench/peers/restate_app.py, restate_driver.py);
- DBOS: dbos 3.4, its system database in PostgreSQL, the saga a workflow of three steps in
  one process that starts the sagas and waits for their results (bench/peers/dbos_app.py).

The peers are installed into .peers/ (never the project's .venv), started and stopped
here, and each peer's databases are made afresh and dropped at the end. Before its
measurements each peer runs the sample's seven scenarios once and the harness checks each
ends as the sample's (compensations included). The load is the all-success mix: one saga
at a time (p50, p99), then closed loops at 8, 16, 64 and 256 in flight (sagas/s, p50, p99).
It prints one table and writes the figures to bench-results/peers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.host import NOISY_STEAL_PERCENT, CpuTicks, busy, steal_note
from bench.peers.install import (
    HERE,
    PEERS,
    RESTATE_SERVER_VERSION,
    Installed,
    InstallError,
    ensure_installed,
    pip_versions,
)
from bench.run import (
    RESULTS,
    SERVICES,
    Client,
    closed_loop,
    percentile,
    stack_settings,
)
from contracts.samples import EXPECTED, SCENARIOS, fresh_order_id, sample_order
from tests.support import drop_databases, free_port, make_stack, provisioned, rabbit_vhost

SYSTEMS = ("ours", "restate", "dbos")
LABELS = {"ours": "this project", "restate": "Restate", "dbos": "DBOS"}
LOGS = PEERS / "logs"


class PeerFailed(RuntimeError):
    pass


# --- figures ------------------------------------------------------------------------------


def summarise(latencies: list[float], seconds: float | None = None) -> dict[str, Any]:
    """The figures of one measurement, with bench/run.py's percentile (ms)."""
    figures: dict[str, Any] = {
        "sagas": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
    }
    if seconds is not None:
        figures["sagas_per_s"] = round(len(latencies) / seconds, 1)
    return figures


def line(label: str, figures: dict[str, Any]) -> str:
    rate = f"{figures['sagas_per_s']:>7.1f} sagas/s  " if "sagas_per_s" in figures else ""
    return (
        f"  {label:<22} {rate}p50 {figures['p50_ms']:>8.1f}  p99 {figures['p99_ms']:>8.1f}  "
        f"max {figures['max_ms']:>8.1f} ms  ({figures['sagas']} sagas)"
    )


# --- processes ----------------------------------------------------------------------------


class Processes:
    """What a peer run started, each in a process group of its own, stopped (the whole
    group: hypercorn's worker too) whatever happens."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: dict[str, Path] = {}

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.logs[name] = LOGS / f"{name}.log"
        log = self.logs[name].open("wb")
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.started.append((name, process))
        return process

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def check(self, name: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            raise PeerFailed(
                f"{name} exited with code {process.returncode}; its log ({self.logs[name]}):\n"
                f"{self.tail(name)}"
            )

    def stop_all(self) -> None:
        for _name, process in reversed(self.started):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, process in reversed(self.started):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # Whatever of its group outlived it (hypercorn's worker).
            _signal_group(process, signal.SIGKILL)
        self.started.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


@contextmanager
def shielded() -> Iterator[None]:
    """Clean-up that a second Ctrl-C does not cut short (the signal waits until it ends)."""
    stop = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_until(what: str, probe: Any, timeout: float, processes: Processes) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for name, process in processes.started:
            processes.check(name, process)
        try:
            last = probe()
            if last:
                return last
        except (urllib.error.URLError, OSError, ConnectionError) as exc:
            last = exc
        time.sleep(0.2)
    raise PeerFailed(f"{what}: not ready within {timeout:.0f} s (last: {last!r})")


# --- databases ----------------------------------------------------------------------------


def database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


async def _admin(server_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(database_url(server_url, "postgres"))


async def create_databases(server_url: str, names: dict[str, str]) -> None:
    """A fresh database per step (role -> name), with its table (steps.SCHEMA)."""
    sys.path.insert(0, str(HERE))
    try:
        from steps import SCHEMA  # the peers' own module, standard library and asyncpg
    finally:
        sys.path.remove(str(HERE))
    conn = await _admin(server_url)
    try:
        for name in names.values():
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    for role, name in names.items():
        conn = await asyncpg.connect(database_url(server_url, name))
        try:
            await conn.execute(SCHEMA[role])
        finally:
            await conn.close()


async def drop(server_url: str, names: list[str]) -> None:
    conn = await _admin(server_url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def check_scenarios(
    server_url: str,
    names: dict[str, str],
    results: list[dict[str, Any]],
    scenario_of: dict[str, str],
) -> list[str]:
    """Each scenario's saga ends as the sample's: outcome, the error of a failed
    compensation, and the rows of each step's database (SEED_BEHAVIOUR.md)."""
    problems = []
    conns = {role: await asyncpg.connect(database_url(server_url, n)) for role, n in names.items()}
    try:
        for item in results:
            order_id = item["order_id"]
            scenario = scenario_of[order_id]
            want = EXPECTED[scenario]
            if "error" in item:
                problems.append(f"scenario {scenario}: the call failed: {item['error']}")
                continue
            result = item["result"]
            status = await conns["orders"].fetchval(
                "SELECT order_status FROM orders WHERE order_id = $1", order_id
            )
            payments = [
                r["type"]
                for r in await conns["payments"].fetch(
                    "SELECT type FROM payments WHERE order_id = $1 ORDER BY type", order_id
                )
            ]
            inventory = [
                r["type"]
                for r in await conns["inventory"].fetch(
                    "SELECT type FROM inventory WHERE order_id = $1 ORDER BY type", order_id
                )
            ]
            got = {
                "terminal": result.get("terminal"),
                "order_status": status,
                "payments": payments,
                "inventory": inventory,
                "compensation_error": result.get("compensation_error"),
            }
            wanted = {key: want[key] for key in got}
            if got != wanted:
                problems.append(f"scenario {scenario}: got {got}, want {wanted}")
    finally:
        for conn in conns.values():
            await conn.close()
    return problems


# --- the load, as the peers run it ---------------------------------------------------------


def load_spec(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The phases a peer's driver runs (load.py), and the scenario of each check order."""
    scenario_orders = []
    scenario_of = {}
    for scenario in SCENARIOS:
        order_id = fresh_order_id(scenario)
        scenario_of[order_id] = scenario
        scenario_orders.append(sample_order(scenario, order_id=order_id))
    spec = {
        "template": sample_order("ok"),
        # The prefix of contracts.samples.fresh_order_id("ok"): the success path.
        "prefix": fresh_order_id("ok")[:2],
        "scenarios": scenario_orders,
        "sequential": {"count": args.sequential, "warmup": args.sequential_warmup},
        "closed": [
            {"in_flight": n, "seconds": args.seconds, "warmup": args.warmup} for n in args.in_flight
        ],
        "pause": 2.0,
    }
    return spec, scenario_of


def drive(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    processes: Processes,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Run a peer's driver and collect its phases, printing each as it ends."""
    expected_s = (
        60
        + (args.sequential + args.sequential_warmup) * 2.0
        + len(args.in_flight) * (args.seconds + args.warmup + 60)
    )
    process = processes.start(name, argv, env=env, cwd=HERE, stdout=subprocess.PIPE)
    watchdog = threading.Timer(expected_s, lambda: _signal_group(process, signal.SIGKILL))
    watchdog.daemon = True
    watchdog.start()
    figures: dict[str, Any] = {"closed": {}}
    assert process.stdout is not None
    n_closed = 0
    kind = None
    print("  scenario check (the sample's seven scenarios, once each) ...", flush=True)
    try:
        for raw in process.stdout:
            try:
                phase = json.loads(raw)
            except ValueError:
                continue
            kind = phase.get("phase")
            if kind == "scenarios":
                figures["scenarios"] = phase["results"]
                _announce_sequential(args)
            elif kind == "sequential":
                figures["sequential"] = {
                    **summarise(phase["latencies"]),
                    "outcomes": phase["outcomes"],
                }
                _warn(phase)
                print(line("one at a time", figures["sequential"]), flush=True)
                if args.in_flight:
                    _announce_closed(args, args.in_flight[0])
            elif kind == "closed":
                result = {
                    **summarise(phase["latencies"], phase["seconds"]),
                    "outcomes": phase["outcomes"],
                }
                figures["closed"][str(phase["in_flight"])] = result
                _warn(phase)
                print(line(f"{phase['in_flight']} in flight", result), flush=True)
                n_closed += 1
                if n_closed < len(args.in_flight):
                    _announce_closed(args, args.in_flight[n_closed])
            elif kind == "done":
                break
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            if kind != "done":
                raise
            # Every figure is in; stop_all ends what is slow to exit.
    finally:
        watchdog.cancel()
    if process.returncode not in (0, None) or "sequential" not in figures:
        raise PeerFailed(
            f"{name} ended with code {process.returncode} before its figures were all in; its "
            f"log ({processes.logs[name]}):\n{processes.tail(name)}"
        )
    return figures


def _announce_sequential(args: argparse.Namespace) -> None:
    print(
        f"  one saga at a time: {args.sequential_warmup} to warm up, then {args.sequential} "
        "measured ...",
        flush=True,
    )


def _announce_closed(args: argparse.Namespace, in_flight: int) -> None:
    print(
        f"  closed loop, {in_flight} in flight: {args.warmup:.0f} s to warm up, "
        f"{args.seconds:.0f} s measured ...",
        flush=True,
    )


def _warn(phase: dict[str, Any]) -> None:
    if phase.get("errors"):
        print(f"  ! {phase['outcomes'].get('error', 0)} calls failed, e.g. {phase['errors'][0]}")
    odd = {k: v for k, v in phase.get("outcomes", {}).items() if k not in ("OrderSucceeded",)}
    if odd:
        print(f"  ! outcomes other than OrderSucceeded: {odd}")


def peer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PYTHONPATH"] = str(HERE)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


#: This run's suffix of the peers' database names: two runs at once (two clones on one
#: PostgreSQL) never share a database.
RUN = uuid.uuid4().hex[:6]


def step_databases(peer: str) -> dict[str, str]:
    """Each step's database of `peer` (role -> name), e.g. peer_restate_orders_<run>."""
    return {role: f"peer_{peer}_{role}_{RUN}" for role in ("orders", "payments", "inventory")}


# --- Restate --------------------------------------------------------------------------------


def run_restate(args: argparse.Namespace, installed: Installed) -> dict[str, Any]:
    pg = args.postgres_url
    names = step_databases("restate")
    processes = Processes()
    data = Path(tempfile.mkdtemp(prefix="peers-restate-"))
    spec, scenario_of = load_spec(args)
    spec_path = data / "spec.json"
    spec_path.write_text(json.dumps(spec))
    try:
        asyncio.run(create_databases(pg, names))
        ports = {k: free_port() for k in ("ingress", "admin", "node", "service")}
        ingress = f"http://127.0.0.1:{ports['ingress']}"
        admin = f"http://127.0.0.1:{ports['admin']}"
        print(
            f"  starting restate-server {RESTATE_SERVER_VERSION} (data in {data}) ...", flush=True
        )
        processes.start(
            "restate-server",
            [
                str(installed.restate_server),
                "--no-logo",
                "--node-name",
                "peers",
                "--base-dir",
                str(data / "restate-data"),
            ],
            env={
                **os.environ,
                "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ports['ingress']}",
                "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{ports['admin']}",
                "RESTATE_BIND_ADDRESS": f"127.0.0.1:{ports['node']}",
                "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{ports['node']}/",
                # No usage reports (this machine reaches no such host); nothing about
                # durability changes.
                "RESTATE_DISABLE_TELEMETRY": "true",
            },
            cwd=data,
        )
        wait_until(
            "restate-server's admin API",
            lambda: http("GET", f"{admin}/health")[0] == 200,
            90,
            processes,
        )
        print("  starting the saga's service: hypercorn, one worker, HTTP/2 (h2c) ...", flush=True)
        processes.start(
            "restate-service",
            [
                str(installed.bin(installed.restate_python, "hypercorn")),
                "--worker-class",
                "uvloop",
                "--workers",
                "1",
                "--bind",
                f"127.0.0.1:{ports['service']}",
                "restate_app:app",
            ],
            env=peer_env(**{f"PEER_DB_{r.upper()}": database_url(pg, n) for r, n in names.items()}),
            cwd=HERE,
        )
        service = f"http://127.0.0.1:{ports['service']}"

        def register() -> Any:
            status, body = http("POST", f"{admin}/deployments", {"uri": service}, timeout=30)
            return body if status in (200, 201) else None

        registered = wait_until("registering the deployment", register, 90, processes)
        deployment = registered.get("id")
        _status, detail = http("GET", f"{admin}/deployments/{deployment}")
        protocol = {
            k: detail.get(k) for k in ("protocol_type", "http_version") if isinstance(detail, dict)
        }
        print(f"  deployment {deployment} registered: {protocol or detail}", flush=True)
        wait_until(
            "the ingress",
            lambda: http("GET", f"{ingress}/restate/health")[0] == 200,
            60,
            processes,
        )
        figures = drive(
            "restate-driver",
            [str(installed.restate_python), "restate_driver.py", ingress, str(spec_path)],
            env=peer_env(),
            processes=processes,
            args=args,
        )
        figures["deployment"] = protocol
        figures["scenario_problems"] = asyncio.run(
            check_scenarios(pg, names, figures.pop("scenarios", []), scenario_of)
        )
        return figures
    finally:
        with shielded():
            processes.stop_all()
            shutil.rmtree(data, ignore_errors=True)
            asyncio.run(drop(pg, list(names.values())))


# --- DBOS -------------------------------------------------------------------------------------


def run_dbos(args: argparse.Namespace, installed: Installed) -> dict[str, Any]:
    pg = args.postgres_url
    names = step_databases("dbos")
    system = f"peer_dbos_system_{RUN}"
    processes = Processes()
    spec, scenario_of = load_spec(args)
    folder = Path(tempfile.mkdtemp(prefix="peers-dbos-"))
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    try:
        asyncio.run(create_databases(pg, names))
        asyncio.run(drop(pg, [system]))  # DBOS makes its system database on launch
        print("  starting the DBOS process (it launches DBOS, then runs the sagas) ...", flush=True)
        figures = drive(
            "dbos",
            [str(installed.dbos_python), "dbos_app.py", str(spec_path)],
            env=peer_env(
                PEER_DBOS_SYSTEM_URL=database_url(pg, system),
                **{f"PEER_DB_{r.upper()}": database_url(pg, n) for r, n in names.items()},
            ),
            processes=processes,
            args=args,
        )
        figures["scenario_problems"] = asyncio.run(
            check_scenarios(pg, names, figures.pop("scenarios", []), scenario_of)
        )
        return figures
    finally:
        with shielded():
            processes.stop_all()
            shutil.rmtree(folder, ignore_errors=True)
            asyncio.run(drop(pg, [*names.values(), system]))


# --- this project -----------------------------------------------------------------------------


async def measure_ours(args: argparse.Namespace, stack: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {"closed": {}}
    async with Client(stack.amqp_url) as client:
        await client.settle()
        _announce_sequential(args)
        for i in range(args.sequential_warmup + args.sequential):
            if i == args.sequential_warmup:
                client.reset()
            await client.place("ok")
            await asyncio.wait_for(client.completions.get(), 60)
        figures["sequential"] = {
            **summarise(list(client.latencies)),
            "outcomes": dict(client.outcomes),
        }
        print(line("one at a time", figures["sequential"]), flush=True)
        await asyncio.sleep(2)
        for in_flight in args.in_flight:
            _announce_closed(args, in_flight)
            result = await closed_loop(
                client,
                stack,
                mix="success",
                in_flight=in_flight,
                seconds=args.seconds,
                warmup=args.warmup,
            )
            figures["closed"][str(in_flight)] = {
                "sagas": result.sagas,
                "sagas_per_s": result.sagas_per_s,
                "p50_ms": result.p50_ms,
                "p95_ms": result.p95_ms,
                "p99_ms": result.p99_ms,
                "max_ms": result.max_ms,
                "outcomes": result.outcomes,
                "cpu_ms_per_saga": result.cpu_s_per_saga,
            }
            print(line(f"{in_flight} in flight", figures["closed"][str(in_flight)]), flush=True)
            await asyncio.sleep(2)
    return figures


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    management = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
    pg = args.postgres_url
    print(f"  starting the services ({', '.join(SERVICES)}) on a fresh vhost ...", flush=True)
    with rabbit_vhost(amqp_url, management) as url, provisioned(url, management) as broker:
        stack = make_stack(broker, pg, faults="seed", **stack_settings())
        try:
            for service in SERVICES:
                stack.start(service)
            return asyncio.run(measure_ours(args, stack))
        finally:
            with shielded():
                stack.stop_all()
                names = [u.rsplit("/", 1)[1] for u in stack.database_urls.values()]
                asyncio.run(drop_databases(pg, names))


SETUP = {
    "ours": "order, payment, inventory and the saga history (saga_log) as processes, as make "
    "bench runs them (bench/run.py stack_settings); RabbitMQ quorum queues, persistent "
    "messages, publisher confirms, outbox and inbox in every handler; the client publishes "
    "each order and waits for its terminal event",
    "restate": "restate-server, one node, default configuration (log on its own log-server, "
    "RocksDB WAL fsync on), telemetry off, data in a temporary folder; the saga a "
    "restate-sdk Workflow keyed by order id, each step a ctx.run, served by hypercorn, one "
    "worker, uvloop, HTTP/2 cleartext (h2c, BidiStream); the client (aiohttp, a process of "
    "its own) calls POST /OrderSaga/{order_id}/run on the ingress and waits for the result",
    "dbos": "DBOS Transact, default configuration, system database in PostgreSQL; the saga "
    "an async @DBOS.workflow (workflow id = order id) of async @DBOS.step functions; one "
    "process (uvloop) starts each saga with DBOS.start_workflow_async and awaits its handle",
    "steps": "each step one INSERT ... ON CONFLICT DO NOTHING (keyed by order id and step) in "
    "its own PostgreSQL database, over asyncpg (the peers: a pool of asyncpg's default size "
    "per database)",
}


async def postgres_settings(server_url: str) -> dict[str, str]:
    conn = await _admin(server_url)
    try:
        return {
            name: str(await conn.fetchval(f"SHOW {name}"))
            for name in ("server_version", "fsync", "synchronous_commit", "max_connections")
        }
    finally:
        await conn.close()


# --- the table ----------------------------------------------------------------------------------


def columns(in_flight: list[int]) -> list[tuple[str, str, str, str]]:
    """(group, heading, where, better): the table's columns, each a figure of a system."""
    cols = [
        ("one at a time", "p50 ms", "sequential", "p50_ms"),
        ("", "p99 ms", "sequential", "p99_ms"),
    ]
    for n in in_flight:
        cols += [
            (f"{n} in flight", "sagas/s", str(n), "sagas_per_s"),
            ("", "p50 ms", str(n), "p50_ms"),
            ("", "p99 ms", str(n), "p99_ms"),
        ]
    return cols


def figure(system: dict[str, Any] | None, where: str, key: str) -> float | None:
    if not system or "error" in system:
        return None
    block = (
        system.get("sequential") if where == "sequential" else system.get("closed", {}).get(where)
    )
    value = (block or {}).get(key)
    return None if value is None or value != value else float(value)  # NaN: no figure


def ratios(report: dict[str, Any], in_flight: list[int]) -> list[dict[str, Any]]:
    """Ours ÷ the best peer, column by column: best is the highest sagas/s, the lowest
    latency."""
    out = []
    current = ""
    for group, heading, where, key in columns(in_flight):
        current = group or current
        ours = figure(report["systems"].get("ours"), where, key)
        peers = {
            p: v
            for p in ("restate", "dbos")
            if (v := figure(report["systems"].get(p), where, key)) is not None
        }
        best = None
        if peers:
            pick = max if key == "sagas_per_s" else min
            best = pick(peers, key=lambda p: peers[p])
        ratio = round(ours / peers[best], 3) if ours is not None and best and peers[best] else None
        out.append(
            {
                "column": f"{current}: {heading}",
                "figure": key,
                "better": "higher" if key == "sagas_per_s" else "lower",
                "ours": ours,
                "best_peer": best,
                "best_peer_value": peers[best] if best else None,
                "ratio": ratio,
            }
        )
    return out


def _cell(text: str, width: int, first: bool, mark: str = " ") -> str:
    """One cell: a bar where a group of columns begins, the text right-aligned, a mark."""
    return ("|" if first else " ") + f"{text:>{width}}" + mark


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(report: dict[str, Any], in_flight: list[int]) -> str:
    cols = columns(in_flight)
    rows = report["ratios"]
    label_w, w = 14, 7  # each cell: bar or space, w characters, mark
    groups: list[tuple[str, int]] = []
    for group, *_ in cols:
        if group:
            groups.append((group, 1))
        else:
            groups[-1] = (groups[-1][0], groups[-1][1] + 1)
    out = [
        " " * label_w + "".join(f"{'| ' + g:<{(w + 2) * n}}" for g, n in groups).rstrip(),
        " " * label_w + "".join(_cell(c[1], w, bool(c[0])) for c in cols),
    ]
    rule = "-" * len(out[1])
    out.append(rule)
    for system in SYSTEMS:
        data = report["systems"].get(system)
        out.append(
            f"{LABELS[system]:<{label_w}}"
            + "".join(
                _cell(
                    _number(figure(data, where, key)),
                    w,
                    bool(group),
                    "*" if system == r["best_peer"] else " ",
                )
                for (group, _h, where, key), r in zip(cols, rows, strict=True)
            )
        )
    out.append(rule)
    steals = {
        system: data["host_steal_percent"]
        for system in SYSTEMS
        if isinstance(data := report["systems"].get(system), dict) and "host_steal_percent" in data
    }
    out.append(
        f"{'ours ÷ best':<{label_w}}"
        + "".join(
            _cell("—" if r["ratio"] is None else f"{r['ratio']:.2f}", w, bool(c[0]))
            for c, r in zip(cols, rows, strict=True)
        )
    )
    if steals:
        # A system that ran while the hypervisor took more CPU looks slower than it is.
        noisy = any(percent > NOISY_STEAL_PERCENT for percent in steals.values())
        out.append(
            "CPU time the hypervisor took during each system's run (steal): "
            + ", ".join(f"{LABELS[system]} {percent:.1f} %" for system, percent in steals.items())
            + (f"; above {NOISY_STEAL_PERCENT:.0f} % the figures are noisy" if noisy else "")
        )
    return "\n".join(line.rstrip() for line in out)


# --- running it -----------------------------------------------------------------------------------


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (make killed, terminal closed) end the run through the same
    clean-up as Ctrl-C; so does SIGINT even where the shell started us ignoring it (in the
    background)."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--short", action="store_true", help="a quick run: 5 s loops, 50 sagas one at a time"
    )
    parser.add_argument(
        "--seconds", type=float, help="each closed loop's measured seconds (default 20, --short 5)"
    )
    parser.add_argument(
        "--warmup", type=float, help="each closed loop's warm-up seconds (default 3, --short 1)"
    )
    parser.add_argument(
        "--sequential", type=int, help="sagas measured one at a time (default 200, --short 50)"
    )
    parser.add_argument("--in-flight", type=int, nargs="+", default=[8, 16, 64, 256])
    parser.add_argument(
        "--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="run only these"
    )
    args = parser.parse_args(argv)
    short = args.short
    args.seconds = args.seconds if args.seconds is not None else (5.0 if short else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if short else 3.0)
    args.sequential = args.sequential if args.sequential is not None else (50 if short else 200)
    args.sequential_warmup = 5 if short else 20
    args.postgres_url = os.environ.get(
        "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    began = time.monotonic()
    try:
        postgres = asyncio.run(postgres_settings(args.postgres_url))
    except (OSError, asyncpg.PostgresError) as exc:
        sys.exit(
            f"bench-peers: PostgreSQL at {args.postgres_url} (BENCH_POSTGRES_URL) did not "
            f"answer: {exc}"
        )
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": " ".join(
            ["python -m bench.peers", *(argv if argv is not None else sys.argv[1:])]
        ),
        "settings": {
            "sequential": args.sequential,
            "sequential_warmup": args.sequential_warmup,
            "closed_seconds": args.seconds,
            "closed_warmup_seconds": args.warmup,
            "in_flight": args.in_flight,
            "mix": "success",
        },
        "setup": SETUP,
        "postgresql": postgres,
        "systems": {},
    }
    failures = []
    with terminate_as_interrupt():
        try:
            installed = ensure_installed(
                restate="restate" in args.systems, dbos="dbos" in args.systems
            )
        except InstallError as exc:
            sys.exit(f"bench-peers: {exc}")
        report["versions"] = {}
        if "restate" in args.systems:
            report["versions"]["restate-server"] = RESTATE_SERVER_VERSION
            report["versions"].update(
                pip_versions(
                    installed.restate_python,
                    "restate-sdk",
                    "hypercorn",
                    "asyncpg",
                    "aiohttp",
                    "uvloop",
                )
            )
        if "dbos" in args.systems:
            report["versions"]["dbos"] = pip_versions(installed.dbos_python, "dbos")["dbos"]
        runners = {
            "ours": lambda: run_ours(args),
            "restate": lambda: run_restate(args, installed),
            "dbos": lambda: run_dbos(args, installed),
        }
        for system in args.systems:
            print(f"{LABELS[system]}:", flush=True)
            load = busy()
            if load > 0.25:
                print(
                    f"  ! the machine is {100 * load:.0f}% busy before this system starts "
                    "(another process?): its figures will be noisy",
                    flush=True,
                )
            t, ticks = time.monotonic(), CpuTicks.now()
            try:
                report["systems"][system] = runners[system]()
            except KeyboardInterrupt:
                print(
                    f"\nbench-peers: interrupted during {LABELS[system]}; stopped what it started"
                )
                raise SystemExit(130) from None
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                print(f"  ! {LABELS[system]} failed: {message}", flush=True)
                report["systems"][system] = {"error": message}
                failures.append(system)
                continue
            report["systems"][system]["cpu_busy_before"] = round(load, 2)
            steal = CpuTicks.now().steal_percent_since(ticks)
            report["systems"][system]["host_steal_percent"] = steal
            problems = report["systems"][system].get("scenario_problems")
            if problems:
                failures.append(system)
                print(f"  ! scenario check: {len(problems)} of {len(SCENARIOS)} wrong:")
                for problem in problems:
                    print(f"    {problem}")
            elif problems is not None:
                print(f"  scenario check: all {len(SCENARIOS)} scenarios end as the sample's")
            print(f"  ({time.monotonic() - t:.0f} s; {steal_note(steal)})", flush=True)
    report["ratios"] = ratios(report, args.in_flight)
    report["run_seconds"] = round(time.monotonic() - began, 1)
    print()
    print(
        f"The order saga, all-success mix, {args.sequential} sagas one at a time, closed loops "
        f"measured {args.seconds:.0f} s each after {args.warmup:.0f} s; latency ms from the call "
        "that starts a saga to its end:"
    )
    print(table(report, args.in_flight))
    print(
        "* the best peer in its column. ours ÷ best: for sagas/s above 1 means we are faster; "
        "for p50/p99 below 1 means we are faster (lower latency is better)."
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(report, indent=2))
    print(
        f"figures written to {RESULTS / 'peers.json'}; "
        f"the whole run took {report['run_seconds']:.0f} s"
    )
    if failures:
        sys.exit(f"bench-peers: {', '.join(LABELS[s] for s in failures)} failed (see above)")
