"""Wait until every container of the compose stack reports healthy, or for a one-shot job
(db-roles) that it exited with 0 (`make up`).

docker-compose v1 has no `up --wait`, so this polls `docker inspect` instead, prints
progress, and on failure names the unhealthy container and shows its last log lines.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compose", default="docker compose")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    compose = shlex.split(args.compose)
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        ids = subprocess.run(
            [*compose, "ps", "-q"], capture_output=True, text=True, check=True
        ).stdout.split()
        states = _states(ids)
        summary = ", ".join(f"{name}={state}" for name, state in sorted(states.items()))
        if summary != last:
            print(f"waiting for the stack: {summary}", flush=True)
            last = summary
        if states and all(state in {"healthy", "done"} for state in states.values()):
            print(
                "stack healthy: RabbitMQ UI on its mapped 15672 port, "
                "order API on its mapped 8000 port"
            )
            return 0
        failed = [
            name for name, state in states.items() if state in {"unhealthy", "exited", "dead"}
        ]
        if failed or time.monotonic() > deadline:
            for name in failed or [n for n, s in states.items() if s not in {"healthy", "done"}]:
                print(f"--- {name} is not healthy; its last log lines:", file=sys.stderr)
                subprocess.run(["docker", "logs", "--tail", "30", name], check=False)
            print("the stack did not become healthy; `make logs` shows everything", file=sys.stderr)
            return 1
        time.sleep(2)


def _states(ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True)
    states = {}
    for container in json.loads(out.stdout):
        state = container["State"]
        health = (state.get("Health") or {}).get("Status")
        if health is None and state["Status"] == "exited" and state.get("ExitCode") == 0:
            health = "done"  # a one-shot job that did its work (db-roles)
        states[container["Name"].lstrip("/")] = health or state["Status"]
    return states


if __name__ == "__main__":
    sys.exit(main())
