"""Two sessions in one process: does one disturb the other, and what stops it?

The fp32 and INT8 edge models on two threads (the fp32 one on onnxruntime's intra-op threads,
the INT8 one split across two single-thread sessions), timed four ways, each in a fresh
process: each alone; both in one process, one after the other (as compare.py measures its
engines); both in one process in alternating blocks of 10 calls; and, for each, with the
threads spinning between runs (onnxruntime's default), stopping as each run returns
(`SessionSettings(spin_between_runs=False)`), or not spinning at all. p50 per call, the median
over --repeats processes.

    python benchmarks/cohabit.py [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"fp32": ROOT / "exported/mnist_edge.onnx", "int8": ROOT / "exported/mnist_edge.int8.onnx"}
SPINNING = {  # label -> SessionSettings fields
    "spinning between runs": {"spinning": True, "spin_between_runs": True},
    "spinning stops after each run": {"spinning": True, "spin_between_runs": False},
    "no spinning": {"spinning": False, "spin_between_runs": False},
}
ARRANGEMENTS = ("alone", "one after the other", "alternating blocks of 10")
BLOCK = 10


def worker(names: list[str], batch: int, spin: dict, blocks: int, alternate: bool) -> dict:
    """p50 us per call of each named model, all open in this process."""
    sys.path.insert(0, str(ROOT))
    from runtime.session import Classifier
    from runtime.settings import SessionSettings

    images = np.random.default_rng(0).integers(0, 256, (batch, 28, 28), np.uint8)
    settings = SessionSettings(threads=2, **spin)
    models = {n: Classifier(MODELS[n], settings=settings) for n in names}
    for model in models.values():
        for _ in range(20):
            model.predict_proba(images)
    times = {n: [] for n in names}

    def run(name: str, calls: int) -> None:
        for _ in range(calls):
            start = time.perf_counter_ns()
            models[name].predict_proba(images)
            times[name].append(time.perf_counter_ns() - start)

    for _ in range(blocks if alternate else 1):
        for name in names:
            run(name, BLOCK if alternate else blocks * BLOCK)
    return {n: float(np.median(t)) / 1000 for n, t in times.items()}


def in_child(**kwargs) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(batch: int, spin: dict, blocks: int, repeats: int) -> dict:
    seen = {a: {n: [] for n in MODELS} for a in ARRANGEMENTS}
    for _ in range(repeats):
        for name in MODELS:
            alone = in_child(names=[name], batch=batch, spin=spin, blocks=blocks, alternate=False)
            seen["alone"][name].append(alone[name])
        for arrangement, alternate in ((ARRANGEMENTS[1], False), (ARRANGEMENTS[2], True)):
            both = in_child(
                names=list(MODELS), batch=batch, spin=spin, blocks=blocks, alternate=alternate
            )
            for name in MODELS:
                seen[arrangement][name].append(both[name])
    return {a: {n: round(float(np.median(t)), 1) for n, t in v.items()} for a, v in seen.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(**json.loads(args.worker))))
        return 0
    rows = []
    print("p50 us per call, two threads; fp32 / INT8 and their ratio")
    for batch, blocks in ((256, 30), (1, 300)):
        for label, spin in SPINNING.items():
            for arrangement, p50 in measure(batch, spin, blocks, args.repeats).items():
                rows.append({"batch": batch, "spinning": label, "arrangement": arrangement, **p50})
                ratio = p50["fp32"] / p50["int8"]
                print(
                    f"batch {batch:3d}  {label:30s} {arrangement:25s} fp32 {p50['fp32']:7.1f}  "
                    f"int8 {p50['int8']:7.1f}  {ratio:5.2f}x",
                    flush=True,
                )
    if args.json:
        result = {"threads": 2, "repeats": args.repeats, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
