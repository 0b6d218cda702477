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

import http.client
import io
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from runtime.batcher import MicroBatcher, Overloaded
from runtime.bench import median_of, process_usage, time_calls
from runtime.contract import IMAGE_SIZE
from runtime.errors import InputError
from runtime.load import sample
from runtime.session import Classifier
from runtime.settings import cpu_count

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
# Per measurement, whatever rate, duration and query size ask for: the images sent, and the
# queries waiting for an answer at once (past it a query is refused, as a full server would).
MAX_IMAGES = 2_000_000
MAX_OUTSTANDING = 4096
# Issuing stops this many durations after the start, however far behind the schedule it is;
# then the answers are waited for at most max(duration, DRAIN_MIN_S): a run ends within about
# three durations (plus two seconds), whatever load was asked for.
ISSUE_DURATIONS = 2.0
DRAIN_MIN_S = 2.0
MAX_PEAK_TRIALS = 12
CONFIRM = 2  # more trials of a rate that failed, before the peak search concludes it does


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
    url: str | None = None  # drive a `mnist-edge serve` over HTTP instead of a Classifier
    token: str | None = None  # its bearer token
    connections: int = 64  # HTTP: concurrent connections (a request waits for a free one)

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
    holds: bool | None = None  # in a peak search: p99 within the bound, nothing refused
    ranges: dict[str, list[float]] = field(default_factory=dict)  # [min, max] over --repeat runs


@dataclass(frozen=True)
class ScenarioReport:
    scenario: str
    settings: dict
    results: list[ScenarioResult]
    peak_qps: float | None = None  # server with find_peak
    process: dict = field(default_factory=dict)  # peak RSS, CPU time, the machine's load
    peak_note: str | None = None  # trials at one rate that disagreed, with the figures
    peak_range: list[float] | None = None  # [min, max] of the peak over --repeat searches

    def to_dict(self) -> dict:
        return asdict(self)


def run_scenario(
    clf: Classifier, config: ScenarioConfig, on_step: Callable[[str], None] | None = None
) -> ScenarioReport:
    """Measure `config.scenario` on `clf`; `on_step` hears of each measurement as it starts."""
    before = sample()
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
    settings["model"] = config.url if config.url else str(clf.path)
    if config.url:  # the batcher is the server's: report its settings, not this side's defaults
        served = served_settings(config.url, config.token)
        settings |= {
            "batching": True,
            "max_batch": served.get("max_batch"),
            "max_delay_us": served.get("max_delay_us"),
        }
    settings.pop("token")  # never in a report
    note = _disagreement(results) if config.find_peak else None
    usage = process_usage(before)
    return ScenarioReport(config.scenario, settings, results, peak, usage, note)


def repeated(reports: list[ScenarioReport]) -> ScenarioReport:
    """One report from `--repeat` runs of a scenario: figures as medians with their ranges; for
    a peak search, the median peak, the range of the peaks, and the trials of the run that found
    the median one."""
    if len(reports) == 1:
        return reports[0]
    settings = {**reports[0].settings, "repeat": len(reports)}
    if reports[0].peak_qps is None:
        return replace(reports[0], settings=settings,
                       results=median_of([r.results for r in reports]))  # fmt: skip
    by_peak = sorted(reports, key=lambda r: r.peak_qps)
    notes = [r.peak_note for r in reports if r.peak_note]
    return replace(
        by_peak[len(by_peak) // 2],
        settings=settings,
        peak_range=[by_peak[0].peak_qps, by_peak[-1].peak_qps],
        peak_note="; ".join(notes) or None,
    )


def _single_stream(clf, images, config) -> ScenarioResult:
    queries = itertools.cycle(images)
    start = time.perf_counter()
    times = time_calls(lambda: clf.predict_proba(next(queries)), config.duration, min_runs=100)
    seconds = time.perf_counter() - start
    return _result(times, len(times), 1, seconds, None, False, 1.0, 0, config)


def _offline(clf, images, config) -> ScenarioResult:
    batch = np.resize(images, (config.offline_images, IMAGE_SIZE, IMAGE_SIZE))
    clf.predict_proba(batch[: clf.batch_size])  # warm
    start = time.perf_counter()
    times = time_calls(lambda: clf.predict_proba(batch), config.duration, min_runs=1)
    seconds = time.perf_counter() - start
    calls = -(-len(batch) // clf.batch_size)
    mean_batch = len(batch) / calls
    return _result(times, len(times), len(batch), seconds, None, False, mean_batch, 0, config)


def _open_loop(clf, images, config, multi: bool) -> ScenarioResult:
    """Queries issued at scheduled times whatever the answers do; latency from the schedule."""
    per_query = config.samples_per_query if multi else 1
    most = max(MAX_IMAGES // per_query, 1)
    if multi:
        rate = 1000 / config.interval_ms
        n = max(min(int(config.duration * rate), most), 1)
        arrivals = np.arange(n) / rate
    else:
        rate = config.qps
        n = max(min(int(config.duration * rate), most), 1)
        gaps = np.random.default_rng(config.seed).exponential(1 / rate, n)
        arrivals = np.cumsum(gaps) - gaps[0]
    done = np.full(n, np.nan)
    remaining = np.full(n, per_query)
    refused = np.zeros(n, bool)  # queries with an image refused (a full queue, a 503)
    lock = threading.Lock()
    finished = threading.Event()
    left = [n]
    outstanding = threading.BoundedSemaphore(MAX_OUTSTANDING)  # images sent, not yet answered

    def complete(query: int, at: float) -> None:
        with lock:
            remaining[query] -= 1
            if remaining[query] == 0:  # a query ends with its last image
                done[query] = at
                left[0] -= 1
                if left[0] == 0:
                    finished.set()

    def answered(query: int, future: Future) -> None:
        outstanding.release()
        at = time.perf_counter() - start
        error = None if future.cancelled() else future.exception()
        if isinstance(error, Overloaded):
            refused[query] = True
        ok = not future.cancelled() and error is None
        complete(query, at if ok else np.inf)

    client = (
        HttpCaller(config.url, config.token, config.connections, images) if config.url else None
    )
    batcher = None
    if config.batching and not client:
        batcher = MicroBatcher(clf, config.max_batch, config.max_delay_us)
    pool = None if batcher or client else ThreadPoolExecutor(config.workers)
    for i in range(min(config.workers * 4, 256)):  # warm the callers' per-thread bindings
        client.call(i) if client else clf.predict_proba(images[i % len(images)])
    served_before = client.served_batches() if client else None
    start = time.perf_counter()
    stop_issuing = ISSUE_DURATIONS * config.duration
    try:
        for query, due in enumerate(arrivals):
            now = time.perf_counter() - start
            if now > stop_issuing:  # far behind the schedule: the rest are never sent
                break
            if due > now:
                time.sleep(due - now)
            for k in range(per_query):
                index = (query * per_query + k) % len(images)
                if not outstanding.acquire(blocking=False):
                    refused[query] = True
                    complete(query, np.inf)
                    continue
                try:
                    if client:
                        future = client.submit(index)
                    elif batcher:
                        future = batcher.submit(images[index])
                    else:
                        future = pool.submit(clf.predict_proba, images[index])
                except Overloaded:
                    outstanding.release()
                    refused[query] = True
                    complete(query, np.inf)
                    continue
                future.add_done_callback(lambda f, q=query: answered(q, f))
        finished.wait(timeout=max(config.duration, DRAIN_MIN_S))
    finally:  # what is still waiting is dropped, not answered: it counts as late
        if batcher:
            stats = batcher.stats()
            batcher.close(timeout=0)
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        if client:
            client.close()
    seconds = time.perf_counter() - start
    ok = np.isfinite(done)
    latency = (done - arrivals)[ok]
    if client:
        mean_batch = client.mean_batch_since(served_before)
    else:
        mean_batch = stats.mean_batch if batcher else 1.0
    return _result(
        latency,
        int(ok.sum()),
        per_query,
        seconds,
        round(rate, 1),
        config.batching,
        mean_batch,
        int(refused.sum()),
        config,
        late=n - int(ok.sum()) - int(refused.sum()),
    )


def served_settings(url: str, token: str | None) -> dict:
    """The server's own settings, from its /v1/model ({} from a server that does not say)."""
    caller = HttpCaller(url, token, 1, np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
    try:
        status, body = caller._request("GET", "/v1/model", None)
    finally:
        caller.close()
    try:
        served = json.loads(body).get("serving", {}) if status == 200 else {}
    except (ValueError, AttributeError):
        served = {}
    return served if isinstance(served, dict) else {}


class HttpCaller:
    """Requests to a `mnist-edge serve`, one .npy image each, on up to `connections`
    keep-alive connections; a 503 is Overloaded, as a full queue in process."""

    def __init__(self, url: str, token: str | None, connections: int, images: np.ndarray):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise InputError(f"--url: expected http://HOST:PORT, found {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.headers = {"Content-Type": "application/octet-stream"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.bodies = [_npy_bytes(image) for image in images]
        self.pool = ThreadPoolExecutor(connections, thread_name_prefix="mnist-edge-http")
        self.local = threading.local()

    def submit(self, index: int) -> Future:
        return self.pool.submit(self.call, index)

    def call(self, index: int) -> None:
        status, body = self._request("POST", "/v1/predict", self.bodies[index % len(self.bodies)])
        if status == 503:
            raise Overloaded(f"HTTP 503: {body[:200]!r}")
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")

    def served_batches(self) -> tuple[float, float]:
        """(images, calls) the server's batcher has made so far, from its /metrics."""
        _, text = self._request("GET", "/metrics", None)
        found = dict(re.findall(rb"^mnist_edge_batch_images_(sum|count) (\S+)$", text, re.M))
        return float(found.get(b"sum", 0)), float(found.get(b"count", 0))

    def mean_batch_since(self, before: tuple[float, float]) -> float:
        images, calls = (a - b for a, b in zip(self.served_batches(), before, strict=True))
        return images / calls if calls else 0.0

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=30
            )
        try:
            connection.request(method, path, body, self.headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as e:
            self.local.connection = None
            raise InputError(f"--url: {method} {path} failed ({e})") from None


def _npy_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, image[None])
    return buffer.getvalue()


def search_peak(holds_at: Callable[[float], bool], start: float, confirm: int = CONFIRM) -> float:
    """The highest rate at which `holds_at` is true: double from `start` until it fails, then
    bisect to within 5%, in at most MAX_PEAK_TRIALS rates (a start more than about 2^8 below
    the peak leaves the bisection short: the rate returned has held, but may be further off).
    A rate that fails is tried up to `confirm` more times before the search goes below it: one
    trial spoilt by a busy neighbour does not end the search far below the peak."""
    low, high, qps = 0.0, None, start
    for _ in range(MAX_PEAK_TRIALS):
        if any(holds_at(qps) for _ in range(1 + confirm)):  # stops at the first that holds
            low = qps
        else:
            high = qps
        if high is not None and high - low <= 0.05 * high:
            break
        qps = qps * 2 if high is None else (low + high) / 2
    return round(low, 1)


def _find_peak(clf, images, config, step) -> tuple[list[ScenarioResult], float]:
    """`search_peak` over server runs: a rate holds while p99 stays under the bound and nothing
    is refused (a backlog shows in the p99)."""
    bound_us = config.latency_bound_ms * 1000
    results = []

    def holds_at(qps: float) -> bool:
        step(f"server at {qps:,.0f} qps (peak search)")
        r = _open_loop(clf, images, replace(config, qps=qps), multi=False)
        r = replace(r, holds=r.p99_us <= bound_us and r.overloaded == 0)
        results.append(r)
        return r.holds

    peak = search_peak(holds_at, config.qps)
    return results, peak


def _disagreement(results: list[ScenarioResult]) -> str | None:
    """One line naming the rates whose trials disagreed (one held, another failed), if any."""
    by_rate: dict[float, list[ScenarioResult]] = {}
    for r in results:
        by_rate.setdefault(r.qps_target, []).append(r)
    torn = {q: rs for q, rs in by_rate.items() if len({r.holds for r in rs}) > 1}
    if not torn:
        return None
    parts = [
        f"{q:,.0f} qps (p99 {min(r.p99_us for r in rs) / 1000:.2f}-"
        f"{max(r.p99_us for r in rs) / 1000:.2f} ms over {len(rs)} trials)"
        for q, rs in sorted(torn.items())
    ]
    # Not blamed on the machine: a quiet one disagrees too near the peak (the busy warning,
    # from /proc/stat, says when others took the CPU).
    return f"trials at the same rate disagreed: {', '.join(parts)}"


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
