"""Load an exported model with onnxruntime and classify digits with it."""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from runtime.contract import Contract, read_contract
from runtime.cpu import int8_exact
from runtime.errors import InputError, ModelError
from runtime.preprocess import as_images

FP32_MODEL = "mnist_edge.onnx"
INT8_MODEL = "mnist_edge.int8.onnx"  # the default where the CPU runs 8-bit kernels exactly
DEFAULT_BATCH_SIZE = 256  # large inputs run in chunks of this many images: bounded memory
_PACKAGE_MODELS = Path(__file__).parent / "models"  # where a wheel install carries them
_SOURCE_MODELS = Path(__file__).parent.parent / "exported"  # a source checkout
_ORT_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def default_model_name() -> str:
    """The INT8 edge model where its kernels are exact (x86 with VNNI, ARM64), else fp32."""
    return INT8_MODEL if int8_exact() else FP32_MODEL


def default_model_path() -> Path:
    """The shipped model: $MNIST_EDGE_MODEL, else the installed copy, else the checkout's."""
    if os.environ.get("MNIST_EDGE_MODEL"):
        return resolve_model(os.environ["MNIST_EDGE_MODEL"])
    name = default_model_name()
    path = _shipped(name)
    if path is None:
        raise ModelError(
            f"no shipped model {name} found in {_PACKAGE_MODELS} or {_SOURCE_MODELS}: "
            "pass --model PATH"
        )
    return path


def resolve_model(model: Path | str | None) -> Path:
    """A model path; a bare name that is no file here, such as mnist_edge.int8.onnx, names a
    shipped model."""
    if model is None:
        return default_model_path()
    path = Path(model)
    if path.exists() or path.parent != Path("."):
        return path
    return _shipped(path.name) or path


def _shipped(name: str) -> Path | None:
    """The installed copy of a shipped model, else the checkout's; None if neither exists."""
    return next(
        (
            folder / name
            for folder in (_PACKAGE_MODELS, _SOURCE_MODELS)
            if (folder / name).is_file()
        ),
        None,
    )


@dataclass(frozen=True)
class SessionSettings:
    """onnxruntime settings that matter on small devices."""

    threads: int | None = None  # intra-op threads; None lets onnxruntime use every core
    spinning: bool = True  # busy-wait between ops: lower latency, more power
    memory_arena: bool = True  # reuse buffers between calls
    optimization: str = "all"  # graph optimisation: disable, basic, extended, all
    # With several threads, split a large batch across single-thread sessions, one slice per
    # thread, instead of threading inside each op. None: only for INT8 models, where it measured
    # 1.4x onnxruntime's own threads (edge INT8, batch 256, 2 threads); fp32 lost about 4%.
    split_batches: bool | None = None

    def options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        if self.threads is not None:
            if self.threads < 1:
                raise InputError(f"--threads: expected a positive count, found {self.threads}")
            opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.enable_cpu_mem_arena = self.memory_arena
        opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(self.spinning)))
        opts.graph_optimization_level = OPTIMIZATION_LEVELS[self.optimization]
        return opts


OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class Classifier:
    """An MNIST classifier on onnxruntime (one session; with batch splitting, one single-thread
    session per thread); safe to share between threads.

    >>> clf = Classifier()                # the shipped default model
    >>> clf.predict(images)               # (N,) labels for uint8 or [0, 1] float images
    """

    def __init__(
        self,
        path: Path | str | None = None,
        threads: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        settings: SessionSettings | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch_size: expected a positive count, found {batch_size}")
        self.path = resolve_model(path)
        self.settings = settings or SessionSettings(threads=threads)
        self.batch_size = batch_size
        self.session = _open(self.path, self.settings.options())
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        try:
            self.contract: Contract = read_contract(
                _signature(self.session.get_inputs()),
                _signature(self.session.get_outputs()),
                self.metadata,
            )
        except ModelError as e:
            raise ModelError(f"{self.path}: {e}") from None
        self._outputs = [self.contract.output_name]
        self._local = threading.local()
        self._bindable = self.session.get_outputs()[0].type == "tensor(float)"
        self.split_threads = _split_threads(self.settings, self.metadata)  # 1: never split
        self._replicas: list[ort.InferenceSession] = []
        self._pool: ThreadPoolExecutor | None = None
        if self.split_threads > 1:
            # One single-thread session per thread; small batches run on the first alone (for
            # INT8, batch 1 on one thread measured 22.8 us, on two 26.2 us).
            one = replace(self.settings, threads=1).options()
            self._replicas = [_open(self.path, one) for _ in range(self.split_threads)]
            self._pool = ThreadPoolExecutor(self.split_threads - 1, thread_name_prefix="mnist-edge")
            self.session = self._replicas[0]

    def predict_proba(self, x: object) -> np.ndarray:
        """Class probabilities, float32 (N, 10), for images in any accepted shape."""
        images = as_images(x)  # (N, 28, 28): uint8 as given, or float32 in [0, 1]
        if 0 < len(images) <= self.batch_size:
            return self._run(images)  # one call: no extra copy
        out = np.empty((len(images), len(self.contract.labels)), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            out[start : start + len(chunk)] = self._run(chunk)
        return out

    def predict(self, x: object) -> np.ndarray:
        """Predicted labels, int64 (N,)."""
        return self.predict_proba(x).argmax(axis=1)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n, replicas = self.split_threads, self._replicas
        if n == 1 or len(batch) < n * SPLIT_MIN_IMAGES:
            return self._run_on(self.session, batch)
        cuts = np.linspace(0, len(batch), n + 1).astype(int)
        slices = [batch[a:b] for a, b in itertools.pairwise(cuts)]
        others = [
            self._pool.submit(self._run_on, r, s)
            for r, s in zip(replicas[1:], slices[1:], strict=True)
        ]
        first = self._run_on(replicas[0], slices[0])  # this thread does a share too
        return np.concatenate([first, *(f.result() for f in others)])

    def _run_on(self, session: ort.InferenceSession, batch: np.ndarray) -> np.ndarray:
        tensor = self.contract.feed(batch)
        binding = self._binding(session, tensor.shape, tensor.dtype)
        if binding is None:
            (scores,) = session.run(self._outputs, {self.contract.input_name: tensor})
        else:
            scores = binding(tensor)
        if self.contract.output == "logits":
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        return scores

    def _binding(self, session: ort.InferenceSession, shape: tuple, dtype: np.dtype):
        """A run function bound to preallocated input and output buffers for this shape, made
        once per thread (bindings are not shared between threads); None past a few shapes.

        Binding saves onnxruntime the per-call allocation: about 2-3 us of a 25 us call."""
        if not self._bindable:
            return None
        try:
            cache = self._local.bindings
        except AttributeError:
            cache = self._local.bindings = {}
        key = (id(session), shape)
        binding = cache.get(key)
        if binding is None and len(cache) < _MAX_BINDINGS:
            binding = cache[key] = _bound_run(session, self.contract, shape, dtype)
        return binding


_MAX_BINDINGS = 6  # per thread: the (session, batch shape) pairs a caller repeats
SPLIT_MIN_IMAGES = 128  # per thread: 64-image slices measured slower than not splitting


def _split_threads(settings: SessionSettings, metadata: dict[str, str]) -> int:
    """How many single-thread sessions a large batch is split across (1: none)."""
    split = settings.split_batches
    if not (split or (split is None and metadata.get("variant") == "int8")):
        return 1
    if settings.threads is not None:
        return settings.threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _bound_run(session: ort.InferenceSession, contract: Contract, shape: tuple, dtype: np.dtype):
    inputs = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype))
    outputs = ort.OrtValue.ortvalue_from_shape_and_type(
        [shape[0], len(contract.labels)], np.float32
    )
    binding = session.io_binding()
    binding.bind_ortvalue_input(contract.input_name, inputs)
    binding.bind_ortvalue_output(contract.output_name, outputs)

    def run(tensor: np.ndarray) -> np.ndarray:
        inputs.update_inplace(np.ascontiguousarray(tensor))
        session.run_with_iobinding(binding)
        return outputs.numpy().copy()  # the buffer is reused by the next call

    return run


def _open(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: expected an ONNX model, found an empty file")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except _ORT_ERRORS as e:
        reason = str(e).split(" : ")[-1].strip()
        raise ModelError(
            f"{path}: expected an ONNX model onnxruntime can load, but {reason}"
        ) from None


def _signature(args: list) -> list[tuple[str, list, str]]:
    return [(a.name, list(a.shape), a.type) for a in args]
