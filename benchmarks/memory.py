"""Peak memory of `predict` and `evaluate` on the 60,000-image training file, by batch size.

Streaming keeps the peak bounded by the batch, not the file: compare with loading the whole
split first. Needs the real MNIST files (--data or $MNIST_DIR).

    python benchmarks/memory.py [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from datetime import date
from pathlib import Path

from measure import run_measured

from runtime.files import write_json
from runtime.mnist import IDX_NAMES, find_data

ROOT = Path(__file__).resolve().parent.parent
WHOLE = """
import sys
from runtime import Classifier
from runtime.mnist import load_split
split = load_split("train", sys.argv[1])
Classifier().predict_proba(split.images)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    data = find_data(args.data or os.environ.get("MNIST_DIR"))
    images = next(
        data / (IDX_NAMES["train"][0] + s)
        for s in (".gz", "")
        if (data / (IDX_NAMES["train"][0] + s)).exists()
    )
    cli = shutil.which("mnist-edge") or str(Path(sys.executable).parent / "mnist-edge")

    rows = []
    for batch in (64, 256, 1024, 4096):
        for command, argv in (
            ("predict", [cli, "predict", str(images), "--json", "--batch-size", str(batch)]),
            (
                "evaluate",
                [
                    cli,
                    "evaluate",
                    "--split",
                    "train",
                    "--data",
                    str(data),
                    "--batch-size",
                    str(batch),
                ],
            ),
        ):
            seconds, peak = run_measured(argv)
            rows.append(
                {
                    "command": command,
                    "batch_size": batch,
                    "peak_rss_mb": round(peak, 1),
                    "seconds": round(seconds, 2),
                }
            )
    seconds, peak = run_measured([sys.executable, "-c", WHOLE, str(data)])
    rows.append(
        {
            "command": "whole split in memory",
            "batch_size": 60000,
            "peak_rss_mb": round(peak, 1),
            "seconds": round(seconds, 2),
        }
    )

    print(f"{'what':<22} {'batch':>6} {'peak RSS MB':>12} {'seconds':>8}")
    for r in rows:
        print(
            f"{r['command']:<22} {r['batch_size']:>6} {r['peak_rss_mb']:>12.1f} "
            f"{r['seconds']:>8.2f}"
        )
    out = ROOT / "benchmarks" / "results" / f"{date.today()}-{platform.node()}-memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"file": str(images), "images": 60000, "results": rows})
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
