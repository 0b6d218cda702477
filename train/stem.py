"""Rewrite a stride-2 convolution over one input channel as SpaceToDepth and a stride-1
convolution over four channels: the same function, in a form onnxruntime quantizes well.

A first layer such as the edge model's 5x5 stride-2 conv over the gray image has one input
channel, which onnxruntime's QLinearConv handles poorly (about 10x less work per second than the
layers after it); kept in fp32, it costs a reorder out of the NCHWc layout and a QuantizeLinear
instead. Cutting the image into 2x2 blocks (SpaceToDepth, four channels of half the size) lets
the kernel be laid out over blocks: output (i, j) reads input row 2i - top + k for k < K, that
is block row i + floor((k - top) / 2), sub-row (k - top) mod 2. Unused taps are zero.

After quantization, a model that takes uint8 pixels casts them to float and quantizes them back
with scale 1 and zero point 0, an identity: `feed_pixels_directly` drops both ops, so the pixels
reach the first QLinearConv as they are.
"""

from __future__ import annotations

from itertools import takewhile

import numpy as np
import onnx
from onnx import helper, numpy_helper

from train.simplify import attribute, drop_dead_nodes, static_shapes


def space_to_depth_stems(model: onnx.ModelProto) -> list[str]:
    """Rewrite, in place, every Conv with one input channel, stride 2, no dilation and no
    groups over an image of even size; returns the names of the rewritten convolutions."""
    shapes = static_shapes(model)
    inits = {t.name: t for t in model.graph.initializer}
    rewritten = []
    for conv in [n for n in model.graph.node if n.op_type == "Conv"]:
        weight = inits.get(conv.input[1])
        shape = shapes.get(conv.input[0], [])
        if weight is None or not _fits(conv, weight, shape):
            continue
        w = numpy_helper.to_array(weight)
        blocked, pads = block_kernel(w, attribute(conv, "pads", [0, 0, 0, 0]), shape[2:])
        if min(pads) < 0:
            continue
        name = f"{conv.input[1]}_space_to_depth"
        model.graph.initializer.append(numpy_helper.from_array(blocked, name))
        blocks = f"{conv.input[0]}_space_to_depth"
        at = list(model.graph.node).index(conv)
        model.graph.node.insert(
            at,
            helper.make_node(
                "SpaceToDepth", [conv.input[0]], [blocks], name=f"{conv.name}_blocks", blocksize=2
            ),
        )
        conv.input[0], conv.input[1] = blocks, name
        _set(conv, "strides", [1, 1])
        _set(conv, "kernel_shape", list(blocked.shape[2:]))
        _set(conv, "pads", pads)
        rewritten.append(conv.name)
    drop_dead_nodes(model)  # the replaced kernels
    return rewritten


def block_kernel(
    weight: np.ndarray, pads: list[int], size: list[int]
) -> tuple[np.ndarray, list[int]]:
    """The (O, 4, K', K') kernel over 2x2 blocks that a (O, 1, K, K) stride-2 kernel with
    `pads` (top, left, bottom, right) over an image of `size` (H, W) becomes, and the pads that
    give as many outputs; SpaceToDepth puts sub-pixel (r, c) of each block in channel 2r + c."""
    kernel = weight.shape[2:]
    taps = [[divmod(k - pads[axis], 2) for k in range(kernel[axis])] for axis in (0, 1)]
    first = [t[0][0] for t in taps]  # the block offset of each axis' first and last tap
    last = [t[-1][0] for t in taps]
    blocked = np.zeros(
        (weight.shape[0], 4, last[0] - first[0] + 1, last[1] - first[1] + 1), weight.dtype
    )
    for kr, (br, sr) in enumerate(taps[0]):
        for kc, (bc, sc) in enumerate(taps[1]):
            blocked[:, 2 * sr + sc, br - first[0], bc - first[1]] = weight[:, 0, kr, kc]
    outputs = [(size[a] + pads[a] + pads[a + 2] - kernel[a]) // 2 + 1 for a in (0, 1)]
    ends = [outputs[a] - size[a] // 2 + last[a] for a in (0, 1)]
    return blocked, [-first[0], -first[1], ends[0], ends[1]]


LAYOUT_OPS = {"Reshape", "SpaceToDepth", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}


def pixel_ranges(model: onnx.ModelProto) -> dict[str, list[dict]]:
    """Quantization overrides that give the float tensors still holding a uint8 input's raw
    pixels (its Cast, then layout ops) their full range, 0..255: scale 1, zero point 0, so the
    pixels are quantized exactly, however the calibration method clips other tensors, and
    `feed_pixels_directly` can drop the pair."""
    overrides = {}
    for source in model.graph.input:
        if source.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
            continue
        chain = _only_consumers(model.graph, source.name, until="Conv")
        if chain and chain[0].op_type == "Cast":
            pixels = [chain[0], *takewhile(lambda n: n.op_type in LAYOUT_OPS, chain[1:])]
            overrides.update(
                {n.output[0]: [{"rmin": np.float32(0), "rmax": np.float32(255)}] for n in pixels}
            )
    return overrides


def feed_pixels_directly(model: onnx.ModelProto) -> bool:
    """Drop, in place, a uint8 input's Cast to float and the QuantizeLinear (scale 1, zero point
    0, uint8) that follows it through layout ops only; True if they were there."""
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for source in graph.input:
        if source.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
            continue
        chain = _only_consumers(graph, source.name, until="QuantizeLinear")
        if not chain or chain[0].op_type != "Cast":
            continue
        quantize, layout = chain[-1], chain[1:-1]
        if (
            quantize.op_type != "QuantizeLinear"
            or any(n.op_type not in LAYOUT_OPS for n in layout)
            or len(quantize.input) < 3
            or inits.get(quantize.input[1]) is None
            or inits.get(quantize.input[2]) is None
            or inits[quantize.input[2]].dtype != np.uint8
            or inits[quantize.input[1]].size != 1
            or float(inits[quantize.input[1]]) != 1.0
            or int(inits[quantize.input[2]]) != 0
        ):
            continue
        if not layout:
            _rename_input(graph, quantize.output[0], source.name)
        else:
            layout[0].input[0] = source.name
            retyped = {n.output[0] for n in layout}
            layout[-1].output[0] = quantize.output[0]
            for info in [v for v in graph.value_info if v.name in retyped]:
                graph.value_info.remove(info)  # they were float; they are uint8 now
        graph.node.remove(chain[0])
        graph.node.remove(quantize)
        drop_dead_nodes(model)  # their scale and zero point
        return True
    return False


def limit_pixel_weights(model: onnx.ModelProto) -> str | None:
    """Requantize, in place, the weights of the QLinearConv that reads uint8 pixels straight
    from the input (through layout ops only) to 7 bits, |w| <= 63; returns its name.

    On x86 without VNNI (AVX2), onnxruntime's uint8 x int8 kernel adds pairs of products in 16
    bits with saturation: pixels up to 255 against weights up to 127 overflow (2 x 255 x 127 >
    32,767), which moved labels there. With 7-bit weights a pair stays within 2 x 255 x 64."""
    graph = model.graph
    for source in graph.input:
        if source.type.tensor_type.elem_type != onnx.TensorProto.UINT8:
            continue
        *layout, conv = _only_consumers(graph, source.name, until="QLinearConv") or [None]
        if (
            conv is not None
            and conv.op_type == "QLinearConv"
            and all(n.op_type in LAYOUT_OPS for n in layout)
        ):
            _requantize_weights(graph, conv, bits=7)
            return conv.name
    return None


def _requantize_weights(graph: onnx.GraphProto, conv: onnx.NodeProto, bits: int) -> None:
    inits = {t.name: t for t in graph.initializer}
    x_scale = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    weight = numpy_helper.to_array(inits[conv.input[3]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[conv.input[4]]).astype(np.float64)
    per_channel = scale.reshape(-1, *[1] * (weight.ndim - 1))
    real = weight * per_channel  # zero points are 0: symmetric int8 weights
    top = 2 ** (bits - 1) - 1
    largest = np.abs(real).reshape(len(real), -1).max(axis=1)
    new_scale = np.where(largest > 0, largest / top, scale.reshape(-1)).reshape(scale.shape)
    new_per_channel = new_scale.reshape(-1, *[1] * (weight.ndim - 1))
    new_weight = np.clip(np.round(real / new_per_channel), -top, top).astype(np.int8)
    _replace(inits[conv.input[3]], new_weight)
    _replace(inits[conv.input[4]], new_scale.astype(np.float32))
    if len(conv.input) > 8 and conv.input[8] in inits:  # int32 bias, in units of x * w scale
        bias = numpy_helper.to_array(inits[conv.input[8]]).astype(np.float64)
        real_bias = bias * x_scale * scale.reshape(-1)
        _replace(
            inits[conv.input[8]],
            np.round(real_bias / (x_scale * new_scale.reshape(-1))).astype(np.int32),
        )


def _replace(tensor: onnx.TensorProto, array: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))


def _only_consumers(graph: onnx.GraphProto, name: str, until: str) -> list[onnx.NodeProto]:
    """The nodes from `name` on while each output feeds exactly one node, up to and including
    the first `until` op."""
    chain = []
    while True:
        users = [n for n in graph.node if name in n.input]
        if len(users) != 1 or any(name == o.name for o in graph.output):
            return chain
        chain.append(users[0])
        if users[0].op_type == until or len(users[0].output) != 1:
            return chain
        name = users[0].output[0]


def _rename_input(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]


def _fits(conv: onnx.NodeProto, weight: onnx.TensorProto, shape: list[int]) -> bool:
    return (
        len(weight.dims) == 4
        and weight.dims[1] == 1
        and len(shape) == 4
        and all(d > 0 and d % 2 == 0 for d in shape[2:])
        and attribute(conv, "strides", [1, 1]) == [2, 2]
        and attribute(conv, "dilations", [1, 1]) == [1, 1]
        and attribute(conv, "group", 1) == 1
        and attribute(conv, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def _set(node: onnx.NodeProto, name: str, value) -> None:
    for a in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))
