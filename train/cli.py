"""The workstation commands (train, export, parity), added to the device CLI's app.

This module is the `mnist-edge` entry point. TensorFlow loads inside these commands only, so
the device commands start fast and work where the train extra is not installed.
"""

from __future__ import annotations

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
    mlp = "mlp"


def _require_train_extra(command: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    try:
        import onnx  # noqa: F401
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(
            f"`mnist-edge {command}` needs the train extra ({e.name} is not installed): "
            "pip install 'mnist-edge[train]' (or pip install '.[train]' in a checkout)"
        ) from None


@app.command(rich_help_panel=WORKSTATION)
def train(
    arch: Annotated[
        Arch, typer.Option(help="cnn: a real CNN (default); mlp: the seed tutorial's model.")
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
    from train.export import OPSET, export_file, result_dict

    result = export_file(keras_model, out, opset or OPSET, data)
    if json_out:
        typer.echo(json.dumps(result_dict(result)))
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
    keras_model: Annotated[Path, typer.Argument(help="The .keras source model.")],
    onnx_model: Annotated[Path, typer.Argument(help="The exported .onnx model.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
):
    """Compare an ONNX model with its Keras source on the test set; exit 1 when out of tolerance."""
    _require_train_extra("parity")
    from runtime.mnist import load_split
    from train.export import load_keras
    from train.parity import keras_vs_onnx

    model = load_keras(keras_model)
    report = keras_vs_onnx(model, onnx_model, load_split("test", data))
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "agreement": report.agreement,
                    "max_abs_diff": report.max_abs_diff,
                    "keras_accuracy": report.reference_accuracy,
                    "onnx_accuracy": report.candidate_accuracy,
                    "count": report.count,
                    "agreement_min": report.agreement_min,
                    "max_abs_diff_allowed": report.max_abs_diff_allowed,
                    "passed": report.passed,
                }
            )
        )
    else:
        typer.echo(f"agreement     {report.agreement:.4%}  (min {report.agreement_min:.4%})")
        typer.echo(
            f"max |diff|    {report.max_abs_diff:.3g}  (max {report.max_abs_diff_allowed:g})"
        )
        typer.echo(
            f"accuracy      keras {report.reference_accuracy:.4%}, "
            f"onnx {report.candidate_accuracy:.4%} on {report.count} images"
        )
        typer.echo("PASS" if report.passed else "FAIL: " + "; ".join(report.failures()))
    if not report.passed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
