"""The serving figures in one run: the scenarios in process and over HTTP, with and without
batching, side by side. Writes benchmarks/results/serving.json and serving.png (p99 latency
against offered load).

    python benchmarks/serving.py            # about 3 minutes; needs pip install '.[serve,bench]'

- server: the peak rate whose p99 stays under 2 ms, and p99 at a ladder of offered rates,
  through the micro-batcher and through worker threads with no batching;
- multi-stream: 8 images every 1 ms;
- HTTP: `mnist-edge serve` on 127.0.0.1 driven by `bench --url` (p99 bound 20 ms), batching on
  (the default) and off (--max-batch 1); and what HTTP costs a request, single-stream, against
  the same call in process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.scenarios import HttpCaller, ScenarioConfig, run_scenario  # noqa: E402
from runtime.session import Classifier  # noqa: E402

LADDER = (2000, 4000, 8000, 12000, 16000, 20000, 24000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--bound-ms", type=float, default=2.0)
    # HTTP client and server share these 2 cores: a 2 ms p99 is out of reach at any rate
    parser.add_argument("--http-bound-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    base = ScenarioConfig("server", duration=args.duration, latency_bound_ms=args.bound_ms)
    report: dict = {
        "bound_ms": args.bound_ms,
        "http_bound_ms": args.http_bound_ms,
        "duration_s": args.duration,
    }
    with Classifier() as clf:
        report["model"] = str(clf.path)
        for batching in (True, False):
            key = "batching" if batching else "no_batching"
            peak = run_scenario(clf, replace(base, batching=batching, find_peak=True, qps=2000))
            report[f"in_process_peak_qps_{key}"] = peak.peak_qps
            report[f"ladder_{key}"] = [
                _row(run_scenario(clf, replace(base, batching=batching, qps=q)).results[0])
                for q in LADDER
            ]
            print(f"in process, {key}: peak {peak.peak_qps:,.0f} qps at p99 <= {args.bound_ms} ms")
        multi = ScenarioConfig("multi-stream", duration=args.duration, max_batch=8)
        report["multi_stream_8_per_ms"] = _row(run_scenario(clf, multi).results[0])
        single = run_scenario(clf, ScenarioConfig("single-stream", duration=args.duration))
        report["single_stream_in_process"] = _row(single.results[0])
    for batching, flags in ((True, []), (False, ["--max-batch", "1"])):
        key = "batching" if batching else "no_batching"
        with _server(flags) as url:
            http = replace(base, url=url, find_peak=True, qps=500, batching=batching)
            peak = run_scenario(None, replace(http, latency_bound_ms=args.http_bound_ms))
            report[f"http_peak_qps_{key}"] = peak.peak_qps
            report[f"http_trials_{key}"] = [_row(r) for r in peak.results]
            if batching:
                report["single_stream_http_p50_us"] = _http_single_stream(url, args.duration)
        print(f"HTTP, {key}: peak {peak.peak_qps:,.0f} qps at p99 <= {args.http_bound_ms} ms")
    inproc = report["single_stream_in_process"]["p50_us"]
    report["http_cost_per_request_us"] = round(report["single_stream_http_p50_us"] - inproc, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, args.out / "serving.png", args.bound_ms)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list | dict)}))
    return 0


def _row(r) -> dict:
    keep = ("qps_target", "qps_achieved", "p50_us", "p90_us", "p99_us", "mean_batch", "overloaded")
    return {k: v for k, v in asdict(r).items() if k in keep}


class _server:
    """`mnist-edge serve` on a free loopback port for the length of a with block."""

    def __init__(self, flags: list[str]):
        self.command = [sys.executable, "-m", "runtime.cli", "serve", "--port", "0", *flags]

    def __enter__(self) -> str:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.process.stdout.readline()
        port = line.split("http://127.0.0.1:")[1].split("/")[0]
        time.sleep(0.5)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _http_single_stream(url: str, duration: float) -> float:
    import numpy as np

    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    client = HttpCaller(url, None, 1, images)
    times, end = [], time.perf_counter() + duration
    while time.perf_counter() < end:
        t = time.perf_counter()
        client.call(len(times))
        times.append(time.perf_counter() - t)
    client.close()
    return round(float(np.percentile(np.array(times) * 1e6, 50)), 1)


def _plot(report: dict, path: Path, bound_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("batching", "micro-batcher"), ("no_batching", "no batching")):
        rows = report[f"ladder_{key}"]
        ax.plot(
            [r["qps_target"] for r in rows], [r["p99_us"] / 1000 for r in rows], "o-", label=label
        )
    ax.axhline(bound_ms, color="grey", linestyle="--", label=f"bound {bound_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, queries per second (Poisson)")
    ax.set_ylabel("p99 latency, ms")
    ax.set_title("server scenario in process, default model, 2 cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
