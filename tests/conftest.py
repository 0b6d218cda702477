"""Shared fixtures: tiny MNIST files written on the spot, tiny ONNX models, the real data."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import DataError
from runtime.mnist import IDX_NAMES, locate

ROOT = Path(__file__).resolve().parent.parent
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CI set (`.ci/run` sets it), a skipped test fails: there every component a test
    needs (extras, npm packages, Chromium, qemu, MNIST) was meant to be installed, and a skip
    would hide that it was not. A user's machine still skips, saying why."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where .ci/run installs what it needs: {reason}"


def cli_app():
    """The whole `mnist-edge` app, workstation commands included, as `main` builds it."""
    from runtime.cli import app
    from train.cli import register

    register(app)
    return app


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """Encode an array in IDX: magic 00 00 <type> <ndim>, big-endian dims, then the data."""
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 (28, 28) images of blobs whose position encodes a label 0-9, and the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for img, label in zip(images, labels, strict=True):
        row, col = 4 + 2 * (label // 5) * 5, 4 + 4 * (label % 5)
        img[row : row + 8, col : col + 4] = rng.integers(150, 256)
    return images, labels


@pytest.fixture
def mnist_folder(tmp_path: Path) -> Path:
    """A folder with the four standard IDX files (gzip), 60 train and 20 test images."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for split, n in (("train", 60), ("test", 20)):
        images, labels = synthetic_digits(n, seed=len(split))
        images_name, labels_name = IDX_NAMES[split]
        write_idx(folder / f"{images_name}.gz", images, compress=True)
        write_idx(folder / f"{labels_name}.gz", labels, compress=True)
    return folder


def real_mnist_dir() -> Path | None:
    """Real MNIST where the CLI finds it (--data's lookup: $MNIST_DIR, Keras' cache), else the
    shared folder beside the checkout; None where there is none. Never downloads."""
    candidates = [None] if os.environ.get("MNIST_DIR") else [None, SHARED_MNIST]
    for data in candidates:
        try:
            source = locate("test", data, download=False)
        except DataError:
            continue
        return source.path.resolve()  # tests run commands from other folders
    return None


@pytest.fixture
def real_mnist() -> Path:
    """The real MNIST folder; the test is skipped, saying why, when there is none."""
    folder = real_mnist_dir()
    if folder is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    return folder


def linear_onnx(
    path: Path,
    input_shape: tuple = ("N", 28, 28, 1),
    input_type: str = "float",
    metadata: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """A tiny ONNX model: flatten -> MatMul(784x10) -> Softmax, made with onnx.helper."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    elem = {"float": TensorProto.FLOAT, "uint8": TensorProto.UINT8}[input_type]
    features = int(np.prod([d for d in input_shape[1:]]))
    weights = np.random.default_rng(seed).normal(0, 0.05, (features, 10)).astype(np.float32)
    nodes = []
    x = "image"
    if input_type == "uint8":
        nodes.append(helper.make_node("Cast", [x], ["image_f"], to=TensorProto.FLOAT))
        x = "image_f"
    nodes += [
        helper.make_node("Reshape", [x, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("image", elem, list(input_shape))],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.array([-1, features], np.int64), "flat_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def slow_onnx(path: Path, iterations_per_unit: float, metadata: bool = True) -> Path:
    """A model whose call runs a Loop of (brightest pixel x `iterations_per_unit`) empty steps
    first: a black image answers at once, a bright one takes as long as asked (1e6: about
    0.6 s here), 1e15 never ends. Its answer is then a linear model's."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as T
    from onnx import helper as h

    from runtime.contract import metadata_for

    step = h.make_graph(
        [h.make_node("Identity", ["go_in"], ["go_out"]), h.make_node("Neg", ["acc"], ["next"])],
        "step",
        [h.make_tensor_value_info(n, t, []) for n, t in
         (("i", T.INT64), ("go_in", T.BOOL), ("acc", T.FLOAT))],
        [h.make_tensor_value_info("go_out", T.BOOL, []),
         h.make_tensor_value_info("next", T.FLOAT, [])],
    )  # fmt: skip
    weights = np.random.default_rng(0).normal(0, 0.05, (784, 10)).astype(np.float32)
    nodes = [
        h.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),
        h.make_node("Mul", ["peak", "per_unit"], ["steps_f"]),
        h.make_node("Cast", ["steps_f"], ["steps"], to=T.INT64),
        h.make_node("Loop", ["steps", "go", "zero"], ["acc"], body=step),
        h.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
        h.make_node("MatMul", ["flat", "W"], ["scores"]),
        h.make_node("Add", ["scores", "acc"], ["logits"]),  # acc is 0: the loop's sign flips
        h.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = h.make_graph(
        nodes,
        "slow",
        [h.make_tensor_value_info("image", T.FLOAT, ["N", 28, 28, 1])],
        [h.make_tensor_value_info("probabilities", T.FLOAT, ["N", 10])],
        initializer=[
            h.make_tensor("per_unit", T.FLOAT, [], [float(iterations_per_unit)]),
            h.make_tensor("go", T.BOOL, [], [True]),
            h.make_tensor("zero", T.FLOAT, [], [0.0]),
            h.make_tensor("flat_shape", T.INT64, [2], [-1, 784]),
            h.make_tensor("W", T.FLOAT, [784, 10], weights.ravel().tolist()),
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    if metadata:
        meta = metadata_for(layout="NHWC", pixel_scale=1 / 255, output="probabilities")
        h.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A linear model with mnist-edge metadata (NHWC float input in [0, 1])."""
    from runtime.contract import metadata_for

    meta = metadata_for(layout="NHWC", pixel_scale=1 / 255, output="probabilities", arch="linear")
    return linear_onnx(tmp_path / "linear.onnx", metadata=meta)
