"""A short closed loop against a composed stack that is already running (`make up` or
`make up-cluster`): sagas/s, latency, and CPU per saga of every container, read from the
engine's cgroups. For docs/scaling.md's comparisons: one node against three, one replica
of each service against two.

    python -m bench.compose --project saga-cluster --label cluster          # 20 s, 64 in flight
    python -m bench.compose --project saga-cluster --label cluster-1-replica \\
        --stop order-2 payment-2 inventory-2 fare-2 accounting-2 saga-log-2

`--stop` stops those compose services for the measurement and starts them again after.
The client connects as `client` (password from .env) to `--amqp-port` (node 1's, 5672 by
default). Figures go to bench-results/compose-<label>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run import RESULTS, Client, percentile
from saga_log.ops.env import broker_url, local_env
from tests.support import ROOT


def containers(project: str) -> dict[str, str]:
    """The running containers of a compose project: compose service -> full id."""
    listed = subprocess.run(
        [
            "docker",
            "ps",
            "--no-trunc",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--format",
            '{{.ID}} {{.Label "com.docker.compose.service"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in listed.splitlines():
        container, _, service = line.partition(" ")
        found[service] = container
    return found


def cpu_seconds(container: str) -> float:
    """The CPU time the container has used, from its cgroup (v1 with the cgroupfs
    driver, or v2 under either driver)."""
    candidates = (
        (Path(f"/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage"), 1e-9),
        (Path(f"/sys/fs/cgroup/docker/{container}/cpu.stat"), 1e-6),
        (Path(f"/sys/fs/cgroup/system.slice/docker-{container}.scope/cpu.stat"), 1e-6),
    )
    for path, unit in candidates:
        if path.exists():
            text = path.read_text()
            if path.name == "cpu.stat":
                text = next(x for x in text.splitlines() if x.startswith("usage_usec")).split()[1]
            return int(text) * unit
    raise RuntimeError(f"no cgroup CPU accounting found for container {container[:12]}")


def group(service: str) -> str:
    """The part of the system a compose service is: replicas and nodes add up."""
    if service.startswith("rabbitmq"):
        return "rabbitmq"
    if service.endswith("-db"):
        return "postgresql"
    return service.removesuffix("-2")


async def closed_loop(
    client: Client, project: str, *, in_flight: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """Keep `in_flight` all-success sagas running; measure the last `seconds`."""
    ids = containers(project)
    for _ in range(in_flight):
        await client.place("ok")
    measure_from = time.perf_counter() + warmup
    until = measure_from + seconds
    before: dict[str, float] = {}
    began = 0.0
    while time.perf_counter() < until:
        await client.completions.get()
        if not before and time.perf_counter() >= measure_from:
            client.reset()
            before = {name: cpu_seconds(c) for name, c in ids.items()}
            began = time.perf_counter()
        await client.place("ok")
    elapsed = time.perf_counter() - began
    after = {name: cpu_seconds(c) for name, c in ids.items()}
    await client.drain(timeout=120)
    done = max(client.completed, 1)
    per_container = {n: round((after[n] - before[n]) / done * 1000, 2) for n in sorted(ids)}
    per_part: dict[str, float] = defaultdict(float)
    for name, ms in per_container.items():
        per_part[group(name)] += ms
    return {
        "in_flight": in_flight,
        "seconds": round(elapsed, 1),
        "sagas": client.completed,
        "sagas_per_s": round(client.completed / elapsed, 1),
        "p50_ms": round(percentile(client.latencies, 0.5), 1),
        "p99_ms": round(percentile(client.latencies, 0.99), 1),
        "outcomes": dict(client.outcomes),
        "cpu_ms_per_saga": {k: round(v, 2) for k, v in sorted(per_part.items())},
        "cpu_ms_per_saga_total": round(sum(per_part.values()), 1),
        "cpu_ms_per_saga_by_container": per_container,
    }


def compose(project: str, files: list[str], *args: str) -> None:
    command = ["docker-compose", "-p", project]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose", "-p", project]
    for file in files:
        command += ["-f", file]
    subprocess.run([*command, *args], cwd=ROOT, check=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    env = {**local_env(ROOT / ".env"), "AMQP_URL": f"amqp://127.0.0.1:{args.amqp_port}/"}
    env.pop("CLIENT_AMQP_URL", None)
    if args.stop:
        compose(args.project, args.file, "stop", *args.stop)
    try:
        async with Client(broker_url("client", env)) as client:
            result = await closed_loop(
                client,
                args.project,
                in_flight=args.in_flight,
                seconds=args.seconds,
                warmup=args.warmup,
            )
    finally:
        if args.stop:
            compose(args.project, args.file, "start", *args.stop)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "project": args.project,
        "stopped": args.stop,
        **result,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compose", description=__doc__)
    parser.add_argument("--project", required=True, help="the compose project name")
    parser.add_argument("--label", required=True)
    parser.add_argument("--amqp-port", type=int, default=5672)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--stop", nargs="*", default=[], help="compose services to stop")
    parser.add_argument(
        "--file",
        nargs="*",
        default=["docker-compose.yml", "docker-compose.cluster.yml"],
        help="the compose files (for --stop)",
    )
    args = parser.parse_args(argv)
    report = asyncio.run(main_async(args))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"compose-{args.label}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if "by_container" not in k}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
