"""onnxruntime session settings for small devices, and the one policy that fills them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from runtime.errors import InputError

OPTIMIZATIONS = ("disable", "basic", "extended", "all")
MAX_THREADS = 64  # more threads than cores only cost memory and start-up (3000 took 62 s)
SPLIT_MIN_IMAGES = 128  # per thread: 64-image slices measured slower than not splitting


@dataclass(frozen=True)
class SessionSettings:
    """onnxruntime settings that matter on small devices."""

    threads: int | None = None  # intra-op threads; None lets onnxruntime use every core
    spinning: bool = True  # busy-wait between ops: lower latency, more power
    # False: the threads stop spinning as each run returns, so a process that alternates
    # between several multi-thread sessions does not have one's idle threads take the cores
    # another needs (benchmarks/cohabit.py: INT8 batch 256 beside an fp32 session, 2,499 ->
    # 1,352 us). Each run then wakes its threads: fp32 on two threads, batch 256 4% slower,
    # batch 1 24.0 -> 29.6-38.3 us. One model per process, the CLI's case, needs neither.
    spin_between_runs: bool = True
    memory_arena: bool = True  # reuse buffers between calls
    optimization: str = "all"  # graph optimisation: disable, basic, extended, all
    # With several threads, split a large batch across single-thread sessions, one slice per
    # thread, instead of threading inside each op. None: only for INT8 models, where it measured
    # 1.4x onnxruntime's own threads (edge INT8, batch 256, 2 threads); fp32 lost about 4%.
    split_batches: bool | None = None
    profile_prefix: str | None = None  # write onnxruntime's per-op profile (bench --profile)

    def __post_init__(self) -> None:
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise InputError(f"--threads: expected 1..{MAX_THREADS}, found {self.threads}")
        if self.optimization not in OPTIMIZATIONS:
            raise InputError(
                f"--optimization: expected one of {', '.join(OPTIMIZATIONS)}, "
                f"found {self.optimization!r}"
            )

    def split_threads(self, int8: bool) -> int:
        """How many single-thread sessions a large batch is split across (1: none)."""
        if not (self.split_batches or (self.split_batches is None and int8)):
            return 1
        return self.threads or cpu_count()


def device_settings(
    threads: int | None = None,
    spinning: bool | None = None,
    memory_arena: bool = True,
    low_power: bool = False,
    optimization: str = "all",
    split_batches: bool | None = None,
) -> SessionSettings:
    """The settings the device options ask for; --low-power means one thread, no spinning."""
    if low_power:
        if threads not in (None, 1):
            raise InputError(f"--low-power: means --threads 1, found --threads {threads} too")
        if spinning:
            raise InputError("--low-power: turns spinning off, found --spinning too")
        threads, spinning = 1, False
    return SessionSettings(
        threads=threads,
        spinning=True if spinning is None else spinning,
        memory_arena=memory_arena,
        optimization=optimization,
        split_batches=split_batches,
    )


def cpu_count() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
