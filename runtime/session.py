"""Classify digits with an ONNX model on onnxruntime."""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import re
import threading
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from runtime.contract import (
    DEFAULT_BATCH_SIZE,
    IMAGE_SIZE,
    Contract,
    Overrides,
    Signature,
    output_kind,
    read_contract,
)
from runtime.errors import InputError, Interrupted, MnistEdgeError, ModelError
from runtime.files import check_regular_file
from runtime.models import resolve_model
from runtime.preprocess import as_images
from runtime.settings import SPLIT_MIN_IMAGES, SessionSettings, cpu_count

_ORT_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)
_MAX_BINDINGS = 6  # per thread: the (session, batch shape) pairs a caller repeats
_PROBE_IMAGES = 4  # images run once to tell a model's output kind, when nothing says it
_PROBE_SECONDS = 60.0  # that run's limit: a graph that loops for ever is a bad model file
_LIVE: weakref.WeakSet[Classifier] = weakref.WeakSet()  # what Ctrl-C stops (interrupt_all)
# Ctrl-C heard before a classifier existed (while the model was still loading): the ones made
# after it are stopped from the start, or a call that never ends would start unstoppable.
_STOPPING = threading.Event()


class Classifier:
    """An MNIST classifier on onnxruntime; safe to share between threads.

    >>> with Classifier() as clf:              # the shipped default model
    ...     clf.predict(images)                # (N,) labels for uint8 or [0, 1] float images

    A model made elsewhere takes its conventions as keywords, as torchvision writes them:
    `Classifier("net.onnx", layout="NCHW", mean=0.5, std=0.5, output="logits")`.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        settings: SessionSettings | None = None,
        overrides: Overrides | None = None,
        **contract: object,
    ):
        if batch_size < 1:
            raise InputError(f"batch_size: expected a positive count, found {batch_size}")
        settings = settings or SessionSettings()
        if threads is not None:
            settings = replace(settings, threads=threads)
        self.path = resolve_model(path)
        self.settings = settings
        self._run_options = _run_options()  # shared by every call, so one flag stops them all
        self._stopped: tuple[type[MnistEdgeError], str] | None = None  # by interrupt()
        _LIVE.add(self)
        if _STOPPING.is_set():
            self.interrupt()
        if overrides is None:
            known = set(Overrides.__dataclass_fields__)
            if unknown := sorted(set(contract) - known):
                raise InputError(
                    f"Classifier: expected keywords of {sorted(known)}, found {unknown}"
                )
            overrides = Overrides(**contract)  # type: ignore[arg-type]

        # A large batch may be split across single-thread sessions (INT8 models by default).
        # Whether the model is INT8 is in its metadata, known once a session is open: open the
        # first one single-threaded where splitting may follow, so that it serves as the first
        # replica; only an fp32 model then needs its multi-thread session opened again.
        may_split = settings.split_batches is not False and (settings.threads or cpu_count()) > 1
        one = replace(settings, threads=1)
        session = _open(self.path, one if may_split else settings)
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        signature = Signature(_signature(session.get_inputs()), _signature(session.get_outputs()))
        try:
            self.contract: Contract = read_contract(signature, self.metadata, overrides)
        except ModelError as e:
            raise ModelError(f"{self.path}: {e}") from None
        fixed = self.contract.batch is not None  # a fixed batch cannot be split
        self.split_threads = 1 if fixed else settings.split_threads(self.contract.int8)
        if may_split and self.split_threads == 1:
            session = _open(self.path, settings)
        self.session = session
        # Split mode: one single-thread session per thread; small batches run on the first alone
        # (INT8 batch 1 measured 22.8 us on one thread, 26.2 us on two). The others and their
        # pool open with the first batch large enough to split: a one-image predict opens one.
        self._replicas = [session]
        self._pool = None
        self._split_lock = threading.Lock()
        self.batch_size = self.contract.batch or batch_size
        self._outputs = [self.contract.output_name]
        self._local = threading.local()
        # A forked child has none of the parent's threads: rebuild what needs them there.
        os.register_at_fork(after_in_child=functools.partial(_reopen_in_child, weakref.ref(self)))
        if self.contract.sources.get("output") == "inferred":
            with time_limit(self, _PROBE_SECONDS, "tell its output kind from 4 images"):
                self._infer_output()

    def predict_proba(self, x: object) -> np.ndarray:
        """Class probabilities, float32 (N, 10), for images in any accepted shape."""
        return self.proba_of_images(as_images(x))

    def predict(self, x: object) -> np.ndarray:
        """Predicted labels, int64 (N,)."""
        return self.predict_proba(x).argmax(axis=1)

    def proba_of_images(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for images already checked by `as_images`: (N, 28, 28) uint8 or
        float32 in [0, 1]. Run in chunks of `batch_size`; a fixed-batch model's last chunk is
        padded to its batch and the padding's answers dropped."""
        n, size = len(images), self.batch_size
        if 0 < n <= size and (self.contract.batch is None or n == size):
            return self._run(images)  # one call: no extra copy
        out = np.empty((n, len(self.contract.labels)), dtype=np.float32)
        for start in range(0, n, size):
            chunk = images[start : start + size]
            if self.contract.batch is not None and len(chunk) < size:
                pad = np.zeros((size - len(chunk), IMAGE_SIZE, IMAGE_SIZE), chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out[start : start + size] = self._run(chunk)[: min(size, n - start)]
        return out

    def finite(self, probs: np.ndarray) -> np.ndarray:
        """`probs`, or a ModelError naming the model where it gave NaN or inf. Checked where
        answers are reported (predict, evaluate, parity), once per batch, not per call: it costs
        about 1 us, 4% of a batch-1 call."""
        if not math.isfinite(float(probs.sum())):
            raise ModelError(f"{self.path}: the model gave NaN or infinite scores")
        return probs

    def interrupt(
        self, error: type[MnistEdgeError] = Interrupted, reason: str = "interrupted"
    ) -> None:
        """Stop every call running now (onnxruntime's RunOptions.terminate) and fail it and
        every later one with `error`: for Ctrl-C, a time limit, or a server that must stop."""
        self._stopped = (error, f"{self.path}: {reason}")
        self._run_options.terminate = True

    def end_profiling(self) -> Path:
        """Where onnxruntime wrote the per-op profile (settings.profile_prefix must be set)."""
        return Path(self.session.end_profiling())

    def close(self) -> None:
        """Stop the worker threads and release the sessions; the classifier is done."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._replicas = []
        self._local = threading.local()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _infer_output(self) -> None:
        rng = np.random.default_rng(0)
        shape = (self.contract.batch or _PROBE_IMAGES, IMAGE_SIZE, IMAGE_SIZE)
        probe = rng.integers(0, 256, shape, np.uint8)
        kind = output_kind(self._scores(self.session, probe))
        self.contract = replace(self.contract, output=kind)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = self.split_threads
        if n == 1 or len(batch) < n * SPLIT_MIN_IMAGES:
            return self.contract.probabilities(self._scores(self.session, batch))
        replicas, pool = self._split_sessions()
        cuts = np.linspace(0, len(batch), n + 1).astype(int)
        slices = [batch[a:b] for a, b in itertools.pairwise(cuts)]
        others = [
            pool.submit(self._scores, r, s) for r, s in zip(replicas[1:], slices[1:], strict=True)
        ]
        first = self._scores(replicas[0], slices[0])  # this thread does a share too
        scores = np.concatenate([first, *(f.result() for f in others)])
        return self.contract.probabilities(scores)

    def _split_sessions(self) -> tuple[list, object]:
        """The single-thread replicas and the pool that runs them, opened on first use."""
        from concurrent.futures import ThreadPoolExecutor  # 4 ms a one-image predict skips

        with self._split_lock:
            if not self._replicas:
                raise ModelError(f"{self.path}: the classifier is closed")
            if self._pool is None:
                one = replace(self.settings, threads=1)
                more = [_open(self.path, one) for _ in range(self.split_threads - 1)]
                self._replicas = [self.session, *more]
                self._pool = ThreadPoolExecutor(len(more), thread_name_prefix="mnist-edge")
            return self._replicas, self._pool

    def _scores(self, session: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
        tensor = self.contract.feed(batch)
        binding = self._binding(session, tensor.shape, tensor.dtype)
        try:
            if binding is not None:
                scores = binding(tensor)
            else:
                feed = {self.contract.input_name: tensor}
                scores = session.run(self._outputs, feed, self._run_options)[0]
                if self.contract.zipmap:
                    scores = self.contract.columns(scores)
        except (*_ORT_ERRORS, RuntimeError) as e:  # a bound run raises plain RuntimeErrors
            if self._stopped is not None:
                error, message = self._stopped
                raise error(message) from None
            raise ModelError(f"{self.path}: onnxruntime failed: {_reason(e)}") from None
        expected = (len(batch), len(self.contract.labels))
        if scores.shape != expected:  # checked on every call: a graph's output may vary
            raise ModelError(
                f"{self.path}: expected scores shaped {expected} for {len(batch)} images, "
                f"found {scores.shape}"
            )
        return scores

    def _binding(self, session: ort.InferenceSession, shape: tuple, dtype: np.dtype):
        """A run function bound to preallocated input and output buffers for this shape, made
        once per thread (bindings are not shared between threads); None past a few shapes.

        Binding saves onnxruntime the per-call allocation: about 2-3 us of a 25 us call."""
        try:
            cache = self._local.bindings
        except AttributeError:
            cache = self._local.bindings = {}
        key = (id(session), shape)
        binding = cache.get(key)
        if binding is None and len(cache) < _MAX_BINDINGS and not self.contract.zipmap:
            binding = _bound_run(session, self.contract, shape, dtype, self._run_options)
            cache[key] = binding
        return binding


def interrupt_all() -> None:
    """`Classifier.interrupt` on every classifier alive in this process, and on every one made
    until `stop_interrupting` (Ctrl-C)."""
    _STOPPING.set()
    for clf in list(_LIVE):
        clf.interrupt()


def stop_interrupting() -> None:
    """Classifiers made from now on run normally again (the Ctrl-C has been dealt with)."""
    _STOPPING.clear()


@contextlib.contextmanager
def time_limit(clf: Classifier, seconds: float, doing: str):
    """Calls on `clf` inside the block end after `seconds` in all, with a ModelError that says
    what the model was `doing`; the classifier is done then."""
    reason = f"the model did not {doing} within {seconds:g} s"
    timer = threading.Timer(seconds, clf.interrupt, (ModelError, reason))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _reopen_in_child(ref: weakref.ref) -> None:
    """After fork: the pool's threads and onnxruntime's own do not exist in the child, and a
    call waiting on them would hang; new sessions and a new pool replace them."""
    clf = ref()
    if clf is None or not clf._replicas:
        return
    one = replace(clf.settings, threads=1)
    clf.session = _open(clf.path, one if clf.split_threads > 1 else clf.settings)
    clf._replicas = [clf.session]
    clf._pool = None  # the replicas reopen with the next batch that splits
    clf._split_lock = threading.Lock()
    clf._local = threading.local()


def _bound_run(
    session: ort.InferenceSession,
    contract: Contract,
    shape: tuple,
    dtype: np.dtype,
    options: ort.RunOptions,
):
    x = np.zeros(shape, dtype)
    inputs = ort.OrtValue.ortvalue_from_numpy(x)  # on the CPU, x's own memory
    outputs = ort.OrtValue.ortvalue_from_shape_and_type(
        [shape[0], len(contract.labels)], np.float32
    )
    y = outputs.numpy()  # a view of the output buffer
    binding = session.io_binding()
    binding.bind_ortvalue_input(contract.input_name, inputs)
    binding.bind_ortvalue_output(contract.output_name, outputs)

    def run(tensor: np.ndarray) -> np.ndarray:
        np.copyto(x, tensor)
        session.run_with_iobinding(binding, options)
        return y.copy()  # the buffer is reused by the next call

    return run


def _run_options() -> ort.RunOptions:
    # Made once: made per call when None (0.7 us of a 21 us call). Python's wrapper looks
    # gpu_graph_id up on every run, and a missing key costs it an exception (30 us); -1 is its
    # documented "no graph capture".
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", "-1")
    options.log_severity_level = 4  # a terminated run is ours to report, in one line
    return options


def _open(path: Path, settings: SessionSettings) -> ort.InferenceSession:
    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    check_regular_file(path, ModelError)  # a FIFO would block onnxruntime's read for ever
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: expected an ONNX model, found an empty file")
    try:
        return ort.InferenceSession(
            str(path), _options(settings), providers=["CPUExecutionProvider"]
        )
    except _ORT_ERRORS as e:
        hint = ""
        if "Could not find an implementation for" in str(e):  # an operator version too old
            hint = f" (`mnist-edge adopt {path} --out COPY` upgrades an old opset)"
        raise ModelError(
            f"{path}: expected an ONNX model onnxruntime can load, but {_reason(e)}{hint}"
        ) from None


_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _options(settings: SessionSettings) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    # onnxruntime's own log lines: none; every failure reaches the user as our one line
    opts.log_severity_level = 4
    if settings.threads is not None:
        opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = settings.memory_arena
    opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(settings.spinning)))
    if not settings.spin_between_runs:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.graph_optimization_level = _LEVELS[settings.optimization]
    if settings.profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = settings.profile_prefix
    return opts


def _reason(error: Exception) -> str:
    """onnxruntime's message without its source locations, on one line."""
    text = " ".join(str(error).split(" : ")[-1].split())
    return re.sub(r"/onnxruntime_src/\S+ .*?\) ", "", text)  # file:line signature(...)


def _signature(args: list) -> list[tuple[str, list, str]]:
    return [(a.name, list(a.shape), a.type) for a in args]
