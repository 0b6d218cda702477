"""The workstation commands (train, export, parity), added to the device CLI's app.

This module is the `mnist-edge` entry point. TensorFlow loads inside these commands only, so
the device commands start fast and work where the train extra is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli import DataOpt, JsonOpt, app
from runtime.errors import MissingExtraError

WORKSTATION = "Workstation (needs the train extra)"


class Arch(str, Enum):
    cnn = "cnn"
    edge = "edge"
    mlp = "mlp"


def _require_train_extra(command: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    # Look the packages up without importing them: quantize and optimize never load TensorFlow.
    for name in ("onnx", "tensorflow", "tf2onnx"):
        if importlib.util.find_spec(name) is None:
            raise MissingExtraError(
                f"`mnist-edge {command}` needs the train extra ({name} is not installed): "
                "pip install 'mnist-edge[train]' (or pip install '.[train]' in a checkout)"
            )


@app.command(rich_help_panel=WORKSTATION)
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
    """Train a model on MNIST; saves mnist_<arch>.keras with its .history.json and .metrics.json."""
    _require_train_extra("train")
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
        typer.echo(json.dumps(asdict(result)))
        return
    typer.echo(f"saved {result.model_path}")
    typer.echo(
        f"test accuracy {result.test_accuracy:.4%} after {result.epochs} epochs on "
        f"{result.train_images} images in {result.train_seconds:.0f} s"
    )


@app.command(rich_help_panel=WORKSTATION)
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
    _require_train_extra("export")
    from train.export import OPSET, export_file

    result = export_file(keras_model, out, opset or OPSET, data)
    if json_out:
        typer.echo(json.dumps(_with_parity(result)))
        return
    p = result.parity
    typer.echo(f"wrote {result.path} ({result.size_bytes:,} bytes, opset {result.opset})")
    typer.echo(
        f"parity on {p.count} test images: agreement {p.agreement:.4%}, "
        f"max |diff| {p.max_abs_diff:.3g}; accuracy keras {p.reference_accuracy:.4%}, "
        f"onnx {p.candidate_accuracy:.4%}"
    )


@app.command(rich_help_panel=WORKSTATION)
def parity(
    reference: Annotated[
        Path, typer.Argument(help="The source: a .keras model, or an ONNX/ORT model.")
    ],
    candidate: Annotated[Path, typer.Argument(help="The exported or derived ONNX/ORT model.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
):
    """Compare a model with its source on the 10k test images; exit 1 when out of tolerance.

    Keras vs ONNX and fp32 vs optimised: every top-1 label equal, probabilities within 1e-5.
    Against an INT8 variant: agreement >= 99.8% and accuracy within 0.1 points.
    """
    from runtime.mnist import load_split

    test = load_split("test", data)
    if reference.suffix == ".keras":
        _require_train_extra("parity")
        from train.export import load_keras
        from train.parity import keras_vs_onnx

        report = keras_vs_onnx(load_keras(reference), candidate, test)
    else:
        report = _runtime_parity(reference, candidate, test)
    payload = {
        "agreement": report.agreement,
        "max_abs_diff": report.max_abs_diff,
        "reference_accuracy": report.reference_accuracy,
        "candidate_accuracy": report.candidate_accuracy,
        "count": report.count,
        "agreement_min": report.agreement_min,
        "max_abs_diff_allowed": report.max_abs_diff_allowed,
        "accuracy_drop_max": report.accuracy_drop_max,
        "passed": report.passed,
    }
    if reference.suffix == ".keras":
        payload.update(
            keras_accuracy=report.reference_accuracy, onnx_accuracy=report.candidate_accuracy
        )
    if json_out:
        typer.echo(json.dumps(payload))
    else:
        typer.echo(f"agreement     {report.agreement:.4%}  (min {report.agreement_min:.4%})")
        typer.echo(
            f"max |diff|    {report.max_abs_diff:.3g}  (max {report.max_abs_diff_allowed:g})"
        )
        typer.echo(
            f"accuracy      reference {report.reference_accuracy:.4%}, "
            f"candidate {report.candidate_accuracy:.4%} on {report.count} images"
        )
        typer.echo("PASS" if report.passed else "FAIL: " + "; ".join(report.failures()))
    if not report.passed:
        raise typer.Exit(1)


def _runtime_parity(reference: Path, candidate: Path, test):
    from runtime.parity import models_parity
    from runtime.session import Classifier

    return models_parity(Classifier(reference), Classifier(candidate), test.images, test.labels)


class QuantFormat(str, Enum):
    qoperator = "qoperator"
    qdq = "qdq"


class Method(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


@app.command(rich_help_panel=WORKSTATION)
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
    fp32_single_channel_convs: Annotated[
        bool,
        typer.Option(
            "--fp32-single-channel-convs/--int8-single-channel-convs",
            help="Keep convolutions over one input channel (the first layer) in fp32. Faster "
            "for the edge model here, slower for the cnn: measure with `mnist-edge bench`.",
        ),
    ] = False,
    json_out: JsonOpt = False,
):
    """Static INT8 quantization, calibrated on training images; written only if it holds."""
    _require_train_extra("quantize")
    from train.quantize import QuantizeConfig, quantize_file

    config = QuantizeConfig(
        method=method.value,
        calibration_size=calibration_size,
        per_channel=per_channel,
        quant_format=format_.value,
        fp32_single_channel_convs=fp32_single_channel_convs,
    )
    result = quantize_file(onnx_model, out, config, data)
    p = result.parity
    if json_out:
        typer.echo(json.dumps(_with_parity(result)))
        return
    typer.echo(
        f"wrote {result.path} ({result.size_bytes:,} bytes, "
        f"{result.size_bytes / result.source_size_bytes:.0%} of fp32)"
    )
    typer.echo(
        f"vs fp32 on {p.count} test images: agreement {p.agreement:.4%}, accuracy "
        f"{p.reference_accuracy:.4%} -> {p.candidate_accuracy:.4%}"
    )


class Format(str, Enum):
    onnx = "onnx"
    ort = "ort"


@app.command(rich_help_panel=WORKSTATION)
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
    _require_train_extra("optimize")
    from train.variants import optimize_file

    result = optimize_file(onnx_model, format_.value, out, data)
    if json_out:
        typer.echo(json.dumps(_with_parity(result)))
        return
    typer.echo(
        f"wrote {result.path} ({result.size_bytes:,} bytes); load "
        f"{result.load_ms_source:.1f} ms -> {result.load_ms_variant:.1f} ms; parity "
        f"agreement {result.parity.agreement:.2%}, max |diff| "
        f"{result.parity.max_abs_diff:.2g}"
    )


@app.command("serve-web", rich_help_panel="Workstation (from a checkout)")
def serve_web(
    port: Annotated[int, typer.Option(help="Port on localhost (0: any free port).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
):
    """Serve the draw-a-digit page (web/, onnxruntime-web) until Ctrl-C."""
    from train.webserver import make_server

    server = make_server(host, port)
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host}:{bound_port}/web/"
    typer.echo(f"serving the draw-a-digit page at {url} (Ctrl-C stops)")
    with server:
        server.serve_forever()


def _with_parity(result) -> dict:
    """A result dataclass with a `parity` report as JSON-ready dict, the verdict included."""
    return {**asdict(result), "parity": {**asdict(result.parity), "passed": result.parity.passed}}


def main() -> None:
    app()


if __name__ == "__main__":
    main()
