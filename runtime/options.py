"""Command-line options that several commands share, declared once.

A group of options reaches its command as one object: the device options as `settings`
(a SessionSettings, or a tuple of them for a thread sweep), the model-contract options as
`overrides` (an Overrides). Typer reads the parameters from the wrapper's signature.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from runtime.contract import LAYOUTS, OUTPUTS, Overrides
from runtime.errors import InputError
from runtime.settings import MAX_THREADS, OPTIMIZATIONS, device_settings

ModelOpt = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="ONNX model file, or a shipped model's name. Default: the shipped edge CNN, INT8 "
        "where its answers were shown exact (ARM64, x86 with AVX2), else fp32; "
        "$MNIST_EDGE_MODEL overrides.",
        dir_okay=False,
    ),
]
MAX_BATCH = 65536  # images in one call: 51 MB of pixels, already past any device's sweet spot
BatchOpt = Annotated[
    int,
    typer.Option(
        "--batch-size", min=1, max=MAX_BATCH, help="Images per inference call (bounds memory)."
    ),
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

_DEVICE = "Device options"
_THREADS_HELP = "onnxruntime intra-op threads. Default: all cores."
_DEVICE_PARAMS = {
    "spinning": (
        Annotated[
            bool | None,
            typer.Option(
                "--spinning/--no-spinning",
                help="Busy-wait between ops: lower latency, more power. Default: on.",
                show_default=False,
                rich_help_panel=_DEVICE,
            ),
        ],
        None,
    ),
    "memory_arena": (
        Annotated[
            bool,
            typer.Option(
                "--memory-arena/--no-memory-arena",
                help="Reuse buffers between calls.",
                rich_help_panel=_DEVICE,
            ),
        ],
        True,
    ),
    "split_batches": (
        Annotated[
            bool | None,
            typer.Option(
                "--split-batches/--no-split-batches",
                help="With several threads, split a large batch across single-thread sessions. "
                "Default: for INT8 models only (faster there; fp32 is as fast without).",
                show_default=False,
                rich_help_panel=_DEVICE,
            ),
        ],
        None,
    ),
    "low_power": (
        Annotated[
            bool,
            typer.Option(
                "--low-power",
                help="One thread, no spinning: for battery-powered boards.",
                rich_help_panel=_DEVICE,
            ),
        ],
        False,
    ),
    "optimization": (
        Annotated[
            str,
            typer.Option(
                help=f"Graph optimisation: {', '.join(OPTIMIZATIONS)}.", rich_help_panel=_DEVICE
            ),
        ],
        "all",
    ),
}
_ONE_THREAD_COUNT = (
    Annotated[
        int | None,
        typer.Option(
            "--threads", min=1, max=MAX_THREADS, help=_THREADS_HELP, rich_help_panel=_DEVICE
        ),
    ],
    None,
)
_THREAD_SWEEP = (
    Annotated[
        str | None,
        typer.Option(
            "--threads",
            help=_THREADS_HELP + " A comma-separated list such as 1,2 measures each.",
            rich_help_panel=_DEVICE,
        ),
    ],
    None,
)

_CONTRACT = "Model contract (for models made elsewhere)"
_CONTRACT_PARAMS = {
    "input_size": (
        Annotated[
            int | None,
            typer.Option(
                min=8,
                max=256,
                help="The model's image side in pixels, where its shape does not say. "
                "Default: the shape, else 28.",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
    "pad": (
        Annotated[
            int | None,
            typer.Option(
                min=-10,
                max=100,
                help="Blank pixels added around MNIST's 28x28 for the model's size (negative: "
                "cropped). Default: centred, (side - 28) / 2, as LeNet's 32x32 padding.",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
    "layout": (
        Annotated[
            str | None,
            typer.Option(
                help=f"Input layout: {', '.join(LAYOUTS)}. Default: metadata, else the shape.",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
    "mean": (
        Annotated[
            float | None,
            typer.Option(
                help="Model input = (pixel / 255 - MEAN) / STD, as torchvision's Normalize.",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
    "std": (
        Annotated[
            float | None,
            typer.Option(
                help="See --mean. Default: pixels in [0, 1] (mean 0, std 1).",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
    "input_range": (
        Annotated[
            str | None,
            typer.Option(
                "--input-range",
                help="Pixel 0 and 255 become LOW,HIGH: 0,1 or -1,1 or 0,255 (1,0: inverted).",
                metavar="LOW,HIGH",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
    "output_kind": (
        Annotated[
            str | None,
            typer.Option(
                "--model-output",
                help=f"What the model outputs: {', '.join(OUTPUTS)}. Default: metadata, else "
                "judged from its scores.",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
    "output_name": (
        Annotated[
            str | None,
            typer.Option(
                help="The output with the [N, 10] scores, where a model has several.",
                rich_help_panel=_CONTRACT,
                show_default=False,
            ),
        ],
        None,
    ),
}


_SCENARIO = "Scenarios (MLPerf LoadGen's)"


def _scenario_option(kind, default, *names, help: str, **extra):
    option = typer.Option(*names, help=help, rich_help_panel=_SCENARIO, **extra)
    return Annotated[kind, option], default


_SCENARIO_PARAMS = {
    "scenario": _scenario_option(
        str | None,
        None,
        "--scenario",
        help="single-stream, multi-stream, server or offline, as MLPerf defines them "
        "(README: Scenarios). Default: the latency sweep.",
        show_default=False,
    ),
    "qps": _scenario_option(float, 1000.0, "--qps", help="server: Poisson arrivals per second."),
    "find_peak": _scenario_option(
        bool,
        False,
        "--find-peak",
        help="server: search for the highest --qps whose p99 stays under --latency-bound-ms.",
    ),
    "latency_bound_ms": _scenario_option(
        float, 2.0, "--latency-bound-ms", help="server: the p99 bound for --find-peak."
    ),
    "samples_per_query": _scenario_option(
        int, 8, "--samples-per-query", help="multi-stream: images per query."
    ),
    "interval_ms": _scenario_option(
        float, 1.0, "--interval-ms", help="multi-stream: one query every this many ms."
    ),
    "batching": _scenario_option(
        bool,
        True,
        "--batching/--no-batching",
        help="server, multi-stream: concurrent queries through the micro-batcher, or each on "
        "its own worker thread.",
    ),
    "max_batch": _scenario_option(
        int | None,
        None,
        "--max-batch",
        help="The batcher's largest call. Default: 64; multi-stream: --samples-per-query.",
        show_default=False,
    ),
    "max_delay_us": _scenario_option(
        float, 200.0, "--max-delay-us", help="How long the batcher waits for more requests."
    ),
    "url": _scenario_option(
        str | None,
        None,
        "--url",
        help="server, multi-stream: load a running `mnist-edge serve` at http://HOST:PORT "
        "instead of a model in this process.",
        show_default=False,
    ),
    "token": _scenario_option(
        str | None,
        None,
        "--token",
        envvar="MNIST_EDGE_TOKEN",
        help="With --url: the server's bearer token. Default: $MNIST_EDGE_TOKEN.",
        show_default=False,
    ),
}


def scenario_options(command: Callable) -> Callable:
    """Give `command` the scenario options; it receives a ScenarioConfig (or None for the
    default sweep) as `scenario`, with the duration and percentiles it passes in later."""

    def build(scenario, max_batch, samples_per_query, **options):
        if scenario is None:
            return None
        from runtime.scenarios import ScenarioConfig

        if max_batch is None:
            max_batch = samples_per_query if scenario == "multi-stream" else 64
        return ScenarioConfig(
            scenario, max_batch=max_batch, samples_per_query=samples_per_query, **options
        )

    return _grouped(command, "scenario", _SCENARIO_PARAMS, build)


def parse_percentiles(text: str) -> tuple[float, ...]:
    """'50,90,99,99.9' -> (50.0, 90.0, 99.0, 99.9); each strictly between 0 and 100."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or not all(0 < v < 100 for v in values):
        raise InputError(
            f"--percentiles: expected numbers between 0 and 100 such as 50,99, found {text!r}"
        )
    return values


def device_options(command: Callable | None = None, *, sweep: bool = False):
    """Give `command` the device options; it receives them as `settings`. With `sweep`,
    --threads takes a list and `settings` is a tuple, one SessionSettings per count."""

    def build(threads, **options):
        if not sweep:
            return device_settings(threads, **options)
        counts = parse_counts(threads, "--threads", MAX_THREADS) if threads else (None,)
        return tuple(device_settings(t, **options) for t in counts)

    def decorate(fn: Callable) -> Callable:
        params = {"threads": _THREAD_SWEEP if sweep else _ONE_THREAD_COUNT, **_DEVICE_PARAMS}
        return _grouped(fn, "settings", params, build)

    return decorate(command) if command else decorate


def contract_options(command: Callable) -> Callable:
    """Give `command` the model-contract options; it receives them as `overrides`."""

    def build(input_range, output_kind, **options):
        return Overrides(input_range=_parse_range(input_range), output=output_kind, **options)

    return _grouped(command, "overrides", _CONTRACT_PARAMS, build)


def parse_counts(text: str, option: str, most: int) -> tuple[int, ...]:
    """'1,32,256' -> (1, 32, 256); each a positive integer, at most `most`."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(
            f"{option}: expected comma-separated integers like 1,32,256, found {text!r}"
        ) from None
    if not counts or min(counts) < 1 or max(counts) > most:
        raise InputError(f"{option}: expected integers from 1 to {most:,}, found {text!r}")
    return counts


def _parse_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--input-range: expected LOW,HIGH such as -1,1, found {text!r}") from None
    return low, high


def _grouped(command: Callable, name: str, params: dict, build: Callable) -> Callable:
    """`command` with `params` added to its options and collapsed into one argument `name`."""
    hints = typing.get_type_hints(command, include_extras=True)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(command).parameters.values()
        if p.name != name
    ]
    added = [
        inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, annotation=hint, default=default)
        for key, (hint, default) in params.items()
    ]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        group = {key: kwargs.pop(key) for key in params}
        return command(*args, **kwargs, **{name: build(**group)})

    signature = inspect.Signature([*own, *added], return_annotation=inspect.Signature.empty)
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    del wrapper.__wrapped__  # typer must see the new signature, not the command's own
    return wrapper
