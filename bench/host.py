"""What the host itself did during a measurement: the share of CPU time the hypervisor
took away (steal), read from /proc/stat.

On this kind of VM the same code measured 28 ms for one saga one day and 79 the next,
with the peers slowed alike; vmstat showed 35-40 % steal on the slow day. A figure is
comparable with another only if both ran with little steal, so the benchmarks print it
beside their figures rather than leave the reader to guess from the raw ceiling.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass

#: Above this, the benchmarks warn that their figures say more about the host than the code.
NOISY_STEAL_PERCENT = 5.0


@dataclass(frozen=True)
class CpuTicks:
    """Cumulative ticks of all CPUs since boot: all of them, and those stolen."""

    total: int
    steal: int

    @classmethod
    def now(cls) -> CpuTicks:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except OSError:  # not Linux: no figure, nothing else
            return cls(0, 0)
        # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
        # already counted in user, so it is not added again.
        return cls(sum(fields[:8]), fields[7] if len(fields) > 7 else 0)

    def steal_percent_since(self, before: CpuTicks) -> float:
        """Percent of all CPU time between `before` and this sample that the hypervisor
        took (nan where /proc/stat says nothing)."""
        elapsed = self.total - before.total
        if elapsed <= 0:
            return float("nan")
        return round(100 * (self.steal - before.steal) / elapsed, 1)


def steal_note(percent: float) -> str:
    """A short remark for a figure measured with `percent` steal."""
    if percent != percent:  # nan
        return "host steal: unknown"
    if percent > NOISY_STEAL_PERCENT:
        return f"host steal {percent:.1f} % (! the hypervisor took CPU: not comparable)"
    return f"host steal {percent:.1f} %"


def queues_elsewhere(management_url: str, user: str, password: str, vhost: str) -> int | None:
    """How many queues RabbitMQ holds outside `vhost` (None if its management API does not
    answer). Every quorum queue has work of its own at idle: a `make dev` stack's 150
    queues, left behind in another vhost, added 0.6 % of a core to RabbitMQ's idle figure."""
    request = urllib.request.Request(
        management_url.rstrip("/") + "/api/queues?columns=vhost", method="GET"
    )
    request.add_header(
        "Authorization", "Basic " + b64encode(f"{user}:{password}".encode()).decode()
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            queues = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return sum(1 for queue in queues if queue.get("vhost") != vhost)
