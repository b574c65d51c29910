"""The host's steal, as the benchmarks print it beside their figures (bench/host.py)."""

from __future__ import annotations

import math

from bench.host import NOISY_STEAL_PERCENT, CpuTicks, steal_note


def test_steal_is_the_share_of_all_ticks_the_hypervisor_took() -> None:
    before, after = CpuTicks(total=1_000, steal=50), CpuTicks(total=1_400, steal=150)
    assert after.steal_percent_since(before) == 25.0


def test_no_ticks_between_two_samples_gives_no_figure() -> None:
    sample = CpuTicks(total=1_000, steal=50)
    assert math.isnan(sample.steal_percent_since(sample))
    assert steal_note(float("nan")) == "host steal: unknown"


def test_this_host_gives_a_figure_between_zero_and_a_hundred() -> None:
    before = CpuTicks.now()
    sum(range(2_000_000))  # a few ticks of our own
    percent = CpuTicks.now().steal_percent_since(before)
    assert math.isnan(percent) or 0.0 <= percent <= 100.0


def test_a_noisy_figure_says_so() -> None:
    assert "not comparable" in steal_note(NOISY_STEAL_PERCENT + 0.1)
    assert steal_note(1.0) == "host steal 1.0 %"
