"""Ctrl-C that stops a model call.

onnxruntime runs a graph in C++ and returns to Python only at the end, so Python's own
KeyboardInterrupt waits for a call that may never end (a model with a Loop of 10^15 steps). A
thread hears the signal through Python's wakeup file descriptor, which the C signal handler
writes at once, and stops every call in the process with `RunOptions.terminate`; the
KeyboardInterrupt then arrives in the main thread as usual.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

_armed = threading.Event()


@contextlib.contextmanager
def ctrl_c_stops_calls():
    """Within the block, Ctrl-C also stops the model calls running in this process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set the wakeup descriptor
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(read,), name="mnist-edge-ctrl-c", daemon=True)
    watcher.start()
    _armed.set()
    try:
        yield
    finally:
        _armed.clear()
        signal.set_wakeup_fd(previous)
        os.close(write)  # the watcher reads the end of the pipe and returns
        watcher.join(5)
        os.close(read)
        session = sys.modules.get("runtime.session")
        if session is not None:
            session.stop_interrupting()


def let_calls_finish() -> None:
    """From now on Ctrl-C leaves calls alone (a server drains its requests on its own)."""
    _armed.clear()


def _watch(fd: int) -> None:
    while data := os.read(fd, 64):  # one byte per signal: its number
        if signal.SIGINT in data and _armed.is_set():
            session = sys.modules.get("runtime.session")  # no model loaded: nothing to stop
            if session is not None:
                session.interrupt_all()
