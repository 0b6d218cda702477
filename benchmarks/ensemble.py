"""Accuracy of several models and of their average (an ensemble of teachers) on MNIST's test
set, each through the runtime.

    python benchmarks/ensemble.py MODEL.onnx MODEL.onnx ... [--data DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.mnist import load_split  # noqa: E402
from runtime.session import Classifier  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", default=os.environ.get("MNIST_DIR"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    test = load_split("test", args.data)
    probs = []
    rows = []
    for path in args.models:
        with Classifier(path) as clf:
            probs.append(clf.predict_proba(test.images).astype(np.float64))
        accuracy = float((probs[-1].argmax(1) == test.labels).mean())
        rows.append({"model": str(path), "accuracy": accuracy})
        print(f"{accuracy:8.2%}  {path}")
    mean = np.mean(probs, axis=0)
    ensemble = float((mean.argmax(1) == test.labels).mean())
    print(f"{ensemble:8.2%}  the average of the {len(probs)}")
    if args.json:
        args.json.write_text(json.dumps({"models": rows, "ensemble": ensemble}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
