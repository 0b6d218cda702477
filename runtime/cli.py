"""The device commands of `mnist-edge`: predict, evaluate, bench, info.

The workstation commands (train, export, parity) are added to this same app by `train.cli`,
which is the console entry point; nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from typer.core import TyperGroup

from runtime.errors import InputError, MnistEdgeError


class OneLineErrors(TyperGroup):
    """Every user error, ours or a bad option, ends as one line on stderr and a non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # usage errors: bad option values, missing arguments
            ctx = getattr(e, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx else ""
            typer.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(130)
        except MnistEdgeError as e:
            typer.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    help="Train an MNIST digit model, export it to ONNX, and run and benchmark it on a device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DEVICE = "Device (runtime only)"
ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="ONNX model file. Default: the shipped CNN ($MNIST_EDGE_MODEL overrides).",
        dir_okay=False,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="onnxruntime intra-op threads. Default: all cores."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="MNIST folder (four IDX files, .gz or raw) or mnist.npz. Default: $MNIST_DIR, "
        "Keras' cache, then a verified download.",
    ),
]


def _classifier(model: Path | None, threads: int | None = None, **kw):
    from runtime.session import Classifier  # onnxruntime loads only for commands that need it

    return Classifier(model, threads=threads, **kw)


@app.command(rich_help_panel=DEVICE)
def predict(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Image files (PNG, JPEG, BMP, PGM...), .npy arrays or IDX image files.",
            show_default=False,
        ),
    ],
    model: ModelOpt = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=10, help="How many best labels to show.")
    ] = 1,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
):
    """Classify digits in image files, .npy arrays or IDX files."""
    from runtime.inputs import read_inputs

    clf = _classifier(model, threads)
    names, images = read_inputs(inputs)  # images: uint8 (N, 28, 28)
    probs = clf.predict_proba(images)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    labels = clf.contract.labels
    for name, p, best in zip(names, probs, order, strict=True):
        ranked = [(labels[i], float(p[i])) for i in best]
        if json_out:
            row = {"input": name, "label": ranked[0][0], "confidence": round(ranked[0][1], 6)}
            if top_k > 1:
                row["top_k"] = [{"label": lab, "probability": round(q, 6)} for lab, q in ranked]
            typer.echo(json.dumps(row))
        else:
            alternatives = "  ".join(f"{lab}:{q:.4f}" for lab, q in ranked[1:])
            typer.echo(f"{name}\t{ranked[0][0]}\t{ranked[0][1]:.4f}\t{alternatives}".rstrip())


@app.command(rich_help_panel=DEVICE)
def evaluate(
    model: ModelOpt = None,
    data: DataOpt = None,
    split: Annotated[str, typer.Option(help="Which MNIST split: test or train.")] = "test",
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
):
    """Accuracy of a model on MNIST, with the runtime alone (no TensorFlow)."""
    from runtime.evaluate import evaluate as run_evaluate
    from runtime.mnist import SPLITS, load_split

    if split not in SPLITS:
        raise InputError(f"--split: expected one of {', '.join(SPLITS)}, found {split!r}")
    clf = _classifier(model, threads)
    data_split = load_split(split, data)
    result = run_evaluate(clf, data_split.images, data_split.labels)
    if json_out:
        payload = {"model": str(clf.path), "data": str(data_split.source), "split": split}
        typer.echo(json.dumps({**asdict(result), **payload}))
        return
    typer.echo(f"model     {clf.path}")
    typer.echo(f"data      {data_split.source} ({split})")
    typer.echo(f"accuracy  {result.accuracy:.4%}  ({result.correct}/{result.count})")
    per_class = "  ".join(f"{d}:{a:.3f}" for d, a in enumerate(result.per_class_accuracy))
    typer.echo(f"per digit {per_class}")


@app.command(rich_help_panel=DEVICE)
def bench(
    model: ModelOpt = None,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")
    ] = "1,32,256",
    threads: ThreadsOpt = None,
    duration: Annotated[
        float, typer.Option(min=0.01, help="Seconds of timed calls per batch size.")
    ] = 2.0,
    warmup: Annotated[
        float, typer.Option(min=0.0, help="Seconds of untimed calls before each batch size.")
    ] = 0.2,
    json_out: JsonOpt = False,
):
    """Latency percentiles and throughput of the runtime, per batch size."""
    import onnxruntime

    from runtime.bench import BenchConfig
    from runtime.bench import bench as run_bench

    sizes = parse_batch_sizes(batch_sizes)
    config = BenchConfig(batch_sizes=sizes, duration=duration, warmup=warmup)
    clf = _classifier(model, threads, batch_size=max(sizes))  # one call = one session run
    with typer.progressbar(length=len(sizes), label="measuring", file=sys.stderr) as bar:
        results = run_bench(clf, config, on_batch=lambda _: bar.update(1))
    settings = {
        "model": str(clf.path),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "duration_s": duration,
        "warmup_s": warmup,
        "batch_sizes": list(sizes),
        "input": "random uint8 images through Classifier.predict_proba",
        "onnxruntime": onnxruntime.__version__,
    }
    if json_out:
        typer.echo(json.dumps({"settings": settings, "results": [asdict(r) for r in results]}))
        return
    typer.echo(
        f"model {clf.path}  threads {threads or 'default'}  onnxruntime {settings['onnxruntime']}"
    )
    typer.echo(
        f"{'batch':>6} {'runs':>7} {'p50 us':>10} {'p90 us':>10} {'p99 us':>10} "
        f"{'mean us':>10} {'images/s':>12}"
    )
    for r in results:
        typer.echo(
            f"{r.batch_size:>6} {r.runs:>7} {r.p50_us:>10.1f} {r.p90_us:>10.1f} "
            f"{r.p99_us:>10.1f} {r.mean_us:>10.1f} {r.images_per_s:>12,.0f}"
        )


@app.command(rich_help_panel=DEVICE)
def info(model: ModelOpt = None, json_out: JsonOpt = False):
    """A model's metadata, inputs, outputs and size."""
    from runtime.info import describe

    described = describe(_classifier(model))
    if json_out:
        typer.echo(json.dumps(described.to_dict()))
        return
    typer.echo(f"path      {described.path}")
    typer.echo(f"size      {described.size_bytes:,} bytes  sha256 {described.sha256[:16]}...")
    for kind, tensors in (("input", described.inputs), ("output", described.outputs)):
        for t in tensors:
            typer.echo(f"{kind:<9} {t.name} {t.shape} {t.type}")
    typer.echo(
        f"contract  layout {described.layout}, pixel scale {described.pixel_scale:.6g}, "
        f"output {described.output}"
    )
    if described.assumed:
        typer.echo(
            f"assumed   {'; '.join(described.assumed)} (the model has no mnist-edge metadata)"
        )
    for key, value in described.metadata.items():
        typer.echo(f"  {key:<22} {value}")


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """'1,32,256' -> (1, 32, 256); each a positive integer."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(
            f"--batch-sizes: expected comma-separated integers like 1,32,256, found {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"--batch-sizes: expected positive integers, found {text!r}")
    return sizes
