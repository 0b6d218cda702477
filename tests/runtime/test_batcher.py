"""The micro-batcher: concurrent callers get their own answers, gathered into fewer calls; errors
reach the callers they belong to; a full queue refuses at once; close answers what is queued;
the worker outlives callers that give up, failing models and listeners, and close always ends."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from runtime import Classifier, InputError, ModelError
from runtime.batcher import Closed, MicroBatcher, Overloaded


@pytest.fixture
def clf(tiny_model):
    with Classifier(tiny_model, threads=1) as c:
        yield c


def test_many_callers_get_what_serial_calls_give(clf):
    images = np.random.default_rng(0).integers(0, 256, (400, 28, 28), dtype=np.uint8)
    expected = clf.predict_proba(images)
    with MicroBatcher(clf, max_batch=32, max_delay_us=2000) as batcher:
        with ThreadPoolExecutor(16) as callers:
            found = list(callers.map(batcher.predict_proba, images))
        stats = batcher.stats()
    np.testing.assert_array_equal(np.concatenate(found), expected)
    assert stats.requests == 400 and stats.images == 400
    assert stats.calls < 400 and stats.mean_batch > 1  # they were gathered


def test_requests_of_several_images_and_of_either_pixel_kind_keep_their_answers(clf):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    unit = rng.random((3, 28, 28)).astype(np.float32)
    with MicroBatcher(clf, max_batch=64, max_delay_us=50_000) as batcher:
        a, b = batcher.submit(raw), batcher.submit(unit)  # gathered into one call
        np.testing.assert_allclose(a.result(5), clf.predict_proba(raw), atol=1e-6)
        np.testing.assert_allclose(b.result(5), clf.predict_proba(unit), atol=1e-6)
        assert batcher.stats().calls == 1


def test_a_bad_image_is_the_error_of_its_own_caller_only(clf):
    good = np.zeros((28, 28), np.uint8)
    with MicroBatcher(clf, max_delay_us=20_000) as batcher:
        fine = batcher.submit(good)
        with pytest.raises(InputError, match="expected images shaped"):
            batcher.submit(np.zeros((3, 3)))
        assert fine.result(5).shape == (1, 10)


class FailingModel:
    """Stands in for a model that fails at run time (an allocation, a NaN check)."""

    def __init__(self, block: threading.Event | None = None):
        self.block = block

    def proba_of_images(self, images):
        if self.block is not None:
            self.block.wait(5)
        raise ModelError("m.onnx: onnxruntime failed: out of memory")


def test_a_model_failure_reaches_every_caller_in_that_call():
    with MicroBatcher(FailingModel(), max_batch=8, max_delay_us=50_000) as batcher:
        futures = [batcher.submit(np.zeros((28, 28), np.uint8)) for _ in range(3)]
        for future in futures:
            with pytest.raises(ModelError, match="out of memory"):
                future.result(5)


def test_a_full_queue_refuses_at_once():
    release = threading.Event()
    batcher = MicroBatcher(FailingModel(release), max_batch=1, max_delay_us=0, max_queue=2)
    image = np.zeros((28, 28), np.uint8)
    first = batcher.submit(image)  # taken by the worker, which then blocks
    deadline = time.monotonic() + 5
    while batcher.depth() and time.monotonic() < deadline:
        time.sleep(0.001)
    queued = [batcher.submit(image), batcher.submit(image)]
    with pytest.raises(Overloaded, match="holds 2 requests"):
        batcher.submit(image)
    release.set()
    batcher.close()
    assert all(f.done() for f in [first, *queued])


def test_close_answers_what_is_queued_then_refuses(clf):
    batcher = MicroBatcher(clf, max_batch=4, max_delay_us=100_000)
    futures = [batcher.submit(np.zeros((28, 28), np.uint8)) for _ in range(10)]
    batcher.close()
    assert all(f.result(0).shape == (1, 10) for f in futures)
    with pytest.raises(Closed, match="closed"):
        batcher.submit(np.zeros((28, 28), np.uint8))


def test_bad_settings_are_one_input_error(clf):
    with pytest.raises(InputError, match="max_batch"):
        MicroBatcher(clf, max_batch=0)


class HeldModel:
    """Answers zeros, but each call waits for `release` first (a slow or stuck model)."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def proba_of_images(self, images):
        self.calls += 1
        self.release.wait(30)
        return np.zeros((len(images), 10), np.float32)


def wait_until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


IMAGE = np.zeros((28, 28), np.uint8)


def test_a_caller_that_gave_up_is_skipped_and_later_callers_are_answered():
    model = HeldModel()
    with MicroBatcher(model, max_batch=1, max_delay_us=0) as batcher:
        running = batcher.submit(IMAGE)
        wait_until(lambda: model.calls == 1)
        gave_up = batcher.submit(IMAGE)
        assert gave_up.cancel() and not running.cancel()  # a running call is not cancelled
        model.release.set()
        assert running.result(5).shape == (1, 10)
        assert batcher.predict_proba(IMAGE, timeout=5).shape == (1, 10)
        assert model.calls == 2  # the cancelled request never reached the model
        assert batcher.unhealthy(stuck_after=10) is None


def test_a_failing_listener_does_not_stop_the_worker():
    def listener(images):
        raise ValueError("a metrics bug")

    model = HeldModel()
    model.release.set()
    with MicroBatcher(model, max_delay_us=0, on_call=listener) as batcher:
        for _ in range(3):
            assert batcher.predict_proba(IMAGE, timeout=5).shape == (1, 10)
        assert batcher.unhealthy(stuck_after=10) is None


def test_close_ends_with_a_full_queue_and_a_stuck_model():
    model = HeldModel()
    batcher = MicroBatcher(model, max_batch=1, max_delay_us=0, max_queue=2)
    stuck = batcher.submit(IMAGE)
    wait_until(lambda: model.calls == 1)
    queued = [batcher.submit(IMAGE), batcher.submit(IMAGE)]  # the queue is full
    time.sleep(0.3)
    assert batcher.unhealthy(stuck_after=0.2).startswith("one inference call has run for")
    start = time.monotonic()
    batcher.close(timeout=0.5)
    assert time.monotonic() - start < 3
    for future in queued:
        with pytest.raises(Closed, match="stopped before"):
            future.result(0)
    with pytest.raises(Closed):
        batcher.submit(IMAGE)
    model.release.set()
    assert stuck.result(5).shape == (1, 10)  # the call that was running still answers


def test_unhealthy_says_when_the_worker_has_stopped():
    model = HeldModel()
    model.release.set()
    batcher = MicroBatcher(model)
    batcher.close()
    assert batcher.unhealthy(stuck_after=10) == "the batcher has stopped"
