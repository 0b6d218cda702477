"""`mnist-edge`: the device commands (predict, evaluate, bench, info, adopt, serve-web).

This module owns the app and the console entry point, `main`. The workstation commands (train,
export, parity, quantize, optimize) join it in `main` from `train.cli.register`; they load
TensorFlow inside their own bodies, so nothing here does.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import signal
import sys
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from runtime.contract import DEFAULT_BATCH_SIZE
from runtime.errors import (
    ClosedPipe,
    InputError,
    InputWarning,
    Interrupted,
    MissingExtraError,
    MnistEdgeError,
    OutputError,
)
from runtime.files import write_csv
from runtime.interrupt import ctrl_c_stops_calls, let_calls_finish
from runtime.options import (
    MAX_BATCH,
    BatchOpt,
    DataOpt,
    JsonOpt,
    ModelOpt,
    contract_options,
    device_options,
    parse_counts,
    parse_percentiles,
    scenario_options,
)
from runtime.render import (
    bench_lines,
    evaluation_lines,
    info_lines,
    prediction_header,
    prediction_line,
    profile_lines,
    reading_line,
    say,
    scenario_lines,
)


class OneLineErrors(TyperGroup):
    """Every user error, ours or a bad option, ends as one line on stderr and a non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            with warnings.catch_warnings(), ctrl_c_stops_calls():
                warnings.showwarning = _one_line_warning
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:  # a bare `mnist-edge`: the help, not an error line
            typer.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        except typer.TyperException as e:  # usage errors: bad option values, missing arguments
            ctx = getattr(e, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx else ""
            typer.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(130)
        except Interrupted:  # Ctrl-C stopped a model call: as quiet as a KeyboardInterrupt
            sys.exit(Interrupted.exit_code)
        except ClosedPipe as e:
            # Nobody reads stdout any more: point it at /dev/null so that the interpreter's
            # last flush cannot complain, and stop without a word.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(e.exit_code)
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
    # click's plain help: rich's boxes cut option names at 80 columns and print <bool> on flags
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # wide terminals get whole command summaries
)
DEVICE = "Device (runtime only)"


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        def of(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "not installed"

        typer.echo(
            f"mnist-edge {of('mnist-edge')} (onnxruntime {of('onnxruntime')}, "
            f"Python {sys.version.split()[0]})"
        )
        raise typer.Exit()


@app.callback()
def _top(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Train an MNIST digit model, export it to ONNX, and run and benchmark it on a device."""


def classifier(model: Path | None, settings=None, overrides=None, **kw):
    """The Classifier the options ask for, warning once about what it had to assume."""
    from runtime.session import Classifier  # onnxruntime loads only for commands that need it

    clf = Classifier(model, settings=settings, overrides=overrides, **kw)
    c = clf.contract
    if c.assumed:
        message = f"{clf.path}: no mnist-edge metadata, assumed {'; '.join(c.assumed)}"
        warnings.warn(message, InputWarning, stacklevel=2)
    if c.batch is not None:
        warnings.warn(
            f"{clf.path}: the model takes a fixed batch of {c.batch}: images run {c.batch} at a "
            "time (`mnist-edge adopt` writes a copy that takes any batch)",
            InputWarning,
            stacklevel=2,
        )
    return clf


@app.command(rich_help_panel=DEVICE)
@contract_options
@device_options
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
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    json_out: JsonOpt = False,
    engine: Annotated[
        str,
        typer.Option(
            help="local: this process; ray: Ray Data actors, for archives larger than one "
            "machine handles (needs --output and the scale extra).",
            rich_help_panel="Scale-out (Ray)",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: the cluster to join (ray://HOST:10001 or HOST:6379). "
            "Default: a local Ray started for the run.",
            rich_help_panel="Scale-out (Ray)",
            show_default=False,
        ),
    ] = None,
    ray_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            max=3600,
            help="With --ray-address: seconds for the cluster to answer; past it, one line.",
            rich_help_panel="Scale-out (Ray)",
        ),
    ] = 30.0,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=4096,
            help="With --engine ray: scoring actors, one CPU each. Default: the CPUs less one.",
            rich_help_panel="Scale-out (Ray)",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="With --engine ray: write the results here, .jsonl or .parquet.",
            rich_help_panel="Scale-out (Ray)",
            show_default=False,
        ),
    ] = None,
    settings=None,
    overrides=None,
):
    """Classify digits in image files, .npy arrays or IDX files (one line per image)."""
    import numpy as np

    from runtime.inputs import iter_inputs

    if engine not in ("local", "ray"):
        raise InputError(f"--engine: expected local or ray, found {engine!r}")
    if engine == "ray":
        ray_options = (ray_address, ray_timeout, workers, output)
        _predict_on_ray(inputs, model, overrides, *ray_options, json_out)
        return
    if output or ray_address or workers:
        raise InputError("--output, --ray-address and --workers go with --engine ray")

    clf = classifier(model, settings, overrides, batch_size=batch_size)
    labels = clf.contract.labels
    if not json_out and _at_terminal():
        say(prediction_header(top_k))
    for names, images in iter_inputs(inputs, batch_size):  # images: (n, 28, 28), checked
        probs = clf.finite(clf.proba_of_images(images))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        for name, p, best in zip(names, probs, order, strict=True):
            ranked = [(labels[i], float(p[i])) for i in best]
            say(prediction_line(name, ranked, json_out))


def _at_terminal() -> bool:
    return sys.stdout.isatty()


def _predict_on_ray(inputs, model, overrides, address, timeout, workers, output, json_out) -> None:
    import importlib.util

    if output is None:
        raise InputError("--output: --engine ray writes its results to a file, found none")
    if importlib.util.find_spec("ray") is None:  # imported later, once its settings are made
        raise MissingExtraError(
            "--engine ray needs the scale extra (ray is not installed): "
            "pip install 'mnist-edge[scale]' (or pip install '.[scale]' in a checkout)"
        )
    from runtime.distributed import predict_on_ray

    run = predict_on_ray(
        inputs, output, model and str(model), overrides, address, workers, connect_seconds=timeout
    )
    summary = {**asdict(run), "images_per_s": round(run.images_per_s, 1)}
    if json_out:
        say(json.dumps(summary))
        return
    say(
        f"wrote {run.output}: {run.images:,} images in {run.shards} shards on {run.workers} "
        f"Ray workers, {run.seconds:.1f} s ({run.images_per_s:,.0f} images/s)"
    )


@app.command(rich_help_panel=DEVICE)
@contract_options
@device_options
def read(
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Image files, each a handwritten number on one line (photo, scan, drawing).",
            metavar="IMAGE...",
            show_default=False,
        ),
    ],
    model: ModelOpt = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, max=10, help="Best labels per digit, with --json.")
    ] = 3,
    min_confidence: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Digits read less surely than this print as ? and the exit code is 1.",
        ),
    ] = 0.0,
    annotate: Annotated[
        Path | None,
        typer.Option(
            help="Draw each digit's box and label on the image, written here (.png); with "
            "several images, a folder.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    settings=None,
    overrides=None,
):
    """Read a handwritten number in each image: one line each, the number and its digits'
    confidences (--json: each digit's label, confidence, top-k and box)."""
    from runtime.read import read_file

    clf = classifier(model, settings, overrides)
    unsure = 0
    for path in images:
        reading = read_file(clf, path, str(path), top_k)
        unsure += reading.unsure(min_confidence)
        say(reading_line(str(path), reading, min_confidence, json_out))
        if annotate is not None:
            _write_annotated(path, reading, min_confidence, annotate, several=len(images) > 1)
    if unsure:
        raise typer.Exit(1)


def _write_annotated(path: Path, reading, min_confidence: float, dest: Path, several: bool):
    from PIL import Image

    from runtime.files import atomic_path, make_parent
    from runtime.read import annotate

    if several:  # a folder: made by make_parent, which says in one line why it cannot be
        dest = dest / f"{path.stem}.read.png"
    if dest.exists() and dest.resolve() == path.resolve():
        raise InputError(f"--annotate: {dest} is the image being read; name another file")
    make_parent(dest)
    with Image.open(path) as img, atomic_path(dest) as tmp:
        annotate(img, reading, min_confidence).save(tmp, format="PNG")


@app.command(rich_help_panel=DEVICE)
@contract_options
@device_options
def evaluate(
    model: ModelOpt = None,
    data: DataOpt = None,
    split: Annotated[str, typer.Option(help="Which MNIST split: test or train.")] = "test",
    limit: Annotated[int | None, typer.Option(min=1, help="Score the first N images only.")] = None,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw the confusion matrix and the most confident mistakes to this PNG "
            "(needs matplotlib: the train extra).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    settings=None,
    overrides=None,
):
    """Accuracy of a model on MNIST, with the runtime alone (no TensorFlow), streaming the data;
    how far its confidence can be trusted (calibration error, and what a threshold keeps)."""
    from runtime.evaluate import evaluate_batches
    from runtime.mnist import stream_split

    draw = _plotter() if plot is not None else None  # a missing matplotlib before the work
    clf = classifier(model, settings, overrides, batch_size=batch_size)
    source, count, batches = stream_split(split, data, batch_size)
    result = evaluate_batches(clf, batches, limit)
    if draw is not None:
        draw(result, clf.contract.labels, plot, f"{clf.path.name} on MNIST {split}")
    if json_out:
        payload = {"model": str(clf.path), "data": str(source), "split": split}
        say(json.dumps({**result.to_dict(), **payload}))
        return
    for line in evaluation_lines(result, clf.path, f"{source} ({split}, {{n}} of {count} images)"):
        say(line)
    if plot is not None:
        say(f"wrote {plot}")


def _plotter():
    try:
        from runtime.figures import plot_evaluation
    except ImportError:
        raise InputError(
            "--plot: needs matplotlib, found it not installed "
            "(pip install 'mnist-edge[train]', or pip install matplotlib)"
        ) from None
    return plot_evaluation


@app.command(rich_help_panel=DEVICE)
@scenario_options
@contract_options
@device_options(sweep=True)
def bench(
    model: ModelOpt = None,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")
    ] = "1,32,256",
    duration: Annotated[
        float, typer.Option(min=0.01, max=3600, help="Seconds of timed calls per case.")
    ] = 2.0,
    runs: Annotated[
        int | None,
        typer.Option(min=1, max=10_000_000, help="Exactly this many timed calls per case instead."),
    ] = None,
    warmup: Annotated[
        float, typer.Option(min=0.0, max=600, help="Seconds of untimed calls before each case.")
    ] = 0.2,
    percentiles: Annotated[
        str, typer.Option(help="Percentiles to report, comma-separated.")
    ] = "50,90,99,99.9",
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            max=20,
            help="Run the whole measurement N times; report each figure's median and range.",
        ),
    ] = 1,
    report_file: Annotated[
        Path | None, typer.Option("--output", help="Also save the JSON report to this file.")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also save the results as CSV to this file.")
    ] = None,
    profile_file: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="Also save onnxruntime's per-op profile (200 calls at the largest batch size, "
            "one session) to this file and print the top ops.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    settings=None,
    overrides=None,
    scenario=None,
):
    """Cold start, then latency percentiles and throughput per thread count and batch size; or
    an MLPerf scenario (--scenario) with open-loop load and the micro-batcher."""
    from runtime import bench as measuring
    from runtime.files import writable_target, write_json

    sizes = parse_counts(batch_sizes, "--batch-sizes", MAX_BATCH)
    asked = parse_percentiles(percentiles)
    for option, path in (
        ("--output", report_file),
        ("--csv", csv_file),
        ("--profile", profile_file),
    ):
        if path and not path.parent.is_dir():
            raise OutputError(f"{option} {path}: expected an existing folder {path.parent}")
        if path:
            writable_target(path)  # a device or a folder is refused before the measuring
    if scenario is not None:
        from runtime.scenarios import repeated

        config = replace(scenario, duration=duration, percentiles=asked)
        report = repeated([_run_scenario(model, settings[0], overrides, config)
                           for _ in range(repeat)])  # fmt: skip
    else:
        config = measuring.BenchConfig(
            sizes, settings, duration, runs, warmup, overrides=overrides, percentiles=asked
        )
        progress = typer.progressbar(
            length=len(sizes) * len(settings) * repeat,
            label="measuring",
            file=sys.stderr,
            hidden=not sys.stderr.isatty(),
        )
        with progress as bar:
            report = measuring.repeated(
                [measuring.bench(model, config, on_case=lambda: bar.update(1))
                 for _ in range(repeat)]
            )  # fmt: skip
    payload = report.to_dict()
    ops = None
    if profile_file:
        ops = measuring.profile(model, settings[0], overrides, max(sizes), profile_file)
        payload["profile"] = {"file": str(profile_file), "ops": [asdict(o) for o in ops]}
    if report_file:
        write_json(report_file, payload)
    if csv_file:
        write_csv(
            csv_file,
            [
                {k: v for k, v in asdict(r).items() if k != "percentiles_us"} | r.percentiles_us
                for r in report.results
            ],
        )
    if json_out:
        say(json.dumps(payload))
        return
    lines = scenario_lines(report) if scenario is not None else bench_lines(report)
    for line in [*lines, *profile_lines(ops or [], profile_file)]:
        say(line)


def _run_scenario(model, settings, overrides, config):
    from runtime.scenarios import run_scenario

    def step(text: str) -> None:
        if sys.stderr.isatty():
            typer.echo(f"measuring: {text}", err=True)

    if config.url:  # the model is the server's: none is loaded here
        if config.scenario not in ("server", "multi-stream"):
            raise InputError("--url: goes with the server and multi-stream scenarios only")
        return run_scenario(None, config, step)
    with classifier(model, settings, overrides) as clf:
        return run_scenario(clf, config, step)


@app.command(rich_help_panel=DEVICE)
@contract_options
def info(model: ModelOpt = None, json_out: JsonOpt = False, overrides=None):
    """A model's contract (and where each part came from), inputs, outputs, metadata, size."""
    from runtime.cpu import cpu_name
    from runtime.info import describe
    from runtime.models import default_reason

    chosen = None if model else f"{default_reason()} (CPU: {cpu_name()})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)  # info shows it all, in its place
        described = describe(classifier(model, overrides=overrides), chosen)
    if json_out:
        say(json.dumps(described.to_dict()))
        return
    for line in info_lines(described):
        say(line)


@app.command(rich_help_panel=DEVICE)
@contract_options
@device_options
def serve(
    model: ModelOpt = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback wants --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8080,
    max_batch: Annotated[
        int, typer.Option(min=1, max=4096, help="Most images in one inference call.")
    ] = 64,
    max_delay_us: Annotated[
        float,
        typer.Option(min=0, max=100_000, help="How long a request may wait for others to join."),
    ] = 500.0,
    max_queue: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Requests waiting; past it, 503.")
    ] = 1024,
    timeout: Annotated[
        float, typer.Option(min=0.01, max=3600, help="Seconds a request may take; past it, 504.")
    ] = 10.0,
    max_body: Annotated[
        int, typer.Option(min=1024, max=1 << 30, help="Largest request body in bytes (413).")
    ] = 8 * 1024 * 1024,
    max_inflight: Annotated[
        int,
        typer.Option(
            min=1 << 20,
            max=1 << 40,
            help="Bytes that the requests in progress may hold in all (bodies, decoded pixels, "
            "arrays); past it, 503.",
        ),
    ] = 96 * 1024 * 1024,
    max_connections: Annotated[
        int,
        typer.Option(
            min=1, max=100_000, help="Open connections at once; one more gets a 503 and closes."
        ),
    ] = 256,
    header_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=600,
            help="Seconds for a request's head to arrive on a connection; past it, 408 and "
            "the connection closes.",
        ),
    ] = 5.0,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MNIST_EDGE_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on all but /healthz. "
            "Default: $MNIST_EDGE_TOKEN.",
            show_default=False,
        ),
    ] = None,
    settings=None,
    overrides=None,
):
    """Serve the model over HTTP with dynamic batching: POST /v1/predict, /healthz, /v1/model,
    /metrics. SIGTERM or Ctrl-C drains the requests in flight, then exits 0."""
    import socket

    try:
        import starlette  # noqa: F401  (the serve extra, asked for by name)
        import uvicorn  # noqa: F401

        from runtime.listener import make_server
        from runtime.server import ServerConfig, check_token, create_app
    except ImportError as e:
        raise MissingExtraError(
            f"`mnist-edge serve` needs the serve extra ({e.name} is not installed): "
            "pip install 'mnist-edge[serve]' (or pip install '.[serve]' in a checkout)"
        ) from None
    check_token(token, os.environ.get("MNIST_EDGE_TOKEN"))
    clf = classifier(model, settings, overrides)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(
            f"--host {host}: listening beyond loopback with no --token: anyone who reaches "
            "this port can use the model",
            InputWarning,
            stacklevel=2,
        )
    config = ServerConfig(
        max_batch=max_batch,
        max_delay_us=max_delay_us,
        max_queue=max_queue,
        max_body_bytes=max_body,
        timeout_s=timeout,
        token=token,
        max_inflight_bytes=max_inflight,
        max_connections=max_connections,
        header_timeout_s=header_timeout,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on only for such sockets, and without it
    # every answer waited 40 ms for a delayed ACK (Nagle's algorithm)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise InputError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror})") from None
    bound = sock.getsockname()[1]
    server = make_server(create_app(clf, config), sock, config)
    say(f"serving {clf.path} on http://{host}:{bound}/v1/predict (SIGTERM or Ctrl-C stops)")
    let_calls_finish()  # Ctrl-C drains the requests in flight, as SIGTERM does
    # uvicorn drains the requests in flight on SIGTERM, then raises SIGTERM again for whatever
    # handler was there before it: this one, so that a drained stop exits 0. Heard before
    # uvicorn takes the signal over, it stops the server as soon as it has started.
    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("serve-web", rich_help_panel="Web page (from a checkout)")
def serve_web(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on localhost (0: any free port).")
    ] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    root: Annotated[
        Path | None,
        typer.Option(help="The mnist-edge checkout to serve. Default: this one, or the one here."),
    ] = None,
):
    """Serve the draw-a-digit page (web/, onnxruntime-web) until Ctrl-C."""
    from runtime.webpage import make_server

    server = make_server(host, port, root)
    bound_host, bound_port = server.server_address[:2]
    say(f"serving the draw-a-digit page at http://{bound_host}:{bound_port}/web/ (Ctrl-C stops)")
    with server:
        server.serve_forever()


def main() -> None:
    """The console entry point: the device commands, and the workstation ones beside them."""
    importlib.import_module("train.cli").register(app)  # train.cli loads no TensorFlow
    invoked_only(app, sys.argv[1:2])()


def invoked_only(app: typer.Typer, first: list[str]) -> typer.Typer:
    """`app` with only the command that `first` names, or all of them when it names none.

    Typer builds a click command from every function's signature on every run, about 20 ms of
    a 0.2 s cold predict for twelve commands; help, typos and suggestions still see them all."""
    by_name = {
        info.name or typer.main.get_command_name(info.callback.__name__): info
        for info in app.registered_commands
    }
    if not first or first[0] not in by_name:
        return app
    one = copy.copy(app)
    one.registered_commands = [by_name[first[0]]]
    return one  # a group still (the callback above): a lone command would take its name as input


if __name__ == "__main__":
    main()
