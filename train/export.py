"""Export a Keras model to ONNX with tf2onnx, describe it in metadata, and prove parity."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import onnx
import tensorflow as tf
import tf2onnx

from runtime.contract import metadata_for
from runtime.errors import ModelError
from runtime.files import writable_target
from runtime.mnist import load_split
from runtime.parity import ParityReport
from runtime.preprocess import NHWC_SHAPE
from train.fit import versions
from train.gate import write_model
from train.models import load_keras
from train.parity import keras_vs_onnx
from train.simplify import simplify_dense_head

OPSET = 17  # pinned: every onnxruntime since 1.14 runs it, device builds included
INPUT_NAME = "image"  # float32 (N, 28, 28, 1), pixels / 255
OUTPUT_NAME = "probabilities"  # float32 (N, 10), softmax


@dataclass(frozen=True)
class ExportResult:
    path: str
    opset: int
    size_bytes: int
    parity: ParityReport
    metadata: dict[str, str]


def export_onnx(
    model: keras.Model,
    opset: int = OPSET,
    metadata: dict[str, str] | None = None,
    uint8_input: bool = False,
) -> onnx.ModelProto:
    """Convert `model` in memory; batch axis dynamic; checked by onnx.checker.

    By default the input is float32 (N, 28, 28, 1) in [0, 1], as in training. With
    `uint8_input` it is raw uint8 pixels (N, 28, 28): the 1/255 is folded into the first
    convolution's weights, so the device converts nothing and the graph adds only a Cast.
    """
    # tf2onnx.convert.from_keras fails on Keras 3 models; tracing a tf.function works.
    if uint8_input:
        folded = _fold_pixel_scale(model)
        spec = (tf.TensorSpec((None, *NHWC_SHAPE[:2]), tf.uint8, name=INPUT_NAME),)
        fn = tf.function(
            lambda image: folded(tf.reshape(tf.cast(image, tf.float32), (-1, *NHWC_SHAPE)))
        )
    else:
        spec = (tf.TensorSpec((None, *NHWC_SHAPE), tf.float32, name=INPUT_NAME),)
        fn = tf.function(lambda image: model(image, training=False))
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    _rename_output(proto, OUTPUT_NAME)
    simplify_dense_head(proto)
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"  # tf2onnx names it unk__NN
    proto.doc_string = f"mnist-edge {model.name}: MNIST digit classifier"
    onnx.helper.set_model_props(proto, metadata or {})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _fold_pixel_scale(model: keras.Model) -> keras.Model:
    """A copy of `model` for 0-255 inputs: conv(x, W / 255) + b == conv(x / 255, W) + b."""
    first = next(
        (layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)), None
    )
    if not isinstance(first, keras.layers.Conv2D):
        raise ModelError(
            f"{model.name}: uint8 input needs a Conv2D as the first layer, "
            f"found {type(first).__name__}"
        )
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    conv = copy.get_layer(first.name)
    conv.kernel.assign(conv.kernel / 255.0)
    return copy


UINT8_ARCHS = ("edge",)  # the models built for the device take raw pixels


def export_file(
    keras_path: Path,
    out: Path | None = None,
    opset: int = OPSET,
    data: Path | None = None,
    uint8_input: bool | None = None,
) -> ExportResult:
    """Export a saved .keras model to ONNX; the file appears only if parity passes.

    `uint8_input` None: uint8 for the archs in UINT8_ARCHS, float32 for the others.
    """
    model = load_keras(keras_path)
    out = Path(out) if out else Path(keras_path).with_suffix(".onnx")
    writable_target(out)  # before the work, not after it
    arch = model.name.removeprefix("mnist_")
    if uint8_input is None:
        uint8_input = arch in UINT8_ARCHS
    test = load_split("test", data)
    training = _training_facts(Path(keras_path))
    meta = metadata_for(
        layout="NHW" if uint8_input else "NHWC",
        pixel_scale=1.0 if uint8_input else 1 / 255,
        output="probabilities",
        arch=arch,
        opset=opset,
        source=Path(keras_path).name,
        training=json.dumps(training, sort_keys=True) if training else "",
        **{f"{k}_version": v for k, v in versions().items()},
        tf2onnx_version=tf2onnx.__version__,
        onnx_version=onnx.__version__,
    )
    proto = export_onnx(model, opset, meta, uint8_input)

    check = lambda tmp: keras_vs_onnx(model, tmp, test)  # noqa: E731
    report = write_model(out, proto, meta, check, against="keras")
    return ExportResult(str(out), opset, out.stat().st_size, report, meta)


def _training_facts(keras_path: Path) -> dict:
    metrics = keras_path.with_suffix(".metrics.json")
    if not metrics.is_file():
        return {}
    try:
        facts = json.loads(metrics.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{metrics}: expected the training metrics as JSON ({e})") from None
    keep = ("epochs", "seed", "train_images", "train_seconds", "recipe", "test_accuracy")
    return {k: facts[k] for k in keep if k in facts}


def _rename_output(proto: onnx.ModelProto, name: str) -> None:
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    proto.graph.output[0].name = name
