"""Latency of the runtime: cold start, then per thread count and batch size, warm-up then timing."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnxruntime

from runtime.contract import IMAGE_SIZE, Overrides
from runtime.cpu import cpu_name
from runtime.errors import BusyWarning
from runtime.files import atomic_path
from runtime.load import Sample, busy_warning, load_between, sample
from runtime.session import Classifier
from runtime.settings import SessionSettings


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (1, 32, 256)
    # one case per settings: a thread sweep is settings that differ in `threads` alone
    sessions: tuple[SessionSettings, ...] = (SessionSettings(),)
    duration: float = 2.0  # seconds of timed calls per case, unless `runs` is set
    runs: int | None = None  # exactly this many timed calls per case instead
    warmup: float = 0.2  # seconds of untimed calls first: caches, allocator, thread pool
    min_runs: int = 10  # enough samples for a p90 even when a call is slow
    overrides: Overrides = field(default_factory=Overrides)  # a foreign model's contract
    seed: int = 0  # the random images fed; latency does not depend on their content
    percentiles: tuple[float, ...] = (50, 90, 99, 99.9)  # reported besides the fixed four


@dataclass(frozen=True)
class BenchResult:
    threads: int | None
    batch_size: int
    runs: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    min_us: float
    max_us: float
    std_us: float
    images_per_s: float
    chunked: bool = False  # a fixed-batch model ran this batch size in several calls
    percentiles_us: dict[str, float] = field(default_factory=dict)  # every percentile asked for
    ranges: dict[str, list[float]] = field(default_factory=dict)  # [min, max] over --repeat runs


@dataclass(frozen=True)
class ColdStart:
    threads: int | None
    load_ms: float  # session creation: read, parse, optimise the graph
    first_inference_us: float  # the first batch-1 call after loading


@dataclass(frozen=True)
class BenchReport:
    settings: dict
    cold_start: list[ColdStart]
    results: list[BenchResult]
    process: dict = field(default_factory=dict)  # peak RSS and CPU time of the whole run

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(
    batch_size: int,
    seconds: np.ndarray,
    threads: int | None = None,
    chunked: bool = False,
    percentiles: tuple[float, ...] = (),
) -> BenchResult:
    """Statistics of per-call wall times (seconds) for calls of `batch_size` images."""
    if len(seconds) == 0:
        raise ValueError("no timings to summarize")
    us = np.asarray(seconds, dtype=np.float64) * 1e6
    p50, p90, p99, p999 = np.percentile(us, [50, 90, 99, 99.9])
    return BenchResult(
        threads=threads,
        batch_size=batch_size,
        runs=len(us),
        p50_us=round(float(p50), 2),
        p90_us=round(float(p90), 2),
        p99_us=round(float(p99), 2),
        p999_us=round(float(p999), 2),
        mean_us=round(float(us.mean()), 2),
        min_us=round(float(us.min()), 2),
        max_us=round(float(us.max()), 2),
        std_us=round(float(us.std()), 2),
        images_per_s=round(batch_size * len(us) / (us.sum() / 1e6), 1),
        chunked=chunked,
        percentiles_us={f"p{p:g}": round(float(np.percentile(us, p)), 2) for p in percentiles},
    )


def time_calls(
    fn: Callable[[], object], duration: float, min_runs: int, runs: int | None = None
) -> np.ndarray:
    """Per-call seconds: exactly `runs` calls, else calls until `duration` and `min_runs`."""
    times = []
    clock = time.perf_counter
    deadline = clock() + duration
    while (
        (len(times) < runs) if runs is not None else (len(times) < min_runs or clock() < deadline)
    ):
        start = clock()
        fn()
        times.append(clock() - start)
    return np.array(times)


def bench(
    model: Path | str | None,
    config: BenchConfig,
    on_case: Callable[[], None] | None = None,
) -> BenchReport:
    """Measure cold start, then every (threads, batch size) case in `config`, one after another."""
    before = sample()
    rng = np.random.default_rng(config.seed)
    shape = (IMAGE_SIZE, IMAGE_SIZE)
    inputs = {b: rng.integers(0, 256, (b, *shape), dtype=np.uint8) for b in config.batch_sizes}
    cold, results = [], []
    path, fixed = None, None
    for settings in config.sessions:
        threads = settings.threads
        start = time.perf_counter()
        clf = Classifier(
            model,
            batch_size=max(config.batch_sizes),
            settings=settings,
            overrides=config.overrides,
        )
        loaded = time.perf_counter()
        clf.predict_proba(inputs[min(config.batch_sizes)][:1])
        first = time.perf_counter()
        cold.append(
            ColdStart(threads, round((loaded - start) * 1e3, 2), round((first - loaded) * 1e6, 1))
        )
        path, fixed = clf.path, clf.contract.batch
        for batch_size in config.batch_sizes:
            call = lambda x=inputs[batch_size], clf=clf: clf.predict_proba(x)  # noqa: E731
            time_calls(call, config.warmup, min_runs=1)
            seconds = time_calls(call, config.duration, config.min_runs, config.runs)
            chunked = fixed is not None and batch_size != fixed
            results.append(summarize(batch_size, seconds, threads, chunked, config.percentiles))
            if on_case:
                on_case()
        clf.close()
    return BenchReport(_settings(path, fixed, config), cold, results, process_usage(before))


IDENTITY = {"threads", "batch_size", "qps_target", "chunked", "batching", "holds"}


def median_of(runs: list[list]) -> list:
    """Repeated measurements of the same cases -> per case, each figure the median of its runs
    and its [min, max] in `ranges` (percentiles_us by name), the case's identity kept."""
    combined = []
    for cases in zip(*runs, strict=True):
        first, medians, ranges = cases[0], {}, {}
        for name, value in asdict(first).items():
            if name in IDENTITY or name == "ranges" or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                values = [getattr(c, name) for c in cases]
                median = float(np.median(values))
                medians[name] = round(median) if isinstance(value, int) else round(median, 2)
                ranges[name] = [min(values), max(values)]
            elif name == "percentiles_us":
                medians[name] = {
                    k: round(float(np.median([c.percentiles_us[k] for c in cases])), 2)
                    for k in value
                }
                for k in value:
                    got = [c.percentiles_us[k] for c in cases]
                    ranges[k] = [min(got), max(got)]
        combined.append(replace(first, **medians, ranges=ranges))
    return combined


def repeated(reports: list[BenchReport]) -> BenchReport:
    """One report from `--repeat` runs: each figure the median of the runs, with its range;
    the first run's cold start, the last run's process figures."""
    if len(reports) == 1:
        return reports[0]
    return replace(
        reports[0],
        settings={**reports[0].settings, "repeat": len(reports)},
        results=median_of([r.results for r in reports]),
        process=reports[-1].process,
    )


def process_usage(before: Sample | None = None) -> dict:
    """This process's peak resident memory and CPU time so far; with `before`, what the rest of
    the machine took since then, and a BusyWarning where that makes the figures suspect."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    load = load_between(before, sample()) if before is not None else {}
    if (warning := busy_warning(load)) is not None:
        warnings.warn(warning, BusyWarning, stacklevel=2)
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        **load,
    }


@dataclass(frozen=True)
class OpShare:
    op: str
    total_us: float
    share: float  # of all node time in the profile


def profile(
    model: Path | str | None,
    settings: SessionSettings,
    overrides: Overrides,
    batch_size: int,
    dest: Path,
    runs: int = 200,
) -> list[OpShare]:
    """`runs` calls at `batch_size` with onnxruntime's profiler on (one session, not split);
    the profile is saved as `dest`; returns time per op type, largest first."""
    with tempfile.TemporaryDirectory() as tmp:
        traced = replace(settings, split_batches=False, profile_prefix=str(Path(tmp) / "ort"))
        with Classifier(model, settings=traced, overrides=overrides) as clf:
            shape = (batch_size, IMAGE_SIZE, IMAGE_SIZE)
            x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
            for _ in range(runs):
                clf.predict_proba(x)
            written = clf.end_profiling()
        events = json.loads(written.read_text())
        with atomic_path(dest) as out:
            shutil.copyfile(written, out)
    totals: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            totals[op] = totals.get(op, 0.0) + e.get("dur", 0)
    everything = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return [OpShare(op, round(us, 1), round(us / everything, 4)) for op, us in ranked]


def _settings(path: Path | None, fixed: int | None, config: BenchConfig) -> dict:
    session = config.sessions[0]
    return {
        "model": str(path),
        "fixed_batch": fixed,
        "batch_sizes": list(config.batch_sizes),
        "threads": [s.threads for s in config.sessions],
        "duration_s": None if config.runs else config.duration,
        "runs": config.runs,
        "warmup_s": config.warmup,
        "spinning": session.spinning,
        "memory_arena": session.memory_arena,
        "optimization": session.optimization,
        "split_batches": {None: "auto", True: "on", False: "off"}[session.split_batches],
        "input": "random uint8 images through Classifier.predict_proba",
        "onnxruntime": onnxruntime.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": cpu_name(),
    }
