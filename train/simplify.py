"""Export-time clean-up of the dense head that tf2onnx writes for Keras' Flatten, and its
INT8 counterpart.

tf2onnx turns `Flatten -> Dense` on an NCHW feature map into
    Transpose(NCHW -> NHWC) -> Shape/Gather/Cast/Slice/Concat/Cast (the dynamic target shape)
    -> Reshape -> MatMul
eight small ops that cost about as much as a convolution at batch 1. The same numbers come from
    Reshape(NCHW, [-1, C*H*W]) -> MatMul(W permuted to NCHW order)
so the head is rewritten to that, and the ops nobody reads any more are dropped.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def simplify_dense_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every Transpose(0,2,3,1) -> Reshape -> MatMul(const) chain; returns `model`."""
    shapes = static_shapes(model)
    consumers = _consumers(model)
    inits = {t.name: t for t in model.graph.initializer}
    for reshape in [n for n in model.graph.node if n.op_type == "Reshape"]:
        transpose = _producer(model, reshape.input[0])
        users = consumers.get(reshape.output[0], [])
        if (
            transpose is None
            or transpose.op_type != "Transpose"
            or list(attribute(transpose, "perm")) != [0, 2, 3, 1]
            or len(users) != 1
            or users[0].op_type != "MatMul"
            or users[0].input[1] not in inits
            or len(consumers.get(transpose.output[0], [])) != 1
        ):
            continue
        _, c, h, w = shapes[transpose.input[0]]
        weight = numpy_helper.to_array(inits[users[0].input[1]])  # (H*W*C, K), NHWC order
        k = weight.shape[1]
        nchw = weight.reshape(h, w, c, k).transpose(2, 0, 1, 3).reshape(c * h * w, k)
        inits[users[0].input[1]].CopyFrom(numpy_helper.from_array(nchw, users[0].input[1]))
        shape_name = reshape.output[0] + "_flat_shape"
        model.graph.initializer.append(
            numpy_helper.from_array(np.array([-1, c * h * w], np.int64), shape_name)
        )
        reshape.input[:] = [transpose.input[0], shape_name]
    drop_dead_nodes(model)
    return model


def flatten_in_nhwc_order(model: onnx.ModelProto) -> list[str]:
    """The INT8 counterpart of `simplify_dense_head`: onnxruntime runs QLinearConv in NHWC and
    transposes back to NCHW for a flatten that follows, so a Reshape(QLinearConv) -> QGemm
    chain gets the Transpose(0,2,3,1) back, which cancels the one onnxruntime adds, and the
    QGemm's weight rows NHWC order. Rewrites in place; returns the QGemm nodes changed."""
    shapes = static_shapes(model)
    consumers = _consumers(model)
    inits = {t.name: t for t in model.graph.initializer}
    changed = []
    for reshape in [n for n in model.graph.node if n.op_type == "Reshape"]:
        conv = _producer(model, reshape.input[0])
        users = consumers.get(reshape.output[0], [])
        shape = shapes.get(reshape.input[0], [])
        if (
            conv is None
            or conv.op_type != "QLinearConv"
            or len(consumers.get(conv.output[0], [])) != 1
            or len(users) != 1
            or users[0].op_type != "QGemm"
            or users[0].input[3] not in inits
            or attribute(users[0], "transB")
            or len(shape) != 4
            or 0 in shape[1:]
        ):
            continue
        _, c, h, w = shape
        weight = numpy_helper.to_array(inits[users[0].input[3]])  # (C*H*W, K), NCHW order
        if weight.shape[0] != c * h * w:
            continue
        k = weight.shape[1]
        nhwc = weight.reshape(c, h, w, k).transpose(1, 2, 0, 3).reshape(c * h * w, k)
        inits[users[0].input[3]].CopyFrom(numpy_helper.from_array(nhwc, users[0].input[3]))
        transposed = conv.output[0] + "_nhwc"
        at = list(model.graph.node).index(reshape)
        model.graph.node.insert(
            at,
            onnx.helper.make_node(
                "Transpose", [conv.output[0]], [transposed], name=transposed, perm=[0, 2, 3, 1]
            ),
        )
        reshape.input[0] = transposed
        changed.append(users[0].name)
    return changed


def static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Each tensor's inferred shape, 0 for a dimension not known; {} when inference fails."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except shape_inference.InferenceError:
        return {}
    values = (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    return {
        v.name: [
            d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim
        ]
        for v in values
    }


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _producer(model: onnx.ModelProto, name: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if name in n.output), None)


def attribute(node: onnx.NodeProto, name: str, default=None):
    """A node's attribute (lists as lists), or `default` when the node does not set it."""
    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return list(value) if isinstance(value, list | tuple) else value
    return default


def drop_dead_nodes(model: onnx.ModelProto) -> None:
    """Remove nodes whose outputs feed nothing, then initializers nothing reads."""
    wanted = {o.name for o in model.graph.output}
    while True:
        used = wanted | {i for n in model.graph.node for i in n.input}
        dead = [n for n in model.graph.node if not set(n.output) & used]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    used = {i for n in model.graph.node for i in n.input}
    for init in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(init)
