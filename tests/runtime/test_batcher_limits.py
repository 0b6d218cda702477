"""The micro-batcher's promises, each pinned with a model that records its calls: no call over
max_batch, a backlog fills each call, the delay gathers late arrivals, arguments at their stated
limits, uint8 passed as it is, the on_call hook, timeouts, what close returns and says, and a
batcher left open never keeps the process alive (mutmut found these unpinned)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from runtime import InputError
from runtime.batcher import Closed, MicroBatcher, Overloaded
from tests.conftest import ROOT


class Recorder:
    """A model that records each call's size and pixel type, and waits for `gate` if given."""

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[tuple[int, np.dtype]] = []
        self.gate = gate

    def proba_of_images(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append((len(batch), batch.dtype))
        if self.gate is not None:
            self.gate.wait(10)
        return np.full((len(batch), 10), 0.1, np.float32)


def images(n: int, dtype=np.uint8) -> np.ndarray:
    return np.zeros((n, 28, 28), dtype)


def test_a_backlog_fills_each_call_up_to_max_batch_and_never_past_it():
    gate = threading.Event()
    model = Recorder(gate)
    with MicroBatcher(model, max_batch=4, max_delay_us=100_000) as batcher:
        first = batcher.submit(images(1))
        while not model.calls:  # the worker is inside the first call, held by the gate
            time.sleep(0.001)
        backlog = [batcher.submit(images(1)) for _ in range(10)] + [batcher.submit(images(3))]
        gate.set()
        for future in [first, *backlog]:
            future.result(10)
    assert [size for size, _ in model.calls] == [1, 4, 4, 2, 3]


def test_a_request_within_the_delay_joins_the_call_of_the_one_before():
    model = Recorder()
    with MicroBatcher(model, max_batch=8, max_delay_us=1e6) as batcher:
        a = batcher.submit(images(1))
        time.sleep(0.02)  # far inside the 1 s delay
        b = batcher.submit(images(2))
        a.result(10), b.result(10)
    assert [size for size, _ in model.calls] == [3]


def test_the_defaults_are_the_documented_ones():
    gate = threading.Event()
    model = Recorder(gate)
    batcher = MicroBatcher(model)
    try:
        assert (batcher.max_batch, batcher.max_delay) == (64, 500e-6)
        batcher.submit(images(1))
        while not model.calls:
            time.sleep(0.001)
        for _ in range(4096):
            batcher.submit(images(1))
        with pytest.raises(Overloaded, match=r"^the queue holds 4096 requests already$"):
            batcher.submit(images(1))
    finally:
        gate.set()
        batcher.close(10)


def test_a_full_call_is_made_at_once_not_after_the_delay():
    model = Recorder()
    with MicroBatcher(model, max_batch=2, max_delay_us=1e6) as batcher:
        started = time.monotonic()
        batcher.submit(images(2)).result(10)
        waited = time.monotonic() - started
    assert waited < 0.5, waited  # the 1 s delay is for calls not yet full


def test_the_worker_is_a_named_daemon_thread_and_idle_is_healthy():
    with MicroBatcher(Recorder()) as batcher:
        workers = [t for t in threading.enumerate() if t.name == "mnist-edge-batcher"]
        assert workers and all(t.daemon for t in workers)  # none keeps the process alive
        assert batcher.unhealthy(stuck_after=0) is None


@pytest.mark.parametrize(
    ("max_batch", "max_queue", "max_delay_us"),
    [(1, 1, 0), (1, 1, 1e6)],
    ids=["smallest", "longest-delay"],
)
def test_arguments_at_their_limits_are_taken(max_batch, max_queue, max_delay_us):
    MicroBatcher(Recorder(), max_batch, max_delay_us, max_queue).close(5)


@pytest.mark.parametrize(
    ("max_batch", "max_queue", "max_delay_us"),
    [(0, 1, 0), (1, 0, 0), (1, 1, -1), (1, 1, 1e6 + 1)],
    ids=["batch-0", "queue-0", "delay-negative", "delay-past-1e6"],
)
def test_arguments_past_their_limits_are_refused_in_one_line(max_batch, max_queue, max_delay_us):
    with pytest.raises(InputError) as refused:
        MicroBatcher(Recorder(), max_batch, max_delay_us, max_queue)
    assert str(refused.value) == (
        "batcher: expected max_batch and max_queue >= 1 and max_delay_us in 0..1e6, "
        f"found {max_batch}, {max_queue}, {max_delay_us}"
    )


def test_uint8_pixels_reach_the_model_as_they_are_unless_mixed_with_floats():
    model = Recorder()
    with MicroBatcher(model, max_batch=8, max_delay_us=1e6) as batcher:
        batcher.predict_proba(images(2), timeout=10)
        a, b = batcher.submit(images(1)), batcher.submit(images(1, np.float32))
        a.result(10), b.result(10)
    assert [dtype for _, dtype in model.calls] == [np.uint8, np.float32]


def test_on_call_hears_each_calls_image_count():
    heard: list[int] = []
    with MicroBatcher(Recorder(), max_batch=8, on_call=heard.append) as batcher:
        batcher.predict_proba(images(3), timeout=10)
        batcher.predict_proba(images(1), timeout=10)
    assert heard == [3, 1]


def test_a_stuck_model_is_reported_with_how_long_it_has_run():
    gate = threading.Event()
    model = Recorder(gate)
    batcher = MicroBatcher(model)
    try:
        batcher.submit(images(1))
        while not model.calls:
            time.sleep(0.001)
        assert batcher.unhealthy(stuck_after=60) is None
        time.sleep(0.1)
        assert batcher.unhealthy(stuck_after=0.05) == "one inference call has run for 0 s"
        with pytest.raises(TimeoutError):
            batcher.predict_proba(images(1), timeout=0.1)
    finally:
        gate.set()
        batcher.close(10)


def test_close_says_whether_the_worker_stopped_and_answers_the_queued_with_closed():
    gate = threading.Event()
    model = Recorder(gate)
    batcher = MicroBatcher(model)
    batcher.submit(images(1))
    while not model.calls:
        time.sleep(0.001)
    queued = batcher.submit(images(1))
    release = threading.Timer(3, gate.set)  # ends the test's wait if close ignored its timeout
    release.start()
    try:
        assert batcher.close(0.2) is False  # the model is still stuck
        assert batcher.close(0.2) is False  # and closing again waits only as long as asked
        with pytest.raises(Closed, match=r"^the batcher stopped before this request was run$"):
            queued.result(0)
        with pytest.raises(Closed, match=r"^the batcher is closed$"):
            batcher.submit(images(1))
        gate.set()
        assert batcher.close(10) is True
    finally:
        release.cancel()
        gate.set()


def test_an_idle_batcher_closes_at_once_and_says_so():
    assert MicroBatcher(Recorder()).close(5) is True


LEFT_OPEN = """
import threading, numpy as np
from runtime.batcher import MicroBatcher
class Stuck:
    def proba_of_images(self, batch):
        threading.Event().wait()
batcher = MicroBatcher(Stuck())
batcher.submit(np.zeros((1, 28, 28), np.uint8))
print("leaving", flush=True)
"""


def test_a_batcher_left_open_with_a_stuck_call_does_not_keep_the_process_alive():
    done = subprocess.run(
        [sys.executable, "-c", LEFT_OPEN], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout == "leaving\n", done.stderr
