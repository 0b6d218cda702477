"""Dynamic batching for concurrent callers: each submits a few images and gets its own answer;
one worker gathers requests into one inference call, as Triton's and TF Serving's batchers do.

A call is made when `max_batch` images are waiting, or `max_delay_us` after the first of them
arrived, whichever comes first. Input is checked in the caller's thread, so a bad image is the
error of the caller that sent it; a failure of the model itself reaches every caller whose
images were in that call. The queue is bounded: past `max_queue` waiting requests, `submit`
raises Overloaded at once (a server answers 503) instead of letting latency grow without end.

The worker outlives any one caller: a caller that gives up (a cancelled Future) is skipped, a
failing model or `on_call` hook fails that call only, and `close` ends even with a full queue
or a dead worker, answering what it cannot run with Closed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from runtime.errors import InputError, MnistEdgeError
from runtime.preprocess import as_images
from runtime.session import Classifier


class Overloaded(MnistEdgeError):
    """The batcher's queue is full: try again later."""


class Closed(MnistEdgeError):
    """The batcher has stopped and takes no more requests."""


@dataclass(frozen=True)
class BatcherStats:
    requests: int  # answered
    images: int
    calls: int  # inference calls made

    @property
    def mean_batch(self) -> float:
        return self.images / self.calls if self.calls else 0.0


_STOP = object()


class MicroBatcher:
    """Gathers concurrent requests into batched `Classifier` calls; thread-safe.

    >>> with MicroBatcher(clf, max_batch=64, max_delay_us=500) as batcher:
    ...     probs = batcher.predict_proba(image)        # from any number of threads
    """

    def __init__(
        self,
        classifier: Classifier,
        max_batch: int = 64,
        max_delay_us: float = 500.0,
        max_queue: int = 4096,
        on_call: Callable[[int], None] | None = None,  # hears each call's image count
    ):
        if max_batch < 1 or max_queue < 1 or not 0 <= max_delay_us <= 1e6:
            raise InputError(
                f"batcher: expected max_batch and max_queue >= 1 and max_delay_us in 0..1e6, "
                f"found {max_batch}, {max_queue}, {max_delay_us}"
            )
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_delay = max_delay_us / 1e6
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._lock = threading.Lock()
        self._requests = self._images = self._calls = 0
        self._closed = False
        self._submitting = threading.Lock()  # no request slips in behind the stop
        self._busy_since: float | None = None  # when the call now running began
        self._on_call = on_call
        self._worker = threading.Thread(target=self._serve, name="mnist-edge-batcher", daemon=True)
        self._worker.start()

    def submit(self, images: object) -> Future:
        """A Future of the (n, 10) probabilities of `images` (any accepted shape)."""
        batch = as_images(images)  # the caller's own error, raised in the caller's thread
        future: Future = Future()
        with self._submitting:
            if self._closed:
                raise Closed("the batcher is closed")
            try:
                self._queue.put_nowait((batch, future))
            except queue.Full:
                raise Overloaded(
                    f"the queue holds {self._queue.maxsize} requests already"
                ) from None
        return future

    def predict_proba(self, images: object, timeout: float | None = None) -> np.ndarray:
        return self.submit(images).result(timeout)

    def depth(self) -> int:
        """Requests waiting now."""
        return self._queue.qsize()

    def stats(self) -> BatcherStats:
        with self._lock:
            return BatcherStats(self._requests, self._images, self._calls)

    def unhealthy(self, stuck_after: float) -> str | None:
        """Why the batcher cannot answer now (its worker has stopped, or one call has run for
        more than `stuck_after` seconds), or None when it can."""
        if not self._worker.is_alive():
            return "the batcher has stopped"
        since = self._busy_since
        if since is not None and time.monotonic() - since > stuck_after:
            return f"one inference call has run for {time.monotonic() - since:.0f} s"
        return None

    def close(self, timeout: float | None = None) -> bool:
        """Answer what is queued, then stop the worker. Past `timeout` seconds (a model call
        that does not end), what is still queued is answered with Closed instead. Whether the
        worker has stopped."""
        with self._submitting:
            if self._closed:  # closing again: wait for the worker a while longer
                self._worker.join(timeout)
                return not self._worker.is_alive()
            self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._worker.is_alive() and not _past(deadline):
            try:  # behind everything queued; a full queue makes room as the worker runs
                self._queue.put(_STOP, timeout=0.05)
                break
            except queue.Full:
                continue
        self._worker.join(None if deadline is None else max(deadline - time.monotonic(), 0))
        self._fail_queued(Closed("the batcher stopped before this request was run"))
        with contextlib.suppress(queue.Full):  # a worker that comes back later stops too
            self._queue.put_nowait(_STOP)
        return not self._worker.is_alive()

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        pending = None
        while True:
            first = pending or self._queue.get()
            pending = None
            if first is _STOP:
                return
            gathered, count = [first], len(first[0])
            deadline = time.perf_counter() + self.max_delay
            while count < self.max_batch:
                remaining = deadline - time.perf_counter()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if item is _STOP or count + len(item[0]) > self.max_batch:
                    pending = item  # the next call's first request (or the stop)
                    break
                gathered.append(item)
                count += len(item[0])
            self._run(gathered)

    def _run(self, gathered: list) -> None:
        # A caller that gave up (a timed-out request) is dropped; the others cannot cancel now.
        gathered = [(b, f) for b, f in gathered if f.set_running_or_notify_cancel()]
        if not gathered:
            return
        batches = [b for b, _ in gathered]
        self._busy_since = time.monotonic()
        try:
            if len({b.dtype for b in batches}) > 1:  # uint8 pixels beside [0, 1] floats
                batches = [_unit(b) for b in batches]
            probs = self.classifier.proba_of_images(
                batches[0] if len(batches) == 1 else np.concatenate(batches)
            )
        except Exception as e:  # the model's failure is every waiting caller's answer
            for _, future in gathered:
                future.set_exception(e)
            return
        finally:
            self._busy_since = None
        start = 0
        for batch, future in gathered:
            future.set_result(probs[start : start + len(batch)])
            start += len(batch)
        with self._lock:
            self._requests += len(gathered)
            self._images += start
            self._calls += 1
        if self._on_call is not None:
            with contextlib.suppress(Exception):  # a failing listener must not stop the worker
                self._on_call(start)

    def _fail_queued(self, error: Exception) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP and item[1].set_running_or_notify_cancel():
                item[1].set_exception(error)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


def _unit(batch: np.ndarray) -> np.ndarray:
    return batch.astype(np.float32) * np.float32(1 / 255) if batch.dtype == np.uint8 else batch
