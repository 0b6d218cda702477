"""Helpers the benchmark scripts share: time and peak memory of a child process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def run_measured(args: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process; its stdout is discarded."""
    start = time.perf_counter()
    child = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {child.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024
