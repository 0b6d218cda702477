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


def _mlp_classifier(input_name: str, first: str, scale: float, dtype: int) -> list:
    """Nodes and initializers of the mlp over `first` (inputs at `scale` per [0, 1] pixel),
    ending in the probability tensor 'probabilities'."""
    w1, b1 = _folded(scale, 0.0)
    _, _, w2, b2 = mlp_weights()
    init = [
        numpy_helper.from_array(w1, "coef1"),
        numpy_helper.from_array(b1, "intercept1"),
        numpy_helper.from_array(w2, "coef2"),
        numpy_helper.from_array(b2, "intercept2"),
    ]
    nodes = [helper.make_node("Cast", [input_name], ["x32"], to=TensorProto.FLOAT)]
    nodes = nodes if dtype == TensorProto.DOUBLE else []
    x = "x32" if nodes else input_name
    nodes += [
        helper.make_node("Flatten", [x], [first], axis=1),
        helper.make_node("MatMul", [first, "coef1"], ["h0"]),
        helper.make_node("Add", ["h0", "intercept1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "coef2"], ["z0"]),
        helper.make_node("Add", ["z0", "intercept2"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
    ]
    return nodes, init


def _save_ml(graph: onnx.GraphProto, path: Path, meta: dict[str, str] | None = None) -> Path:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 1)],
    )
    model.ir_version = 8
    model.producer_name = "a framework that is not mnist-edge"
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


# A classifier's probabilities per image as {label: probability}: seq(map(int64, float))
SEQ_MAP = helper.make_sequence_type_proto(
    helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(1, []))
)


def _label_and_zipmap(label: str, probabilities: str, keepdims: int) -> list:
    """The tail classifier exporters write: the best label as int64, and ZipMap's maps."""
    return [
        helper.make_node("ArgMax", ["probabilities"], [label], axis=1, keepdims=keepdims),
        helper.make_node("ZipMap", ["probabilities"], [probabilities],
                         domain="ai.onnx.ml", classlabels_int64s=list(range(10))),
    ]  # fmt: skip


def skl2onnx_zipmap(path: Path) -> tuple[Path, Preprocess]:
    """skl2onnx's default for a classifier trained on raw pixels as float64: input [None, 784]
    double, 'output_label' int64 [None] and 'output_probability' through ZipMap."""
    nodes, init = _mlp_classifier("float_input", "flat", 255.0, TensorProto.DOUBLE)
    nodes += _label_and_zipmap("output_label", "output_probability", keepdims=0)
    graph = helper.make_graph(
        nodes,
        "mlp_classifier",
        [helper.make_tensor_value_info("float_input", TensorProto.DOUBLE, [None, 784])],
        [
            helper.make_tensor_value_info("output_label", TensorProto.INT64, [None]),
            helper.make_value_info("output_probability", SEQ_MAP),
        ],
        init,
    )

    def preprocess(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), 784).astype(np.float64)

    return _save_ml(graph, path), preprocess


def winmltools_image(path: Path) -> tuple[Path, Preprocess]:
    """WinMLTools' way: an NCHW image in 0..255 said by ONNX's image metadata, 'classLabel'
    int64 declared [None, 1], and 'loss' as ZipMap's probabilities."""
    nodes, init = _mlp_classifier("Input3", "flat", 255.0, TensorProto.FLOAT)
    nodes += _label_and_zipmap("classLabel", "loss", keepdims=1)
    graph = helper.make_graph(
        nodes,
        "winml",
        [helper.make_tensor_value_info("Input3", TensorProto.FLOAT, [None, 1, 28, 28])],
        [
            helper.make_tensor_value_info("classLabel", TensorProto.INT64, [None, 1]),
            helper.make_value_info("loss", SEQ_MAP),
        ],
        init,
    )
    meta = {
        "Image.BitmapPixelFormat": "Gray8",
        "Image.ColorSpaceGamma": "Linear",
        "Image.NominalPixelRange": "NominalRange_0_255",
    }

    def preprocess(images: np.ndarray) -> np.ndarray:
        return images.astype(np.float32)[:, None]

    return _save_ml(graph, path, meta), preprocess


def pytorch_03_opset6(path: Path) -> tuple[Path, Preprocess]:
    """A PyTorch 0.3 export: opset 6 (Gemm with `broadcast`, which onnxruntime no longer runs),
    a fixed batch of 64, MNIST's mean/std, LogSoftmax; initializers listed as inputs."""
    w1, b1 = _folded(1 / 0.3081, -0.1307 / 0.3081)
    _, _, w2, b2 = mlp_weights()
    init = [
        numpy_helper.from_array(w1.T.copy(), "1"),
        numpy_helper.from_array(b1, "2"),
        numpy_helper.from_array(w2.T.copy(), "3"),
        numpy_helper.from_array(b2, "4"),
        numpy_helper.from_array(np.array([64, 784], np.int64), "5"),
    ]
    nodes = [
        helper.make_node("Reshape", ["0", "5"], ["6"]),
        helper.make_node("Gemm", ["6", "1", "2"], ["7"], transB=1, broadcast=1),
        helper.make_node("Relu", ["7"], ["8"]),
        helper.make_node("Gemm", ["8", "3", "4"], ["9"], transB=1, broadcast=1),
        helper.make_node("LogSoftmax", ["9"], ["10"], axis=1),
    ]
    inputs = [helper.make_tensor_value_info("0", TensorProto.FLOAT, [64, 1, 28, 28])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in init]
    graph = helper.make_graph(
        nodes,
        "torch-jit-export",
        inputs,
        [helper.make_tensor_value_info("10", TensorProto.FLOAT, [64, 10])],
        init,
    )

    def preprocess(images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]

    return _save(graph, path, opset=6, ir_version=3), preprocess


def _sized_mlp(path: Path, side: int, shape: list, name: str) -> Path:
    """The mlp for MNIST brought to `side` pixels a side as LeNet-5's 32x32 (padded by 2) or a
    20x20 crop: the first layer's weights placed where the 28x28 pixels land."""
    w1, b1, w2, b2 = mlp_weights()
    pad = (side - 28) // 2
    grid = np.zeros((side + 2 * max(-pad, 0),) * 2 + (128,), np.float32)
    inner = w1.reshape(28, 28, 128)
    if pad >= 0:
        grid[pad : pad + 28, pad : pad + 28] = inner
    else:  # a crop sees only the middle of the 28x28
        grid = inner[-pad : 28 + pad, -pad : 28 + pad].copy()
    init = [
        numpy_helper.from_array(grid.reshape(side * side, 128), "W1"),
        numpy_helper.from_array(b1, "B1"),
        numpy_helper.from_array(w2, "W2"),
        numpy_helper.from_array(b2, "B2"),
    ]
    nodes = [
        helper.make_node("Flatten", [name], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W1", "B1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"mlp{side}",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        init,
    )
    return _save(graph, path, opset=13, ir_version=7)


def lenet_32(path: Path) -> tuple[Path, Preprocess]:
    """LeNet-5's input: [N, 1, 32, 32], MNIST padded by two blank pixels, in [0, 1]; logits."""

    def preprocess(images: np.ndarray) -> np.ndarray:
        padded = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255
        return padded[:, None]

    return _sized_mlp(path, 32, ["N", 1, 32, 32], "input"), preprocess


def flat_1024(path: Path) -> tuple[Path, Preprocess]:
    """A course model's flat input of 1,024 features (32x32 padded MNIST), in [0, 1]."""

    def preprocess(images: np.ndarray) -> np.ndarray:
        padded = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255
        return padded.reshape(len(images), 1024)

    return _sized_mlp(path, 32, ["N", 1024], "x"), preprocess


def crop_20(path: Path) -> tuple[Path, Preprocess]:
    """A model of 20x20 crops (the box MNIST's digits were fitted into): [N, 20, 20], [0, 1]."""

    def preprocess(images: np.ndarray) -> np.ndarray:
        return images[:, 4:24, 4:24].astype(np.float32) / 255

    return _sized_mlp(path, 20, ["N", 20, 20], "x"), preprocess


def mlp_reference(images: np.ndarray) -> np.ndarray:
    """The shipped mlp's scores computed with numpy alone: what any faithful copy must give."""
    w1, b1, w2, b2 = mlp_weights()
    x = images.reshape(len(images), 784).astype(np.float64) / 255
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


BUILDERS = {
    "pytorch-normalized-logits": pytorch_normalized,
    "pytorch-fixed-batch-logsoftmax": pytorch_fixed_batch,
    "chainer-three-channels": chainer_three_channels,
    "keras2onnx-nhwc-softmax": keras2onnx_nhwc,
    "skl2onnx-zipmap-float64": skl2onnx_zipmap,
    "winmltools-image-metadata-zipmap": winmltools_image,
    "lenet-32x32-nchw": lenet_32,
    "flat-1024": flat_1024,
    "crop-20x20-nhw": crop_20,
}
# The options each needs on the command line (what its author would know).
OPTIONS = {
    "pytorch-normalized-logits": ["--mean", "0.5", "--std", "0.5"],
    "pytorch-fixed-batch-logsoftmax": ["--mean", "0.1307", "--std", "0.3081"],
    "chainer-three-channels": [],
    "keras2onnx-nhwc-softmax": [],
    "skl2onnx-zipmap-float64": ["--input-range", "0,255"],
    "winmltools-image-metadata-zipmap": [],  # its image metadata says it all
    "lenet-32x32-nchw": [],  # padded by two: the default for a side of 32
    "flat-1024": [],
    "crop-20x20-nhw": [],  # cropped by four: the default for a side of 20
}
