"""The space-to-depth stem: the same function as the stride-2 one-channel conv it replaces."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install '.[onnx]'")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from train.stem import (  # noqa: E402
    feed_pixels_directly,
    limit_pixel_weights,
    space_to_depth_stems,
)


def one_conv(kernel: int, pads: list[int], size: int, stride: int = 2, channels: int = 1):
    rng = np.random.default_rng(kernel * 100 + sum(pads))
    weight = rng.normal(size=(6, channels, kernel, kernel)).astype(np.float32)
    bias = rng.normal(size=6).astype(np.float32)
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], name="stem", strides=[stride, stride], pads=pads,
        kernel_shape=[kernel, kernel],
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(
    "kernel,pads,size",
    [(5, [1, 1, 2, 2], 28), (5, [2, 2, 2, 2], 28), (3, [0, 0, 1, 1], 14), (3, [1, 1, 1, 1], 8),
     (5, [1, 1, 1, 1], 28), (4, [1, 2, 1, 0], 12), (2, [0, 0, 0, 0], 6)],
)  # fmt: skip
def test_a_stride_2_one_channel_conv_becomes_space_to_depth_with_the_same_outputs(
    kernel, pads, size
):
    model = one_conv(kernel, pads, size)
    x = np.random.default_rng(1).random((3, 1, size, size), np.float32)
    before = run(model, x)
    assert space_to_depth_stems(model) == ["stem"]
    assert [n.op_type for n in model.graph.node] == ["SpaceToDepth", "Conv"]
    after = run(model, x)
    assert after.shape == before.shape
    np.testing.assert_allclose(after, before, atol=1e-5)


@pytest.mark.parametrize(
    "what,model",
    [
        ("stride 1", one_conv(3, [1, 1, 1, 1], 28, stride=1)),
        ("two input channels", one_conv(3, [1, 1, 1, 1], 28, channels=2)),
        ("an odd size", one_conv(3, [1, 1, 1, 1], 27)),
    ],
)
def test_other_convolutions_are_left_alone(what, model):
    before = model.SerializeToString()
    assert space_to_depth_stems(model) == [], what
    assert model.SerializeToString() == before


def pixels_quantized(scale: float, zero_point: int, input_type=TensorProto.UINT8):
    """uint8 pixels -> Cast -> Reshape -> SpaceToDepth -> QuantizeLinear -> DequantizeLinear."""
    nodes = [
        helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["f", "shape"], ["r"]),
        helper.make_node("SpaceToDepth", ["r"], ["b"], blocksize=2),
        helper.make_node("QuantizeLinear", ["b", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "one", "zero"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 1, 28, 28], np.int64), "shape"),
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(np.array(zero_point, np.uint8), "z"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0, np.uint8), "zero"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", input_type, ["n", 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
        value_info=[helper.make_tensor_value_info("r", TensorProto.FLOAT, ["n", 1, 28, 28])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_uint8_pixels_skip_a_cast_and_a_quantize_that_undo_each_other():
    model = pixels_quantized(1.0, 0)
    x = np.random.default_rng(2).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    before = run(model, x)
    assert feed_pixels_directly(model)
    assert [n.op_type for n in model.graph.node] == ["Reshape", "SpaceToDepth", "DequantizeLinear"]
    np.testing.assert_array_equal(run(model, x), before)


@pytest.mark.parametrize(
    "what,model",
    [
        ("a scale of 0.5", pixels_quantized(0.5, 0)),
        ("a zero point of 3", pixels_quantized(1.0, 3)),
        ("float input", pixels_quantized(1.0, 0, TensorProto.FLOAT)),
    ],
)
def test_a_quantize_that_changes_the_pixels_is_kept(what, model):
    before = model.SerializeToString()
    assert not feed_pixels_directly(model), what
    assert model.SerializeToString() == before


def pixel_conv(input_type=TensorProto.UINT8):
    """uint8 pixels -> QLinearConv (full-range int8 weights, an int32 bias) -> DequantizeLinear."""
    rng = np.random.default_rng(3)
    weight = rng.integers(-127, 128, (4, 1, 3, 3)).astype(np.int8)
    weight[:, 0, 0, 0] = 127  # every channel reaches the top of the range
    arrays = {
        "xs": np.array(1.0, np.float32), "xz": np.array(0, np.uint8), "w": weight,
        "ws": np.array([0.01, 0.02, 0.03, 0.04], np.float32), "wz": np.zeros(4, np.int8),
        "ys": np.array(2.0, np.float32), "yz": np.array(128, np.uint8),
        "b": np.array([100, -200, 300, -400], np.int32),
    }  # fmt: skip
    nodes = [
        helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["q"],
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["q", "ys", "yz"], ["y"]),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", input_type, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for n, a in arrays.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_conv_that_reads_pixels_gets_7_bit_weights_of_the_same_values():
    model = pixel_conv()
    old = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    x = np.random.default_rng(4).integers(0, 256, (2, 1, 8, 8)).astype(np.uint8)
    before = run(model, x)
    assert limit_pixel_weights(model) == model.graph.node[0].name
    new = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.abs(new["w"]).max() == 63  # a pair of products stays within 16 bits
    step = new["ws"].reshape(-1, 1, 1, 1)
    real_before = old["w"] * old["ws"].reshape(-1, 1, 1, 1)
    assert np.all(np.abs(new["w"] * step - real_before) <= step / 2 + 1e-7)
    bias_step = new["xs"] * new["ws"]
    real_bias = old["b"] * old["xs"] * old["ws"]
    assert np.all(np.abs(new["b"] * bias_step - real_bias) <= bias_step / 2 + 1e-6)
    assert np.abs(run(model, x) - before).mean() < 2.0  # under one output step on average


def test_a_conv_that_reads_float_input_keeps_its_weights():
    model = pixel_conv(TensorProto.FLOAT)
    before = model.SerializeToString()
    assert limit_pixel_weights(model) is None
    assert model.SerializeToString() == before
