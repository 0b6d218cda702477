"""Cross-check `bench --scenario server --find-peak` against MLCommons LoadGen, in one run.

LoadGen (the mlcommons-loadgen wheel, x86 only: `pip install '.[loadgen]'`) drives the same
Classifier, through the same micro-batcher, in its Server scenario: Poisson arrivals at a
target rate, VALID when the 99th percentile latency stays under the bound. Its peak is found
the way ours is (double, then bisect to 5%), each trial a PerformanceOnly run; the two peaks
are printed side by side and written to benchmarks/results/loadgen.json.

    python benchmarks/loadgen.py                   # p99 <= 2 ms, batching on
    python benchmarks/loadgen.py --no-batching --bound-ms 2
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
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
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/loadgen.json")
    args = parser.parse_args()
    try:
        import mlperf_loadgen as lg
    except ImportError:
        sys.exit("error: mlperf_loadgen not installed: pip install '.[loadgen]' (x86-64 only)")

    images = np.random.default_rng(0).integers(0, 256, (IMAGES, 28, 28), dtype=np.uint8)
    with Classifier(args.model) as clf:
        config = ScenarioConfig(
            "server", duration=args.duration, qps=args.start_qps, find_peak=True,
            latency_bound_ms=args.bound_ms, batching=args.batching,
        )  # fmt: skip
        ours = run_scenario(clf, config)
        trials = []
        theirs = search_peak(
            lambda q: _loadgen_trial(lg, clf, images, q, args, trials), args.start_qps
        )
    summary = {
        "model": str(clf.path),
        "bound_ms": args.bound_ms,
        "batching": args.batching,
        "mnist_edge_peak_qps": ours.peak_qps,
        "loadgen_peak_qps": theirs,
        "ratio": round(ours.peak_qps / theirs, 3) if theirs else None,
        "mnist_edge_trials": [{"qps": r.qps_target, "p99_us": r.p99_us} for r in ours.results],
        "loadgen_trials": trials,
    }
    print(f"peak qps at p99 <= {args.bound_ms:g} ms, batching {'on' if args.batching else 'off'}:"
          f" mnist-edge {ours.peak_qps:,.0f}, LoadGen {theirs:,.0f}"
          f" ({summary['ratio']:.2f}x)")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _loadgen_trial(lg, clf, images, qps, args, trials) -> bool:
    batcher = MicroBatcher(clf, 64, 200.0) if args.batching else None
    pool = None if args.batching else ThreadPoolExecutor(cpu_count())

    def done(sample_id, future):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, 0, 0)])

    def issue(samples):
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
                   "seconds": round(seconds, 1)})  # fmt: skip
    return valid


if __name__ == "__main__":
    sys.exit(main())
