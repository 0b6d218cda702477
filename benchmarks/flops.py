"""The physical limit: a model's FLOPs per image and the machine's measured matmul peak."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, shape_inference


def flops_per_image(path: Path) -> int:
    """2 x multiply-accumulates of every Conv, MatMul and Gemm, at batch 1."""
    model = onnx.load(path)
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)
    }
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = shapes[node.output[0]]  # N, C_out, H, W
            weight = shapes[node.input[1]]  # C_out, C_in / group, kH, kW
            macs += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            macs += int(np.prod(a)) * b[-1]
    return 2 * macs


def keras_flops_per_image(path: Path) -> int:
    """The same count for a Keras model of Conv2D and Dense layers (the LiteRT anchor)."""
    import keras

    macs = 0
    for layer in keras.models.load_model(path).layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, _ = layer.kernel.shape
            macs += int(np.prod(layer.output.shape[1:])) * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            macs += int(np.prod(layer.kernel.shape))
    return 2 * macs


def peak_gflops(threads: int, size: int = 1024, seconds: float = 1.0) -> float:
    """fp32 GFLOP/s of a size x size x size matmul in onnxruntime (the kernels the runtime uses)."""
    weight = np.random.default_rng(0).random((size, size), dtype=np.float32)
    return _matmul_rate("MatMul", weight, weight, TensorProto.FLOAT, threads, seconds)


def peak_int8_gops(threads: int, size: int = 1024, seconds: float = 1.0) -> float:
    """uint8 x int8 GOP/s of the same matmul as MatMulInteger: onnxruntime's integer GEMM, the
    kernel under QLinearConv and QLinearMatMul (VNNI where the CPU has it)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (size, size), dtype=np.uint8)
    b = rng.integers(-128, 128, (size, size), dtype=np.int8)
    return _matmul_rate("MatMulInteger", a, b, TensorProto.INT32, threads, seconds)


def _matmul_rate(op, a, weight, out_type, threads: int, seconds: float) -> float:
    size = a.shape[0]
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info("a", helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)],
        [helper.make_tensor_value_info("c", out_type, [size, size])],
        initializer=[numpy_helper.from_array(weight, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    feed = {"a": a}
    session.run(None, feed)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, feed)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9
