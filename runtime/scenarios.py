"""Load as MLPerf Inference's LoadGen defines its scenarios, run in process on a Classifier.

- single-stream: one query of one image at a time, back to back; the 90th percentile latency.
- multi-stream: a query of N images every T ms; a query's latency ends with its last image.
- server: one-image queries arriving as a Poisson process at a target rate (seeded), open loop;
  latency counts from each query's scheduled arrival, so a backlog shows as latency and is never
  hidden (no coordinated omission). `find_peak` searches for the highest rate whose p99 stays
  under a bound.
- offline: every image at once; throughput.

Concurrent queries reach the model through the MicroBatcher (batching) or through a pool of
worker threads that each call the Classifier with their own query (no batching).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from runtime.batcher import MicroBatcher, Overloaded
from runtime.bench import process_usage
from runtime.contract import IMAGE_SIZE
from runtime.errors import InputError
from runtime.session import Classifier
from runtime.settings import cpu_count

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
MAX_QUERIES = 2_000_000  # per measurement, whatever rate and duration ask for
MAX_PEAK_TRIALS = 12


@dataclass(frozen=True)
class ScenarioConfig:
    scenario: str = "single-stream"
    duration: float = 5.0  # seconds of queries per measurement
    qps: float = 1000.0  # server: the offered rate
    samples_per_query: int = 8  # multi-stream
    interval_ms: float = 1.0  # multi-stream: one query every this many milliseconds
    latency_bound_ms: float = 2.0  # server, with find_peak: the p99 that must hold
    find_peak: bool = False
    batching: bool = True
    max_batch: int = 64  # the batcher's largest call
    max_delay_us: float = 200.0  # how long the batcher waits for more after a first request
    workers: int = field(default_factory=cpu_count)  # concurrent callers without batching
    offline_images: int = 16384
    percentiles: tuple[float, ...] = (50, 90, 99, 99.9)
    seed: int = 0  # arrival times and images

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise InputError(
                f"--scenario: expected one of {', '.join(SCENARIOS)}, found {self.scenario!r}"
            )
        checks = {
            "--qps": 0 < self.qps <= 1e6,
            "--samples-per-query": 1 <= self.samples_per_query <= 4096,
            "--interval-ms": 0.01 <= self.interval_ms <= 60_000,
            "--latency-bound-ms": 0 < self.latency_bound_ms <= 60_000,
            "--max-batch": 1 <= self.max_batch <= 65536,
            "--max-delay-us": 0 <= self.max_delay_us <= 1e6,
            "--percentiles": all(0 < p < 100 for p in self.percentiles) and self.percentiles,
        }
        for option, ok in checks.items():
            if not ok:
                raise InputError(f"{option}: out of range ({_value(self, option)})")


@dataclass(frozen=True)
class ScenarioResult:
    qps_target: float | None  # the offered rate (server, multi-stream), None for closed loops
    qps_achieved: float  # queries answered per second
    images_per_s: float
    queries: int
    p50_us: float
    p90_us: float
    p99_us: float
    percentiles_us: dict[str, float]  # every percentile asked for
    batching: bool
    mean_batch: float  # images per inference call
    overloaded: int  # queries refused by a full queue
    seconds: float


@dataclass(frozen=True)
class ScenarioReport:
    scenario: str
    settings: dict
    results: list[ScenarioResult]
    peak_qps: float | None = None  # server with find_peak
    process: dict = field(default_factory=dict)  # peak RSS and CPU time of the whole run

    def to_dict(self) -> dict:
        return asdict(self)


def run_scenario(
    clf: Classifier, config: ScenarioConfig, on_step: Callable[[str], None] | None = None
) -> ScenarioReport:
    """Measure `config.scenario` on `clf`; `on_step` hears of each measurement as it starts."""
    rng = np.random.default_rng(config.seed)
    images = rng.integers(0, 256, (1024, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    step = on_step or (lambda _: None)
    peak = None
    if config.scenario == "single-stream":
        step("single-stream")
        results = [_single_stream(clf, images, config)]
    elif config.scenario == "offline":
        step("offline")
        results = [_offline(clf, images, config)]
    elif config.scenario == "multi-stream":
        step(f"multi-stream, {config.samples_per_query} images every {config.interval_ms} ms")
        results = [_open_loop(clf, images, config, multi=True)]
    elif not config.find_peak:
        step(f"server at {config.qps:g} qps")
        results = [_open_loop(clf, images, config, multi=False)]
    else:
        results, peak = _find_peak(clf, images, config, step)
    settings = {k: v for k, v in asdict(config).items() if k != "percentiles"}
    settings["percentiles"] = list(config.percentiles)
    settings["model"] = str(clf.path)
    return ScenarioReport(config.scenario, settings, results, peak, process_usage())


def _single_stream(clf, images, config) -> ScenarioResult:
    times, start = [], time.perf_counter()
    deadline = start + config.duration
    i = 0
    while time.perf_counter() < deadline or len(times) < 100:
        t0 = time.perf_counter()
        clf.predict_proba(images[i % len(images)])
        times.append(time.perf_counter() - t0)
        i += 1
    seconds = time.perf_counter() - start
    return _result(np.array(times), len(times), 1, seconds, None, False, 1.0, 0, config)


def _offline(clf, images, config) -> ScenarioResult:
    batch = np.resize(images, (config.offline_images, IMAGE_SIZE, IMAGE_SIZE))
    clf.predict_proba(batch[: clf.batch_size])  # warm
    times, start = [], time.perf_counter()
    while not times or time.perf_counter() - start < config.duration:
        t0 = time.perf_counter()
        clf.predict_proba(batch)
        times.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    calls = -(-len(batch) // clf.batch_size)
    mean_batch = len(batch) / calls
    return _result(
        np.array(times), len(times), len(batch), seconds, None, False, mean_batch, 0, config
    )


def _open_loop(clf, images, config, multi: bool) -> ScenarioResult:
    """Queries issued at scheduled times whatever the answers do; latency from the schedule."""
    per_query = config.samples_per_query if multi else 1
    if multi:
        rate = 1000 / config.interval_ms
        n = min(int(config.duration * rate), MAX_QUERIES)
        arrivals = np.arange(n) / rate
    else:
        rate = config.qps
        n = max(min(int(config.duration * rate), MAX_QUERIES), 1)
        gaps = np.random.default_rng(config.seed).exponential(1 / rate, n)
        arrivals = np.cumsum(gaps) - gaps[0]
    done = np.full(n, np.nan)
    remaining = np.full(n, per_query)
    refused = 0
    lock = threading.Lock()
    finished = threading.Event()
    left = [n]

    def complete(query: int, at: float) -> None:
        with lock:
            remaining[query] -= 1
            if remaining[query] == 0:  # a query ends with its last image
                done[query] = at
                left[0] -= 1
                if left[0] == 0:
                    finished.set()

    def answered(query: int, future: Future) -> None:
        at = time.perf_counter() - start
        complete(query, at if future.exception() is None else np.inf)

    batcher = MicroBatcher(clf, config.max_batch, config.max_delay_us) if config.batching else None
    pool = None if config.batching else ThreadPoolExecutor(config.workers)
    for i in range(min(config.workers * 4, 256)):  # warm the callers' per-thread bindings
        clf.predict_proba(images[i % len(images)])
    start = time.perf_counter()
    try:
        for query, due in enumerate(arrivals):
            wait = due - (time.perf_counter() - start)
            if wait > 0:
                time.sleep(wait)
            for k in range(per_query):
                image = images[(query * per_query + k) % len(images)]
                try:
                    future = (
                        batcher.submit(image) if batcher else pool.submit(clf.predict_proba, image)
                    )
                except Overloaded:
                    refused += 1
                    complete(query, np.inf)
                    continue
                future.add_done_callback(lambda f, q=query: answered(q, f))
        finished.wait(timeout=max(config.duration * 4, 30))
    finally:
        if batcher:
            stats = batcher.stats()
            batcher.close()
        if pool:
            pool.shutdown(wait=True)
    seconds = time.perf_counter() - start
    ok = np.isfinite(done)
    latency = (done - arrivals)[ok]
    mean_batch = stats.mean_batch if batcher else 1.0
    return _result(
        latency,
        int(ok.sum()),
        per_query,
        seconds,
        round(rate, 1),
        config.batching,
        mean_batch,
        refused,
        config,
        late=n - int(ok.sum()) - refused,
    )


def _find_peak(clf, images, config, step) -> tuple[list[ScenarioResult], float]:
    """Double the rate while p99 holds the bound and nothing is refused, then bisect."""
    bound_us = config.latency_bound_ms * 1000
    low, high, qps = 0.0, None, config.qps
    results = []
    for _ in range(MAX_PEAK_TRIALS):
        step(f"server at {qps:,.0f} qps (peak search)")
        r = _open_loop(clf, images, _with_qps(config, qps), multi=False)
        results.append(r)
        holds = r.p99_us <= bound_us and r.overloaded == 0  # a backlog shows in the p99
        if holds:
            low = qps
        else:
            high = qps
        if high is not None and high - low <= 0.05 * high:
            break
        qps = qps * 2 if high is None else (low + high) / 2
    return results, round(low, 1)


def _with_qps(config: ScenarioConfig, qps: float) -> ScenarioConfig:
    return replace(config, qps=qps)


def _result(
    seconds_each, queries, per_query, seconds, target, batching, mean_batch, refused, config,
    late: int = 0,
) -> ScenarioResult:  # fmt: skip
    us = np.asarray(seconds_each, dtype=np.float64) * 1e6
    asked = {f"p{p:g}": round(float(np.percentile(us, p)), 1) if len(us) else float("nan")
             for p in config.percentiles}  # fmt: skip
    p50, p90, p99 = (float(np.percentile(us, p)) if len(us) else float("nan") for p in (50, 90, 99))
    if late:  # queries with no answer within the wait: they count as infinitely late
        p99 = float("inf")
    return ScenarioResult(
        qps_target=target,
        qps_achieved=round(queries / seconds, 1),
        images_per_s=round(queries * per_query / seconds, 1),
        queries=queries,
        p50_us=round(p50, 1),
        p90_us=round(p90, 1),
        p99_us=round(p99, 1),
        percentiles_us=asked,
        batching=batching,
        mean_batch=round(mean_batch, 2),
        overloaded=refused,
        seconds=round(seconds, 2),
    )


def _value(config: ScenarioConfig, option: str) -> object:
    return getattr(config, option.removeprefix("--").replace("-", "_"))
