"""Helpers the benchmark scripts share: time and peak memory of a child process, p50 of a call."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# A child's ru_maxrss also counts the pages it inherited from its parent before exec: measured
# straight from a benchmark process that has onnxruntime loaded, a one-image predict "peaks" at
# the parent's 120 MB instead of its own 85. So the command is started from a bare interpreter
# (a few MB), which reports the command's wall time and peak RSS.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - start
error = child.stderr.read()[-2000:].decode()
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall": wall, "maxrss_kb": usage.ru_maxrss, "code": code, "stderr": error}))
"""


def run_measured(args: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process; its output is discarded."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {report['stderr']}")
    return report["wall"], report["maxrss_kb"] / 1024


def call_p50_us(session, feed: dict, calls: int) -> float:
    """p50 in us of `calls` timed `session.run`s, after a quarter as many untimed ones."""
    for _ in range(calls // 4 + 1):
        session.run(None, feed)
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        session.run(None, feed)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1000
