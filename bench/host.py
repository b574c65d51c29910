"""What the host itself did during a measurement: the share of CPU time the hypervisor
took away (steal), read from /proc/stat.

On this kind of VM the same code measured 28 ms for one saga one day and 79 the next,
with the peers slowed alike; vmstat showed 35-40 % steal on the slow day. A figure is
comparable with another only if both ran with little steal, so the benchmarks print it
beside their figures rather than leave the reader to guess from the raw ceiling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: Above this, the benchmarks warn that their figures say more about the host than the code.
NOISY_STEAL_PERCENT = 5.0


@dataclass(frozen=True)
class CpuTicks:
    """Cumulative ticks of all CPUs since boot: all of them, those stolen, those idle."""

    total: int
    steal: int
    idle: int = 0

    @classmethod
    def now(cls) -> CpuTicks:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except OSError:  # not Linux: no figure, nothing else
            return cls(0, 0)
        # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
        # already counted in user, so it is not added again.
        return cls(sum(fields[:8]), fields[7] if len(fields) > 7 else 0, idle=fields[3] + fields[4])

    def steal_percent_since(self, before: CpuTicks) -> float:
        """Percent of all CPU time between `before` and this sample that the hypervisor
        took (nan where /proc/stat says nothing)."""
        elapsed = self.total - before.total
        if elapsed <= 0:
            return float("nan")
        return round(100 * (self.steal - before.steal) / elapsed, 1)


def busy(seconds: float = 2.0) -> float:
    """How busy the machine's CPUs are (0 to 1), sampled over `seconds`."""
    before = CpuTicks.now()
    time.sleep(seconds)
    after = CpuTicks.now()
    return 1 - (after.idle - before.idle) / max(1, after.total - before.total)


def steal_note(percent: float) -> str:
    """A short remark for a figure measured with `percent` steal."""
    if percent != percent:  # nan
        return "host steal: unknown"
    if percent > NOISY_STEAL_PERCENT:
        return f"host steal {percent:.1f} % (! the hypervisor took CPU: not comparable)"
    return f"host steal {percent:.1f} %"
