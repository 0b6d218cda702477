"""Whether the machine was busy while we measured: the CPU time other processes took and the
hypervisor's steal time, from /proc/stat against this process's own CPU time (as pyperf checks
a system before it trusts a benchmark). Where /proc/stat is absent, nothing is said."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

STAT = Path("/proc/stat")
# Past these, a warning line: other processes averaging a quarter of a core, or the hypervisor
# taking 5% of the machine, move latency percentiles by more than the differences we report.
BUSY_CORES = 0.25
STEAL_SHARE = 0.05


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds, monotonic
    busy: float  # CPU seconds all processes ran (user, nice, system, irq, softirq)
    steal: float  # CPU seconds the hypervisor took
    total: float  # all CPU seconds, idle included
    ours: float  # CPU seconds of this process and its waited-for children


def sample(stat: Path = STAT) -> Sample | None:
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(v) / tick for v in [*fields[1:9], *["0"] * 8][:8]
    )
    times = os.times()
    return Sample(
        wall=time.monotonic(),
        busy=user + nice + system + irq + softirq,
        steal=steal,
        total=user + nice + system + idle + iowait + irq + softirq + steal,
        ours=times.user + times.system + times.children_user + times.children_system,
    )


def load_between(before: Sample | None, after: Sample | None) -> dict:
    """{"other_cpu_cores", "steal_share"} over the interval, or {} where it cannot be told."""
    if before is None or after is None or after.wall <= before.wall:
        return {}
    wall = after.wall - before.wall
    others = max((after.busy - before.busy) - (after.ours - before.ours), 0.0)
    total = after.total - before.total
    return {
        "other_cpu_cores": round(others / wall, 3),
        "steal_share": round((after.steal - before.steal) / total, 4) if total > 0 else 0.0,
    }


def busy_warning(load: dict) -> str | None:
    """One line saying the figures are suspect, with the figures, or None on a quiet machine."""
    other, steal = load.get("other_cpu_cores", 0.0), load.get("steal_share", 0.0)
    if other < BUSY_CORES and steal < STEAL_SHARE:
        return None
    return (
        f"the machine was busy while measuring: other processes took {other:.2f} cores on "
        f"average and the hypervisor {steal:.1%} of the CPU time: read these figures as upper "
        "bounds, or measure again on a quiet machine"
    )
