"""Latency of the runtime per batch size: warm up, then time calls for a fixed duration."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runtime.session import Classifier


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (1, 32, 256)
    duration: float = 2.0  # seconds of timed calls per batch size
    warmup: float = 0.2  # seconds of untimed calls first: caches, allocator, thread pool
    min_runs: int = 10  # enough samples for a p90 even when a call is slow
    seed: int = 0  # the random images fed; latency does not depend on their content


@dataclass(frozen=True)
class BenchResult:
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


def summarize(batch_size: int, seconds: np.ndarray) -> BenchResult:
    """Statistics of per-call wall times (seconds) for calls of `batch_size` images."""
    if len(seconds) == 0:
        raise ValueError("no timings to summarize")
    us = np.asarray(seconds, dtype=np.float64) * 1e6
    p50, p90, p99, p999 = np.percentile(us, [50, 90, 99, 99.9])
    return BenchResult(
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
    )


def time_calls(fn: Callable[[], object], duration: float, min_runs: int) -> np.ndarray:
    """Call `fn` until `duration` seconds and `min_runs` calls have passed; per-call seconds."""
    times = []
    clock = time.perf_counter
    deadline = clock() + duration
    while len(times) < min_runs or clock() < deadline:
        start = clock()
        fn()
        times.append(clock() - start)
    return np.array(times)


def bench(
    clf: Classifier,
    config: BenchConfig,
    on_batch: Callable[[int], None] | None = None,
) -> list[BenchResult]:
    """Time `clf.predict_proba` on random uint8 images at each batch size in `config`."""
    rng = np.random.default_rng(config.seed)
    results = []
    for batch_size in config.batch_sizes:
        images = rng.integers(0, 256, size=(batch_size, 28, 28), dtype=np.uint8)
        call = lambda images=images: clf.predict_proba(images)  # noqa: E731
        time_calls(call, config.warmup, min_runs=1)
        results.append(summarize(batch_size, time_calls(call, config.duration, config.min_runs)))
        if on_batch:
            on_batch(batch_size)
    return results
