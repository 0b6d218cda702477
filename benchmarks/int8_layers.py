"""What each layer's INT8 costs in probability precision, and what it buys in speed.

Quantizes the fp32 model as `quantize --fp32-softmax` does (every layer INT8, softmax in float),
then once with each layer with weights kept in fp32, then once with only that layer in INT8.
For each file: the share of test rows whose probabilities all lie within 0.01 of fp32's (#15
asks 99.9%), the 99.9th percentile and the largest of each row's max |p_int8 - p_fp32|, top-1
agreement, accuracy, and p50 latency on one thread at batch 1 and 256 (bare onnxruntime
sessions, one thread each, so none spins; files timed in turn, rounds interleaved).

    python benchmarks/int8_layers.py [--model exported/mnist_edge.onnx] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnxruntime as ort  # noqa: E402
from measure import call_p50_us  # noqa: E402

from runtime.mnist import load_split  # noqa: E402
from runtime.parity import ROW_TOLERANCE, compare  # noqa: E402
from runtime.session import Classifier  # noqa: E402
from train.quantize import QuantizeConfig, prepare, quantizable_nodes, quantize_file  # noqa: E402


def variants(layers: list[str]) -> dict[str, tuple[str, ...]]:
    """Label -> the layers kept in fp32."""
    out = {"all INT8": ()}
    out.update({f"{layer} in fp32": (layer,) for layer in layers})
    if len(layers) > 1:
        out.update({f"only {x} INT8": tuple(y for y in layers if y != x) for x in layers})
    return out


def precision(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict:
    report = compare(reference, candidate, labels)
    row = np.abs(reference.astype(np.float64) - candidate).max(axis=1)
    return {
        "rows_within": report.rows_within,
        "p999_abs_diff": round(float(np.quantile(row, 0.999)), 4),
        "max_abs_diff": round(report.max_abs_diff, 4),
        "agreement": report.agreement,
        "accuracy": report.candidate_accuracy,
    }


def latency(files: dict[str, Path], images: np.ndarray, rounds: int, calls: int) -> dict:
    """p50 us per call at batch 1 and 256, one thread: the median over interleaved rounds."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {k: ort.InferenceSession(str(p), options) for k, p in files.items()}
    feeds = {}
    for k, p in files.items():  # each file's own input layout, its Classifier closed before timing
        with Classifier(p) as clf:
            feeds[k] = {b: clf.contract.feed(images[:b]) for b in (1, 256)}
    seen = {(k, b): [] for k in files for b in (1, 256)}
    for _ in range(rounds):
        for k, s in sessions.items():
            name = s.get_inputs()[0].name
            for b, n in ((1, calls * 20), (256, calls)):
                seen[k, b].append(call_p50_us(s, {name: feeds[k][b]}, n))
    return {
        k: {f"b{b}_us": round(float(np.median(seen[k, b])), 1) for b in (1, 256)} for k in files
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "exported" / "mnist_edge.onnx")
    parser.add_argument("--data", type=Path, default=None, help="MNIST folder (or MNIST_DIR)")
    parser.add_argument("--method", default="minmax", help="calibration method, as quantize's")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100, help="batch-256 calls a round")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    config = QuantizeConfig(method=args.method, fp32_softmax=True)
    test = load_split("test", args.data)
    with tempfile.TemporaryDirectory() as tmp:
        layers = quantizable_nodes(prepare(args.model, Path(tmp) / "prepared.onnx", config)[0])
        with Classifier(args.model) as fp32:
            reference = fp32.predict_proba(test.images)
        files, rows = {"fp32": args.model}, {"fp32": {"kept_fp32": layers}}
        for i, (label, kept) in enumerate(variants(layers).items()):
            files[label] = Path(tmp) / f"{i}.onnx"
            cfg = dataclasses.replace(config, fp32_nodes=kept)
            quantize_file(args.model, files[label], cfg, args.data)
            with Classifier(files[label]) as int8:
                probs = int8.predict_proba(test.images)
            rows[label] = {"kept_fp32": list(kept), **precision(reference, probs, test.labels)}
        speed = latency(files, test.images, args.rounds, args.calls)
    print(f"{args.model.name}, {args.method} calibration: rows within {ROW_TOLERANCE} of fp32 "
          "(asked 99.9%); p50 on one thread")  # fmt: skip
    print(f"{'':56s} {'within':>8s} {'p99.9':>7s} {'max':>6s} {'agree':>8s} {'acc':>7s} "
          f"{'b1 us':>7s} {'b256 us':>8s}")  # fmt: skip
    for label, row in rows.items():
        row.update(speed[label])
        figures = (
            f"{row['rows_within']:8.2%} {row['p999_abs_diff']:7.4f} {row['max_abs_diff']:6.3f} "
            f"{row['agreement']:8.2%} {row['accuracy']:7.2%}"
            if "rows_within" in row
            else " " * 41
        )
        print(f"{label:56s} {figures} {row['b1_us']:7.1f} {row['b256_us']:8.0f}")
    if args.json:
        result = {"model": args.model.name, "method": args.method, "tolerance": ROW_TOLERANCE}
        result["files"] = rows
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
