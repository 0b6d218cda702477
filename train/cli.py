"""The workstation commands (train, export, parity, quantize, optimize).

`register(app)` adds them to the device CLI's app (runtime.cli.main calls it). TensorFlow loads
inside these commands only, so the device commands start fast and work where the train extra is
not installed; there, each of these says in one line what to install.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from runtime.errors import InputError, MissingExtraError
from runtime.options import DataOpt, JsonOpt, contract_options
from runtime.render import parity_lines, say, with_parity

WORKSTATION = "Workstation (needs the train or onnx extra)"


class Arch(str, Enum):
    cnn = "cnn"
    edge = "edge"
    mlp = "mlp"


def register(app: typer.Typer) -> None:
    """Add the workstation commands to `app` (once)."""
    if any(c.name == "train" for c in app.registered_commands):
        return
    for command in (train, export, parity, quantize, optimize, adopt):
        name = command.__name__
        app.command(name, rich_help_panel=WORKSTATION)(command)


# What each command needs beyond the runtime, and the extra that brings it.
NEEDS = {
    "train": ("train", ("tensorflow", "tf2onnx", "onnx")),
    "export": ("train", ("tensorflow", "tf2onnx", "onnx")),
    "parity": ("train", ("tensorflow",)),  # only with a .keras reference
    "quantize": ("onnx", ("onnx", "sympy")),
    "optimize": ("onnx", ("onnx",)),
    "adopt": ("onnx", ("onnx",)),
}


@contextlib.contextmanager
def tensorflow_loading():
    """TensorFlow 2.19+ writes absl log lines to file descriptor 2 while it loads, whatever
    TF_CPP_MIN_LOG_LEVEL says (tensorflow#100442): point fd 2 at /dev/null for the imports."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def require_extra(command: str) -> None:
    """One line naming the extra to install, where `command` lacks a package it needs."""
    # TensorFlow's start-up chatter, tf.data's "use_unbounded_threadpool" E-lines included
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    extra, modules = NEEDS[command]
    for name in modules:  # looked up, not imported: quantize and optimize never load TensorFlow
        if importlib.util.find_spec(name) is None:
            raise MissingExtraError(
                f"`mnist-edge {command}` needs the {extra} extra ({name} is not installed): "
                f"pip install 'mnist-edge[{extra}]' (or pip install '.[{extra}]' in a checkout)"
            )


def train(
    arch: Annotated[
        Arch,
        typer.Option(
            help="cnn: a real CNN, 5 minutes (default); edge: the small fast CNN the runtime "
            "ships, distilled from a cnn; mlp: the seed tutorial's model."
        ),
    ] = Arch.cnn,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Training epochs. Default: the arch's recipe.")
    ] = None,
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for the model, history and metrics.")] = Path(
        "runs"
    ),
    seed: Annotated[int, typer.Option(help="Seed for weights, shuffling and augmentation.")] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Train on the first N images only (quick tries).")
    ] = None,
    teacher: Annotated[
        Path, typer.Option(help="For --arch edge: the trained cnn it learns from.")
    ] = Path("exported/mnist_cnn.keras"),
    resume: Annotated[
        bool,
        typer.Option(help="Continue an interrupted run (same options) from its last epoch."),
    ] = False,
    json_out: JsonOpt = False,
):
    """Train a model on MNIST; saves mnist_<arch>.keras with its .history.json (and the same
    as learning curves, .history.png) and .metrics.json."""
    require_extra("train")
    with tensorflow_loading():
        from train.fit import TrainConfig
        from train.fit import train as run_train

    config = TrainConfig(
        arch=arch.value,
        epochs=epochs,
        seed=seed,
        limit=limit,
        data=data,
        out=out,
        resume=resume,
        teacher=teacher,
        verbose=0 if json_out else None,  # --json: stdout carries the JSON alone
    )
    try:
        result = run_train(config)
    except KeyboardInterrupt:
        again = f"mnist-edge train --arch {arch.value} --out {out} --resume"
        typer.echo(
            f"interrupted: the last completed epoch is kept; continue with: {again}", err=True
        )
        raise typer.Exit(130) from None
    if json_out:
        say(json.dumps(asdict(result)))
        return
    say(f"saved {result.model_path}")
    epochs = f"{result.epochs} epoch{'s' if result.epochs != 1 else ''}"
    say(
        f"test accuracy {result.test_accuracy:.4%} after {epochs} on "
        f"{result.train_images} images in {result.train_seconds:.0f} s"
    )


def export(
    keras_model: Annotated[Path, typer.Argument(help="A .keras model saved by `train`.")],
    out: Annotated[
        Path | None, typer.Option(help="ONNX file to write. Default: beside the model, .onnx.")
    ] = None,
    opset: Annotated[int | None, typer.Option(min=13, help="ONNX opset. Default: 17.")] = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
):
    """Export to ONNX; written only if it matches Keras on the 10k test images."""
    require_extra("export")
    with tensorflow_loading():
        from train.export import OPSET, export_file

    result = export_file(keras_model, out, opset or OPSET, data)
    if json_out:
        say(json.dumps(with_parity(result)))
        return
    p = result.parity
    say(f"wrote {result.path} ({result.size_bytes:,} bytes, opset {result.opset})")
    say(
        f"parity on {p.count} test images: agreement {p.agreement:.4%}, "
        f"max |diff| {p.max_abs_diff:.3g}; accuracy keras {p.reference_accuracy:.4%}, "
        f"onnx {p.candidate_accuracy:.4%}"
    )


@contract_options
def parity(
    reference: Annotated[
        Path, typer.Argument(help="The source: a .keras model, or an ONNX/ORT model.")
    ],
    candidate: Annotated[Path, typer.Argument(help="The exported or derived ONNX/ORT model.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    overrides=None,
):
    """Compare a model with its source on the 10k test images; exit 1 when out of tolerance.

    Keras vs ONNX and fp32 vs optimised: every top-1 label equal, probabilities within 1e-5.
    Against an INT8 variant: agreement >= 99.8% and accuracy within 0.1 points. The model
    contract options describe the ONNX reference (a model made elsewhere, against its adopted
    copy), or the candidate when the reference is a .keras model.
    """
    from runtime.mnist import load_split

    keras_reference = reference.suffix == ".keras"
    if keras_reference:
        require_extra("parity")  # before the data: the extra is the first thing missing
    test = load_split("test", data)
    if keras_reference:
        with tensorflow_loading():
            from train.models import load_keras
            from train.parity import keras_vs_onnx

        report = keras_vs_onnx(load_keras(reference), candidate, test, overrides)
    else:
        report = _runtime_parity(reference, candidate, test, overrides)
    if json_out:
        say(json.dumps(report.to_dict()))
    else:
        for line in parity_lines(report):
            say(line)
    if not report.passed:
        raise typer.Exit(1)


def _runtime_parity(reference: Path, candidate: Path, test, overrides):
    from runtime.parity import models_parity
    from runtime.session import Classifier

    with Classifier(reference, overrides=overrides) as ref, Classifier(candidate) as cand:
        return models_parity(ref, cand, test.images, test.labels)


class QuantFormat(str, Enum):
    qoperator = "qoperator"
    qdq = "qdq"


class Method(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


def quantize(
    onnx_model: Annotated[Path, typer.Argument(help="The fp32 ONNX model to quantize.")],
    out: Annotated[
        Path | None, typer.Option(help="Output file. Default: <model>.int8.onnx beside it.")
    ] = None,
    data: DataOpt = None,
    calibration_size: Annotated[
        int, typer.Option(min=1, help="Training images used to calibrate the ranges.")
    ] = 1000,
    method: Annotated[Method, typer.Option(help="Calibration method.")] = Method.minmax,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--no-per-channel", help="One weight scale per channel.")
    ] = True,
    format_: Annotated[
        QuantFormat,
        typer.Option(
            "--format",
            help="qoperator: QLinearConv/QLinearMatMul ops; qdq: QuantizeLinear/DequantizeLinear "
            "pairs that onnxruntime fuses at load. Which is faster depends on the model and the "
            "thread count: measure with `mnist-edge bench` (the model card has the figures).",
        ),
    ] = QuantFormat.qoperator,
    space_to_depth: Annotated[
        bool,
        typer.Option(
            "--space-to-depth/--no-space-to-depth",
            help="Rewrite a stride-2 convolution over one input channel (the edge model's first "
            "layer) as SpaceToDepth and a stride-1 convolution over four channels: the same "
            "function, which onnxruntime quantizes well.",
        ),
    ] = True,
    fp32_single_channel_convs: Annotated[
        bool,
        typer.Option(
            "--fp32-single-channel-convs/--int8-single-channel-convs",
            help="Keep convolutions over one input channel left after --space-to-depth (the "
            "cnn's first layer) in fp32: slower for the cnn here; measure with `mnist-edge bench`.",
        ),
    ] = False,
    fp32_softmax: Annotated[
        bool,
        typer.Option(
            "--fp32-softmax/--int8-softmax",
            help="Keep the Softmax in fp32: probabilities at full resolution instead of on a "
            "1/256 grid, rows summing to 1.",
        ),
    ] = False,
    keep_fp32: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NODE",
            help="Keep this Conv, Gemm or MatMul node in fp32 (repeatable; a wrong name lists "
            "the names). Each layer's cost in accuracy and speed: benchmarks/int8_layers.py.",
        ),
    ] = None,
    json_out: JsonOpt = False,
):
    """Static INT8 quantization, calibrated on training images; written only if it holds."""
    require_extra("quantize")
    from train.quantize import QuantizeConfig, quantize_file

    config = QuantizeConfig(
        method=method.value,
        calibration_size=calibration_size,
        per_channel=per_channel,
        quant_format=format_.value,
        space_to_depth=space_to_depth,
        fp32_single_channel_convs=fp32_single_channel_convs,
        fp32_softmax=fp32_softmax,
        fp32_nodes=tuple(keep_fp32 or ()),
    )
    result = quantize_file(onnx_model, out, config, data)
    p = result.parity
    if json_out:
        say(json.dumps(with_parity(result)))
        return
    say(
        f"wrote {result.path} ({result.size_bytes:,} bytes, "
        f"{result.size_bytes / result.source_size_bytes:.0%} of fp32)"
    )
    say(
        f"vs fp32 on {p.count} test images: agreement {p.agreement:.4%}, accuracy "
        f"{p.reference_accuracy:.4%} -> {p.candidate_accuracy:.4%}, rows within 0.01 "
        f"{p.rows_within:.2%}"
    )


class Format(str, Enum):
    onnx = "onnx"
    ort = "ort"


def optimize(
    onnx_model: Annotated[Path, typer.Argument(help="The ONNX model to optimise.")],
    format_: Annotated[
        Format, typer.Option("--format", help="onnx (<model>.opt.onnx) or ort (<model>.ort).")
    ] = Format.onnx,
    out: Annotated[Path | None, typer.Option(help="Output file.")] = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
):
    """Save onnxruntime's offline-optimised graph, as ONNX or as ORT format for minimal builds."""
    require_extra("optimize")
    from train.variants import optimize_file

    result = optimize_file(onnx_model, format_.value, out, data)
    if json_out:
        say(json.dumps(with_parity(result)))
        return
    say(
        f"wrote {result.path} ({result.size_bytes:,} bytes); load "
        f"{result.load_ms_source:.1f} ms -> {result.load_ms_variant:.1f} ms; parity "
        f"agreement {result.parity.agreement:.2%}, max |diff| "
        f"{result.parity.max_abs_diff:.2g}"
    )


@contract_options
def adopt(
    model: Annotated[Path, typer.Argument(help="An ONNX model made elsewhere.", dir_okay=False)],
    out: Annotated[
        Path | None, typer.Option(help="The copy to write (required unless --probe).")
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Accuracy on 1,000 test images under the usual pixel conventions, best first; "
            "writes nothing.",
        ),
    ] = False,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    overrides=None,
):
    """Write a copy of a model made elsewhere that needs no contract options: its contract in
    its metadata, its batch made dynamic where the graph allows. Checked against the original
    on the 10k test images (every top-1 label equal, probabilities within 1e-5) first."""
    require_extra("adopt")
    from train import adopt as adopting

    if probe:
        if out is not None:
            raise InputError("--out: --probe writes nothing; give one or the other")
        results = adopting.probe(model, overrides, data)
        if json_out:
            say(json.dumps([asdict(r) for r in results]))
            return
        say(f"{'accuracy':>9}  {'convention':<44} options")
        for r in results:
            mark = "  (the model's metadata says so)" if r.declared else ""
            say(f"{r.accuracy:>9.2%}  {r.convention:<44} {r.options}{mark}")
        for line in adopting.probe_verdict(results):
            say(line)
        return
    if out is None:
        raise InputError("--out: expected the file to write the copy to, found none")
    if out.exists() and out.resolve() == model.resolve():
        raise InputError(f"--out {out}: expected a new file, found the model itself")
    result = adopting.adopt_file(model, out, overrides, data)
    if json_out:
        say(json.dumps(adopting.to_dict(result)))
        return
    m, p = result.metadata, result.parity
    say(f"wrote {result.path}")
    say(
        f"contract  layout {m['input_layout']}, input = pixel * {float(m['pixel_scale']):.6g} "
        f"{float(m['pixel_offset']):+.6g}, output {m['output_name']!r} ({m['output']})"
    )
    say(f"batch     {result.batch_note}")
    if result.opset_note:
        say(f"opset     {result.opset_note}")
    say(
        f"checked   on {p.count} test images against the original: agreement "
        f"{p.agreement:.4%}, max |diff| {p.max_abs_diff:.3g}; accuracy {p.candidate_accuracy:.4%}"
    )
