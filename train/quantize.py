"""Static INT8 post-training quantization with onnxruntime's tools, checked against fp32.

Calibrated on training images (never the test set), after onnxruntime's pre-processing step
(symbolic shape inference and graph optimisation).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from runtime.errors import InputError
from runtime.files import writable_target
from runtime.mnist import load_split
from runtime.parity import ParityReport, models_parity
from runtime.preprocess import as_batch
from runtime.session import Classifier
from train.gate import write_model
from train.simplify import flatten_in_nhwc_order
from train.stem import (
    feed_pixels_directly,
    limit_pixel_weights,
    pixel_ranges,
    space_to_depth_stems,
)

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}

FORMATS = {"qoperator": QuantFormat.QOperator, "qdq": QuantFormat.QDQ}


@dataclass(frozen=True)
class QuantizeConfig:
    method: str = "minmax"
    calibration_size: int = 1000  # training images fed through the model to fix the ranges
    per_channel: bool = True  # one scale per output channel of each weight
    # QOperator fuses ops into QLinearConv/QLinearMatMul; QDQ leaves Q/DQ pairs for the
    # optimizer to fuse. Chosen by measuring on this CPU (see the model card).
    quant_format: str = "qoperator"
    activations: str = "uint8"  # uint8 activations x int8 weights: the fast x86 kernel path
    # Rewrite a stride-2 conv over one input channel (the edge model's first layer) as
    # SpaceToDepth and a stride-1 conv over four channels, the same function (train/stem.py):
    # onnxruntime's QLinearConv over one channel ran 10x below the layers after it.
    space_to_depth: bool = True
    # Keep convs over a one-channel input that are left (the cnn's stride-1 first layer) in
    # fp32. For the cnn's 3x3 conv, keeping it fp32 halved throughput. Measure per model.
    fp32_single_channel_convs: bool = False
    # Keep the Softmax in fp32: a quantized softmax puts probabilities on a 1/256 grid (top
    # confidence at most 0.9961, runners-up 0) with rows summing to 0.992..1.004.
    fp32_softmax: bool = False
    # Named nodes (as after onnxruntime's pre-processing) kept in fp32: mixed precision, for a
    # layer whose quantization costs more accuracy than its speed is worth.
    fp32_nodes: tuple[str, ...] = ()
    reduce_range: bool = False  # 7-bit weights, only for CPUs without VNNI


@dataclass(frozen=True)
class QuantizeResult:
    path: str
    size_bytes: int
    source_size_bytes: int
    parity: ParityReport
    metadata: dict[str, str]


class _Images(CalibrationDataReader):
    def __init__(self, name: str, batches: list[np.ndarray]):
        self.items = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.items, None)


def quantize_file(
    source: Path, out: Path | None, config: QuantizeConfig, data: Path | None = None
) -> QuantizeResult:
    """Quantize `source` to INT8, check it on the 10k test images, write it only if it holds."""
    if config.method not in METHODS:
        raise InputError(f"--method: expected one of {', '.join(METHODS)}, found {config.method!r}")
    if config.quant_format not in FORMATS:
        raise InputError(
            f"--format: expected one of {', '.join(FORMATS)}, found {config.quant_format!r}"
        )
    if config.calibration_size < 1:
        raise InputError(
            f"--calibration-size: expected a positive count, found {config.calibration_size}"
        )
    source = Path(source)
    out = Path(out) if out else source.with_name(source.stem + ".int8.onnx")
    fp32 = Classifier(source)
    writable_target(out)  # before the work, not after it
    train = load_split("train", data)
    n = min(config.calibration_size, len(train))
    calibration = fp32.contract.feed(as_batch(train.images[:n]))  # model's own input layout
    # Equal batches: the entropy and percentile calibrators stack them, and a short last
    # batch made them fail.
    batches = [calibration[i : i + _CALIBRATION_BATCH] for i in range(0, n, _CALIBRATION_BATCH)]
    if len(batches) > 1 and len(batches[-1]) < _CALIBRATION_BATCH:
        batches.pop()

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        graph, blocked = prepare(source, prepared, config)
        kept = single_channel_convs(graph) if config.fp32_single_channel_convs else []
        softmax = [n.name for n in graph.graph.node if n.op_type == "Softmax"]
        softmax = softmax if config.fp32_softmax else []
        named = _named_nodes(graph, config.fp32_nodes, source)
        quantized = Path(tmp) / "int8.onnx"
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
            _quantize_static(
                prepared,
                quantized,
                _Images(fp32.contract.input_name, batches),
                config,
                kept + softmax + named,
                pixel_ranges(graph),
            )
        model = onnx.load(quantized)
    direct = feed_pixels_directly(model)
    seven_bit = limit_pixel_weights(model) if direct else None
    flatten_in_nhwc_order(model)
    fp32_nodes = list(dict.fromkeys(kept + named))
    meta = {**fp32.metadata, **_quant_metadata(config, n, blocked, fp32_nodes, softmax, seven_bit)}

    check = lambda tmp_out: fp32_parity(fp32, tmp_out, data)  # noqa: E731
    report = write_model(out, model, meta, check, against="fp32", advice=INT8_ADVICE)
    return QuantizeResult(str(out), out.stat().st_size, source.stat().st_size, report, meta)


_CALIBRATION_BATCH = 64
INT8_ADVICE = (
    " (the INT8 gate: top-1 agreement >= 99.8% with the fp32 model and accuracy within 0.1 "
    "points; a small dense model such as the mlp misses it with every calibration method: "
    "ship its fp32 file, which is already fast, or quantize a convolutional model)"
)


def prepare(source: Path, dest: Path, config: QuantizeConfig) -> tuple[onnx.ModelProto, list]:
    """onnxruntime's pre-processing, then the stride-2 stems over blocks: (graph, blocked)."""
    quant_pre_process(str(source), str(dest))
    graph = onnx.load(dest)
    blocked = space_to_depth_stems(graph) if config.space_to_depth else []
    if blocked:
        onnx.save(graph, dest)
    return graph, blocked


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes `fp32_nodes` may name: the layers with weights."""
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]


def _quantize_static(
    source: Path,
    dest: Path,
    images: CalibrationDataReader,
    config: QuantizeConfig,
    kept: list,
    overrides: dict,
) -> None:
    quantize_static(
        str(source),
        str(dest),
        images,
        quant_format=FORMATS[config.quant_format],
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=QuantType.QUInt8 if config.activations == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=METHODS[config.method],
        nodes_to_exclude=kept,
        extra_options={"TensorQuantOverrides": overrides},
    )


def fp32_parity(fp32: Classifier, candidate: Path, data: Path | None) -> ParityReport:
    test = load_split("test", data)
    with Classifier(candidate) as int8:
        return models_parity(fp32, int8, test.images, test.labels, int8=True)


def single_channel_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes whose weights see one input channel (per group)."""
    weights = {t.name: t.dims for t in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv"
        and len(weights.get(node.input[1], ())) == 4
        and weights[node.input[1]][1] == 1
    ]


def _named_nodes(model: onnx.ModelProto, names: tuple[str, ...], source: Path) -> list[str]:
    """`names`, each checked to be a quantizable node of the prepared graph."""
    quantizable = quantizable_nodes(model)
    for name in names:
        if name not in quantizable:
            raise InputError(
                f"--keep-fp32: expected a Conv, Gemm or MatMul node of {source} (as named after "
                f"pre-processing: {', '.join(quantizable)}), found {name!r}"
            )
    return list(dict.fromkeys(names))


def _quant_metadata(
    config: QuantizeConfig,
    calibration_images: int,
    blocked: list[str],
    fp32_nodes: list[str],
    softmax: list[str],
    seven_bit: str | None,
) -> dict[str, str]:
    kept = f"; kept in fp32: {', '.join(fp32_nodes)}" if fp32_nodes else ""
    if blocked:
        kept += f"; {', '.join(blocked)} over 2x2 blocks (SpaceToDepth, stride 1, four channels)"
    if softmax:
        kept += f"; softmax in fp32 ({', '.join(softmax)}): full-resolution probabilities"
    if seven_bit:
        kept += (
            f"; uint8 pixels feed {seven_bit} directly, its weights in 7 bits (no 16-bit "
            "saturation on x86 without VNNI)"
        )
    return {
        "variant": "int8",
        "quantization": (
            f"static INT8, {config.quant_format}, activations {config.activations}, weights int8 "
            f"{'per-channel' if config.per_channel else 'per-tensor'}, "
            f"{config.method} calibration on {calibration_images} training images{kept}"
        ),
        "quantization_reason": QUANTIZATION_REASON,
    }


QUANTIZATION_REASON = "see exported/README.md, INT8: the fastest measured format on x86 CPUs"
