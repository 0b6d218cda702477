"""`predict --engine ray` beside one process, on this machine: throughput with 1 and 2 workers,
and by shard size. Writes benchmarks/results/ray.json.

    python benchmarks/ray_scale.py          # about a minute; needs pip install '.[scale]'

The input is the 60,000 MNIST training images as a raw IDX file (shards seek into it), copied
--copies times. Ray's figures include starting the actors (each loads onnxruntime and the
model), not starting Ray itself; the single-process figure reads the same file through the
same reader with the same model, one thread and all threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.distributed import SHARD_IMAGES, predict_on_ray  # noqa: E402
from runtime.inputs import iter_inputs  # noqa: E402
from runtime.mnist import load_split  # noqa: E402
from runtime.session import Classifier  # noqa: E402
from runtime.settings import SessionSettings  # noqa: E402
from tests.conftest import write_idx  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=2, help="60,000 images each")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/ray.json")
    args = parser.parse_args()
    images = np.concatenate([load_split("train").images] * args.copies)
    report: dict = {"images": len(images)}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / "archive-idx3-ubyte", images)
        for name, threads in (("single_process_1_thread", 1), ("single_process_all_threads", None)):
            report[name] = _single(path, threads)
            print(f"{name}: {report[name]:,.0f} images/s")
        logging.disable(logging.WARNING)
        runs = [(1, SHARD_IMAGES), (2, SHARD_IMAGES), (2, 1024), (2, 16384)]
        report["ray"] = []
        for workers, shard in runs:
            out = Path(tmp) / "scores.jsonl"
            run = predict_on_ray([path], out, workers=workers, shard_images=shard)
            row = {"workers": workers, "shard_images": shard, "seconds": run.seconds,
                   "images_per_s": round(run.images_per_s, 1)}  # fmt: skip
            report["ray"].append(row)
            print(f"ray, {workers} workers, shards of {shard}: {run.images_per_s:,.0f} images/s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _single(path: Path, threads: int | None) -> float:
    start = time.perf_counter()
    with Classifier(settings=SessionSettings(threads=threads)) as clf:
        count = sum(len(clf.proba_of_images(batch)) for _, batch in iter_inputs([path], 4096))
    return round(count / (time.perf_counter() - start), 1)


if __name__ == "__main__":
    sys.exit(main())
