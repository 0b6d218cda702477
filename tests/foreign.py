"""MNIST models as other frameworks export them, built with onnx.helper from the shipped mlp's
weights, so that each is a real classifier (about 95%) with its own conventions.

Each builder returns (path, preprocess): `preprocess(uint8 (N, 28, 28))` is the input plain
onnxruntime needs, written out by hand as the model's author would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT

MLP = ROOT / "exported" / "mnist_mlp.onnx"
Preprocess = Callable[[np.ndarray], np.ndarray]


def mlp_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(W1 (784, 128), b1, W2 (128, 10), b2) of the shipped mlp, for inputs in [0, 1]."""
    arrays = {t.name: numpy_helper.to_array(t) for t in onnx.load(MLP).graph.initializer}
    by_shape = {a.shape: a for a in arrays.values()}
    return by_shape[(784, 128)], by_shape[(128,)], by_shape[(128, 10)], by_shape[(10,)]


def _folded(scale: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """First-layer weights for inputs x = p * scale + offset (p in [0, 1]): W' x + b' == W p + b."""
    w1, b1, _, _ = mlp_weights()
    return (w1 / scale).astype(np.float32), (b1 - (offset / scale) * w1.sum(axis=0)).astype(
        np.float32
    )


def _save(graph: onnx.GraphProto, path: Path, opset: int, ir_version: int) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    model.producer_name = "a framework that is not mnist-edge"
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def pytorch_normalized(path: Path) -> tuple[Path, Preprocess]:
    """torchvision's Normalize((0.5,), (0.5,)): NCHW input in [-1, 1], Gemm layers, logits out,
    a dynamic batch named as torch.onnx.export names it."""
    w1, b1 = _folded(2.0, -1.0)
    _, _, w2, b2 = mlp_weights()
    init = [
        numpy_helper.from_array(w1.T.copy(), "fc1.weight"),  # torch Linear keeps (out, in)
        numpy_helper.from_array(b1, "fc1.bias"),
        numpy_helper.from_array(w2.T.copy(), "fc2.weight"),
        numpy_helper.from_array(b2, "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 1, 28, 28])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", 10])],
        init,
    )

    def preprocess(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255 - 0.5) / 0.5)[:, None]

    return _save(graph, path, opset=17, ir_version=8), preprocess


def pytorch_fixed_batch(path: Path) -> tuple[Path, Preprocess]:
    """A PyTorch 1.x export: input fixed at [1, 1, 28, 28], MNIST's mean/std, x.view(1, -1) as a
    constant Reshape target, LogSoftmax at the end."""
    w1, b1 = _folded(1 / 0.3081, -0.1307 / 0.3081)
    _, _, w2, b2 = mlp_weights()
    init = [
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
        numpy_helper.from_array(w1, "W1"),
        numpy_helper.from_array(b1, "B1"),
        numpy_helper.from_array(w2, "W2"),
        numpy_helper.from_array(b2, "B2"),
    ]
    nodes = [
        helper.make_node("Reshape", ["input.1", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W1", "B1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["z"]),
        helper.make_node("LogSoftmax", ["z"], ["18"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "torch-jit-export",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("18", TensorProto.FLOAT, [1, 10])],
        init,
    )

    def preprocess(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]

    return _save(graph, path, opset=11, ir_version=6), preprocess


def chainer_three_channels(path: Path) -> tuple[Path, Preprocess]:
    """A Chainer-era export: input [1, 3, 28, 28] in [0, 1] (grey copied into each channel),
    initializers also listed as graph inputs, a hidden layer's output listed first."""
    w1, b1, w2, b2 = mlp_weights()
    w3 = np.concatenate([w1 / 3] * 3).astype(np.float32)  # each channel holds the same grey
    init = [
        numpy_helper.from_array(np.array([1, 3 * 784], np.int64), "shape"),
        numpy_helper.from_array(w3, "W1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "W2"),
        numpy_helper.from_array(b2, "b2"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "W2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["z"]),
        helper.make_node("Softmax", ["z"], ["prob"], axis=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 28, 28])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in init]
    graph = helper.make_graph(
        nodes,
        "chainer",
        inputs,
        [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, 128]),
            helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10]),
        ],
        init,
    )

    def preprocess(images: np.ndarray) -> np.ndarray:
        grey = images.astype(np.float32)[:, None] / 255
        return np.repeat(grey, 3, axis=1)

    return _save(graph, path, opset=9, ir_version=3), preprocess


def keras2onnx_nhwc(path: Path) -> tuple[Path, Preprocess]:
    """A keras2onnx-era export: NHWC in [0, 1], softmax, a dynamic batch, no mnist-edge
    metadata: the shipped mlp with its metadata stripped."""
    model = onnx.load(MLP)
    del model.metadata_props[:]
    onnx.save(model, path)

    def preprocess(images: np.ndarray) -> np.ndarray:
        return images.astype(np.float32)[..., None] / 255

    return path, preprocess


BUILDERS = {
    "pytorch-normalized-logits": pytorch_normalized,
    "pytorch-fixed-batch-logsoftmax": pytorch_fixed_batch,
    "chainer-three-channels": chainer_three_channels,
    "keras2onnx-nhwc-softmax": keras2onnx_nhwc,
}
# The options each needs on the command line (what its author would know).
OPTIONS = {
    "pytorch-normalized-logits": ["--mean", "0.5", "--std", "0.5"],
    "pytorch-fixed-batch-logsoftmax": ["--mean", "0.1307", "--std", "0.3081"],
    "chainer-three-channels": [],
    "keras2onnx-nhwc-softmax": [],
}
