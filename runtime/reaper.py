"""Stops what a local Ray leaves running when the program that started it is killed.

Ray ties its head processes to the driver, but its agents outlive a SIGKILLed driver by about a
minute (each waits 60 s to report the raylet's death to a GCS that is gone). A reaper runs
beside the driver in a session of its own, reading process ids from a pipe; when the pipe
closes (the driver has ended, however it ended), it kills those still running as the same
processes (same start time, so a reused pid is left alone). Linux only: it reads /proc.

    python -m runtime.reaper        # stdin: "PID STARTTIME" lines, until the driver is gone
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

PROC = Path("/proc")


def available() -> bool:
    return (PROC / "self" / "stat").exists()


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, start time) of every process below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            started[int(entry.name)] = stat[1]
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append((pid, started[pid]))
        todo += children.get(pid, [])
    return found


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of `pid`, or None once it has gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (name) ": the name may hold spaces
    return int(fields[1]), int(fields[19])


def reap(lines) -> list[int]:
    """Read "PID STARTTIME" lines to their end, then kill those processes that still run as
    the same processes. The pids killed."""
    known = []
    for line in lines:
        pid, start = line.split()
        known.append((int(pid), int(start)))
    killed = []
    for pid, start in known:
        if pid == os.getpid():
            continue
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the driver
    reap(sys.stdin)
