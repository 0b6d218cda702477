"""Cross-check `bench --scenario server --find-peak` against MLCommons LoadGen, in one run.

LoadGen (the mlcommons-loadgen wheel, x86 only: `pip install '.[loadgen]'`) drives the same
Classifier, through the same micro-batcher, in its Server scenario: Poisson arrivals at a
target rate, VALID when the 99th percentile latency stays under the bound. Its peak is found
the way ours is (double, then bisect to 5%), each trial a PerformanceOnly run; the two peaks
are printed side by side and written to benchmarks/results/loadgen.json.

Both harnesses run in the model's own Python process, so their own per-query cost (issuing,
completing, the GIL they share with the batcher) counts against the model. The same two
searches are then run with a model that answers at no cost, which measures the harnesses alone.
Our SUT completes each batcher call's queries in one QuerySamplesComplete, as MLPerf SUTs do:
one call per query (a Python list, a response object, a GIL release and re-acquire each) was
measured to cost LoadGen's harness its p99 at 32,000 qps on its own.

    python benchmarks/loadgen.py                   # p99 <= 2 ms, batching on
    python benchmarks/loadgen.py --no-batching --bound-ms 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.batcher import MicroBatcher  # noqa: E402
from runtime.scenarios import ScenarioConfig, run_scenario, search_peak  # noqa: E402
from runtime.session import Classifier  # noqa: E402
from runtime.settings import cpu_count  # noqa: E402

IMAGES = 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--bound-ms", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per trial")
    parser.add_argument("--batching", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--start-qps", type=float, default=2000.0)
    parser.add_argument("--cpu-qps", type=float, default=16000.0, help="rate of the CPU check")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/loadgen.json")
    args = parser.parse_args()
    try:
        import mlperf_loadgen as lg
    except ImportError:
        sys.exit("error: mlperf_loadgen not installed: pip install '.[loadgen]' (x86-64 only)")

    images = np.random.default_rng(0).integers(0, 256, (IMAGES, 28, 28), dtype=np.uint8)
    with Classifier(args.model) as clf:
        summary = {"model": str(clf.path), "bound_ms": args.bound_ms, "batching": args.batching}
        summary["with_model"] = _compare(lg, clf, images, args, "the model")
    null = NullClassifier()
    alone = _compare(lg, null, images, args, "a model that costs nothing")
    alone["cpu_us_per_query"] = cpu = _cpu_per_query(lg, null, images, args)
    summary["harnesses_alone"] = alone
    print(f"CPU per query at {args.cpu_qps:,.0f} qps, no model: mnist-edge {cpu['mnist_edge']} us,"
          f" LoadGen {cpu['loadgen']} us")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


class NullClassifier:
    """Answers every image at no cost: what is left to measure is the harness."""

    path = "none (answers at no cost)"

    def proba_of_images(self, images: np.ndarray) -> np.ndarray:
        return np.zeros((len(images), 10), np.float32)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return np.zeros((1, 10), np.float32)


def _compare(lg, clf, images, args, what: str) -> dict:
    config = ScenarioConfig(
        "server", duration=args.duration, qps=args.start_qps, find_peak=True,
        latency_bound_ms=args.bound_ms, batching=args.batching,
    )  # fmt: skip
    ours = run_scenario(clf, config)
    trials = []
    theirs = search_peak(lambda q: _loadgen_trial(lg, clf, images, q, args, trials), args.start_qps)
    ratio = round(ours.peak_qps / theirs, 3) if theirs else None
    print(f"{what}: peak qps at p99 <= {args.bound_ms:g} ms, batching"
          f" {'on' if args.batching else 'off'}: mnist-edge {ours.peak_qps:,.0f},"
          f" LoadGen {theirs:,.0f} ({ratio}x)")  # fmt: skip
    return {
        "mnist_edge_peak_qps": ours.peak_qps,
        "loadgen_peak_qps": theirs,
        "ratio": ratio,
        "mnist_edge_trials": [{"qps": r.qps_target, "p99_us": r.p99_us} for r in ours.results],
        "loadgen_trials": trials,
    }


def _cpu_per_query(lg, clf, images, args) -> dict:
    """Process CPU time per query of each harness at one rate both sustain."""
    config = ScenarioConfig(
        "server", duration=args.duration, qps=args.cpu_qps, batching=args.batching
    )
    before = os.times()
    ours = run_scenario(clf, config).results[0]
    cpu = {"mnist_edge": _cpu_us(before, ours.queries)}
    trials = []
    before = os.times()
    _loadgen_trial(lg, clf, images, args.cpu_qps, args, trials)
    cpu["loadgen"] = _cpu_us(before, trials[0]["queries"])
    return cpu


def _cpu_us(before, queries: int) -> float:
    now = os.times()
    seconds = now.user - before.user + now.system - before.system
    return round(seconds / queries * 1e6, 1)


def _loadgen_trial(lg, clf, images, qps, args, trials) -> bool:
    issued = [0]
    answered = []  # this call's sample ids, filled and emptied on the batcher's thread

    def complete_call(_images: int) -> None:
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in answered])
        answered.clear()

    # LoadGen has no refusal: an unbounded queue, so that a backlog shows as latency
    batcher = (
        MicroBatcher(clf, 64, 200.0, max_queue=1 << 30, on_call=complete_call)
        if args.batching
        else None
    )
    pool = None if args.batching else ThreadPoolExecutor(cpu_count())

    def done(sample_id, future):
        if threading.current_thread().name == "mnist-edge-batcher":
            answered.append(sample_id)  # completed with its call's others, in complete_call
        else:  # answered before its callback was added: complete it here, alone
            lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, 0, 0)])

    def issue(samples):
        issued[0] += len(samples)
        for s in samples:
            image = images[s.index]
            future = batcher.submit(image) if batcher else pool.submit(clf.predict_proba, image)
            future.add_done_callback(lambda f, i=s.id: done(i, f))

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = qps
    settings.server_target_latency_ns = int(args.bound_ms * 1e6)
    settings.server_target_latency_percentile = 0.99
    settings.min_duration_ms = int(args.duration * 1000)
    settings.max_duration_ms = int(args.duration * 4000)
    settings.min_query_count = 100
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(IMAGES, IMAGES, lambda _: None, lambda _: None)
    with tempfile.TemporaryDirectory() as out:
        log = lg.LogSettings()
        log.log_output.outdir = out
        log.log_output.copy_summary_to_stdout = False
        start = time.perf_counter()
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
        seconds = time.perf_counter() - start
        summary = (Path(out) / "mlperf_log_summary.txt").read_text()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    if batcher:
        batcher.close()
    if pool:
        pool.shutdown()
    p99 = float(re.search(r"99.00 percentile latency \(ns\)\s*:\s*(\d+)", summary).group(1))
    valid = "Result is : VALID" in summary
    trials.append({"qps": qps, "p99_us": round(p99 / 1000, 1), "valid": valid,
                   "seconds": round(seconds, 1), "queries": issued[0]})  # fmt: skip
    return valid


if __name__ == "__main__":
    sys.exit(main())
