"""The device commands of `mnist-edge`: predict, evaluate, bench, info.

The workstation commands (train, export, parity) are added to this same app by `train.cli`,
which is the console entry point; nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from typer.core import TyperGroup

from runtime.errors import InputError, MnistEdgeError, OutputError


class OneLineErrors(TyperGroup):
    """Every user error, ours or a bad option, ends as one line on stderr and a non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
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


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    typer.echo(f"warning: {message}", err=True)


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
        help="ONNX model file, or a shipped model's name. Default: the shipped edge CNN, INT8 "
        "where the CPU runs 8-bit kernels exactly (x86 VNNI, ARM64), else fp32; "
        "$MNIST_EDGE_MODEL overrides.",
        dir_okay=False,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="onnxruntime intra-op threads. Default: all cores."),
]
SpinningOpt = Annotated[
    bool | None,
    typer.Option(
        "--spinning/--no-spinning",
        help="Busy-wait between ops: lower latency, more power. Default: on.",
        show_default=False,
    ),
]
ArenaOpt = Annotated[
    bool,
    typer.Option("--memory-arena/--no-memory-arena", help="Reuse buffers between calls."),
]
SplitOpt = Annotated[
    bool | None,
    typer.Option(
        "--split-batches/--no-split-batches",
        help="With several threads, split a large batch across single-thread sessions. "
        "Default: for INT8 models only (faster there; fp32 is as fast without).",
        show_default=False,
    ),
]
LowPowerOpt = Annotated[
    bool,
    typer.Option("--low-power", help="One thread, no spinning: for battery-powered boards."),
]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", min=1, help="Images per inference call (bounds memory).")
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


def session_settings(
    threads: int | None = None,
    spinning: bool | None = None,
    memory_arena: bool = True,
    low_power: bool = False,
    optimization: str = "all",
    split_batches: bool | None = None,
):
    """The session settings the options ask for; --low-power conflicts with more threads."""
    from runtime.session import SessionSettings

    if low_power:
        if threads not in (None, 1):
            raise InputError(f"--low-power: means --threads 1, found --threads {threads} too")
        if spinning:
            raise InputError("--low-power: turns spinning off, found --spinning too")
        threads, spinning = 1, False
    return SessionSettings(
        threads=threads,
        spinning=True if spinning is None else spinning,
        memory_arena=memory_arena,
        optimization=optimization,
        split_batches=split_batches,
    )


def _classifier(model: Path | None, settings=None, **kw):
    from runtime.errors import InputWarning
    from runtime.session import Classifier  # onnxruntime loads only for commands that need it

    clf = Classifier(model, settings=settings, **kw)
    if clf.contract.assumed:
        assumed = "; ".join(clf.contract.assumed)
        message = f"{clf.path}: no mnist-edge metadata, assumed {assumed}"
        warnings.warn(message, InputWarning, stacklevel=2)
    return clf


@app.command(rich_help_panel=DEVICE)
def predict(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Image files (PNG, JPEG, BMP, PGM...), .npy arrays or IDX image files.",
            metavar="INPUT...",
            show_default=False,
        ),
    ],
    model: ModelOpt = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=10, help="How many best labels to show.")
    ] = 1,
    threads: ThreadsOpt = None,
    spinning: SpinningOpt = None,
    memory_arena: ArenaOpt = True,
    split_batches: SplitOpt = None,
    low_power: LowPowerOpt = False,
    batch_size: BatchOpt = 256,
    json_out: JsonOpt = False,
):
    """Classify digits in image files, .npy arrays or IDX files (one line per image)."""
    from runtime.inputs import iter_inputs

    settings = session_settings(
        threads, spinning, memory_arena, low_power, split_batches=split_batches
    )
    clf = _classifier(model, settings, batch_size=batch_size)
    labels = clf.contract.labels
    for names, images in iter_inputs(inputs, batch_size):  # images: (n, 28, 28) in [0, 1]
        probs = clf.predict_proba(images)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        for name, p, best in zip(names, probs, order, strict=True):
            ranked = [(labels[i], float(p[i])) for i in best]
            typer.echo(_prediction_line(name, ranked, json_out))


def _prediction_line(name: str, ranked: list[tuple[str, float]], json_out: bool) -> str:
    (label, confidence), rest = ranked[0], ranked[1:]
    if not json_out:
        alternatives = "  ".join(f"{lab}:{q:.4f}" for lab, q in rest)
        return f"{name}\t{label}\t{confidence:.4f}\t{alternatives}".rstrip()
    row = {"input": name, "label": label, "confidence": round(confidence, 6)}
    if rest:
        row["top_k"] = [{"label": lab, "probability": round(q, 6)} for lab, q in ranked]
    return json.dumps(row)


@app.command(rich_help_panel=DEVICE)
def evaluate(
    model: ModelOpt = None,
    data: DataOpt = None,
    split: Annotated[str, typer.Option(help="Which MNIST split: test or train.")] = "test",
    threads: ThreadsOpt = None,
    spinning: SpinningOpt = None,
    memory_arena: ArenaOpt = True,
    split_batches: SplitOpt = None,
    low_power: LowPowerOpt = False,
    batch_size: BatchOpt = 256,
    json_out: JsonOpt = False,
):
    """Accuracy of a model on MNIST, with the runtime alone (no TensorFlow), streaming the data."""
    from runtime.evaluate import evaluate_batches
    from runtime.mnist import SPLITS, stream_split

    if split not in SPLITS:
        raise InputError(f"--split: expected one of {', '.join(SPLITS)}, found {split!r}")
    settings = session_settings(
        threads, spinning, memory_arena, low_power, split_batches=split_batches
    )
    clf = _classifier(model, settings, batch_size=batch_size)
    source, count, batches = stream_split(split, data, batch_size)
    result = evaluate_batches(clf, batches)
    if json_out:
        payload = {"model": str(clf.path), "data": str(source), "split": split}
        typer.echo(json.dumps({**asdict(result), **payload}))
        return
    typer.echo(f"model     {clf.path}")
    typer.echo(f"data      {source} ({split}, {count} images)")
    typer.echo(f"accuracy  {result.accuracy:.4%}  ({result.correct}/{result.count})")
    per_class = "  ".join(f"{d}:{a:.3f}" for d, a in enumerate(result.per_class_accuracy))
    typer.echo(f"per digit {per_class}")


@app.command(rich_help_panel=DEVICE)
def bench(
    model: ModelOpt = None,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")
    ] = "1,32,256",
    threads: Annotated[
        str | None,
        typer.Option(help="Thread count, or a comma-separated sweep like 1,2. Default: all cores."),
    ] = None,
    duration: Annotated[
        float, typer.Option(min=0.01, help="Seconds of timed calls per case.")
    ] = 2.0,
    runs: Annotated[
        int | None, typer.Option(min=1, help="Exactly this many timed calls per case instead.")
    ] = None,
    warmup: Annotated[
        float, typer.Option(min=0.0, help="Seconds of untimed calls before each case.")
    ] = 0.2,
    spinning: SpinningOpt = None,
    memory_arena: ArenaOpt = True,
    split_batches: SplitOpt = None,
    low_power: LowPowerOpt = False,
    optimization: Annotated[
        str, typer.Option(help="Graph optimisation: disable, basic, extended or all.")
    ] = "all",
    output: Annotated[
        Path | None, typer.Option("--output", help="Also save the JSON report to this file.")
    ] = None,
    json_out: JsonOpt = False,
):
    """Cold start, then latency percentiles and throughput per thread count and batch size."""
    from runtime.bench import BenchConfig
    from runtime.bench import bench as run_bench
    from runtime.files import write_json
    from runtime.session import OPTIMIZATION_LEVELS

    if optimization not in OPTIMIZATION_LEVELS:
        choices = ", ".join(OPTIMIZATION_LEVELS)
        raise InputError(f"--optimization: expected one of {choices}, found {optimization!r}")
    sizes = parse_counts(batch_sizes, "--batch-sizes")
    sweep = parse_counts(threads, "--threads") if threads else (None,)
    if low_power and sweep not in ((None,), (1,)):
        raise InputError(f"--low-power: means --threads 1, found --threads {threads} too")
    session = session_settings(None, spinning, memory_arena, low_power, optimization, split_batches)
    config = BenchConfig(
        sizes, (1,) if low_power else sweep, duration, runs, warmup, session=session
    )
    cases = len(sizes) * len(config.threads)
    if output and not output.parent.is_dir():
        raise OutputError(f"--output {output}: expected an existing folder {output.parent}")
    progress = typer.progressbar(
        length=cases, label="measuring", file=sys.stderr, hidden=not sys.stderr.isatty()
    )
    with progress as bar:
        report = run_bench(model, config, on_case=lambda: bar.update(1))
    if output:
        write_json(output, report.to_dict())
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
        return
    for line in _bench_table(report):
        typer.echo(line)


def _bench_table(report) -> list[str]:
    s = report.settings
    lines = [
        f"model {s['model']}",
        f"onnxruntime {s['onnxruntime']} on {s['processor']} ({s['cpu_count']} cores); "
        f"spinning {'on' if s['spinning'] else 'off'}, memory arena "
        f"{'on' if s['memory_arena'] else 'off'}, optimisation {s['optimization']}, "
        f"split batches {s['split_batches']}",
    ]
    for c in report.cold_start:
        lines.append(
            f"cold start, threads {c.threads or 'default'}: load {c.load_ms:.1f} ms, "
            f"first inference {c.first_inference_us:.0f} us"
        )
    lines.append(
        f"{'threads':>7} {'batch':>6} {'runs':>7} {'p50 us':>10} {'p90 us':>10} "
        f"{'p99 us':>10} {'p99.9 us':>10} {'mean us':>10} {'std us':>9} {'images/s':>12}"
    )
    for r in report.results:
        lines.append(
            f"{r.threads or 'default':>7} {r.batch_size:>6} {r.runs:>7} {r.p50_us:>10.1f} "
            f"{r.p90_us:>10.1f} {r.p99_us:>10.1f} {r.p999_us:>10.1f} {r.mean_us:>10.1f} "
            f"{r.std_us:>9.1f} {r.images_per_s:>12,.0f}"
        )
    return lines


@app.command(rich_help_panel=DEVICE)
def info(model: ModelOpt = None, json_out: JsonOpt = False):
    """A model's metadata, inputs, outputs and size."""
    from runtime.info import describe

    described = describe(_classifier(model))
    if json_out:
        typer.echo(json.dumps(described.to_dict()))
        return
    typer.echo(f"path      {described.path}")
    typer.echo(f"variant   {described.variant} ({described.format} format)")
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


def parse_counts(text: str, option: str) -> tuple[int, ...]:
    """'1,32,256' -> (1, 32, 256); each a positive integer."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(
            f"{option}: expected comma-separated integers like 1,32,256, found {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise InputError(f"{option}: expected positive integers, found {text!r}")
    return counts
