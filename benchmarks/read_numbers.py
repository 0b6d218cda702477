"""Handwritten numbers, read: `mnist-edge read` on numbers composed from MNIST *test* digits
(never seen in training), by kind and length.

Each number is 1 to 8 digits drawn at random from the test set, each cropped to its ink,
scaled 0.85-1.15x, moved up or down by up to a tenth of its height (baseline drift), and set
on one line in one of three kinds: separated (gaps of 0.15-0.6 of a digit's height), touching
(each digit moved left until its ink meets the last one's), and overlapping (then 1-3 pixels
further, on MNIST's 20-pixel digits). Numbers are read as clean scans (dark on white, 150
pixels tall) and, with --photos, photographed (benchmarks/photos.py: paper, shadow, blur; the
digits keep their own strokes, where a single digit's photo redraws it with a pen).

Per kind and length: whole-number accuracy, digit accuracy (digits in the right place), digits
missed and invented, and the time to read one (decode excluded: the picture is in memory).

    python benchmarks/read_numbers.py [--per 40] [--lengths 1,3,5,8] [--photos] [--json FILE]
                                      [--seed N]
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from photos import photograph  # noqa: E402

from runtime.errors import InputError  # noqa: E402
from runtime.mnist import load_split  # noqa: E402
from runtime.read import read_number  # noqa: E402

KINDS = ("separated", "touching", "overlapping")
PHOTO_CONDITIONS = ("paper", "shadow", "blur")
SCAN_HEIGHT = 150


def compose(digits: list[np.ndarray], kind: str, rng: np.random.Generator) -> np.ndarray:
    """MNIST digits (uint8 28x28) -> one line of them, ink as float in [0, 1], 1 = ink."""
    parts = []
    for d in digits:
        rows, cols = np.nonzero(d)
        crop = Image.fromarray(d[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
        s = rng.uniform(0.85, 1.15)
        crop = crop.resize((max(1, round(crop.width * s)), max(1, round(crop.height * s))),
                           Image.Resampling.LANCZOS)  # fmt: skip
        if rng.random() < 0.25:
            crop = crop.filter(ImageFilter.MaxFilter(3))  # a thicker pen
        parts.append((np.asarray(crop, np.float64) / 255, int(rng.uniform(-2, 2))))
    height = max(p.shape[0] for p, _ in parts) + 16
    width = sum(p.shape[1] for p, _ in parts) + 20 * len(parts) + 16
    line = np.zeros((height, width))
    x = 8
    for n, (part, dy) in enumerate(parts):
        top = (height - part.shape[0]) // 2 + dy
        if n and kind != "separated":
            x = _touching(line, part, top, x)
            if kind == "overlapping":
                x -= int(rng.integers(1, 4))
        region = line[top : top + part.shape[0], x : x + part.shape[1]]
        np.maximum(region, part, out=region)
        gap = rng.uniform(0.15, 0.6) * 20 if kind == "separated" else 0
        x += part.shape[1] + round(gap)
    cols = np.nonzero(line.max(axis=0) > 0)[0]
    return line[:, : cols.max() + 9]


def _touching(line: np.ndarray, part: np.ndarray, top: int, x: int) -> int:
    """The leftmost x at or before `x` where `part` does not yet overlap the ink already on
    `line` but touches it (its ink within one pixel of the line's)."""
    ink = part > 0.3
    grown = np.pad(ink, 1)
    grown = grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:] | ink
    while x > 0:
        region = line[top : top + part.shape[0], x - 1 : x - 1 + part.shape[1]] > 0.3
        if (region & ink).any():
            return x
        if (region & grown).any():
            return x - 1
        x -= 1
    return x


def number_set(per: int, lengths: list[int], data: str | None, seed: int = 0) -> list[dict]:
    test = load_split("test", data)
    rng = np.random.default_rng(seed)
    numbers = []
    for kind in KINDS:
        for length in lengths:
            for _ in range(per):
                picks = rng.integers(0, len(test.labels), length)
                text = "".join(str(int(test.labels[i])) for i in picks)
                ink = compose([test.images[i] for i in picks], kind, rng)
                numbers.append({"kind": kind, "length": length, "text": text, "ink": ink})
    return numbers


def scan(ink: np.ndarray) -> np.ndarray:
    """Dark ink on white paper, SCAN_HEIGHT pixels tall, as float in [0, 1]."""
    size = (round(ink.shape[1] * SCAN_HEIGHT / ink.shape[0]), SCAN_HEIGHT)
    big = Image.fromarray(np.uint8(ink * 255)).resize(size, Image.Resampling.BICUBIC)
    return 1 - np.asarray(big, np.float64) / 255


def score(truth: str, read: str) -> dict:
    matched = sum(b.size for b in difflib.SequenceMatcher(None, truth, read).get_matching_blocks())
    return {
        "whole": truth == read,
        "digits_right": matched,
        "missed": max(0, len(truth) - len(read)),
        "invented": max(0, len(read) - len(truth)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per", type=int, default=40, help="numbers per kind and length")
    parser.add_argument("--lengths", default="1,3,5,8")
    parser.add_argument("--photos", action="store_true", help="also read them photographed")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--data", default=os.environ.get("MNIST_DIR"), help="MNIST folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--seed", type=int, default=0, help="which numbers; tune on others than the reported 0"
    )
    args = parser.parse_args()
    from runtime.session import Classifier

    lengths = [int(n) for n in args.lengths.split(",")]
    numbers = number_set(args.per, lengths, args.data, args.seed)
    looks = [("scan", None)] + ([("photo", c) for c in PHOTO_CONDITIONS] if args.photos else [])
    rows = []
    with Classifier(args.model, threads=1) as clf:
        for look, condition in looks:
            results = []
            for n, number in enumerate(numbers):
                if look == "scan":
                    gray = scan(number["ink"])
                else:
                    gray = photograph(number["ink"], condition, seed=n, redraw=False) / 255
                start = time.perf_counter()
                try:
                    text = read_number(clf, gray).text()
                except InputError:
                    text = ""
                seconds = time.perf_counter() - start
                results.append({**score(number["text"], text), "seconds": seconds,
                                "kind": number["kind"], "length": number["length"]})  # fmt: skip
            name = look if condition is None else f"photo/{condition}"
            rows += _table(name, results, numbers)
    if args.json:
        args.json.write_text(json.dumps({"per": args.per, "results": rows}, indent=2) + "\n")
    return 0


def _table(name: str, results: list[dict], numbers: list[dict]) -> list[dict]:
    print(f"{name}: kind, length, whole numbers, digits, missed, invented, ms per number (p50)")
    rows = []
    for kind in KINDS:
        for length in sorted({r["length"] for r in results}):
            got = [r for r in results if r["kind"] == kind and r["length"] == length]
            digits = length * len(got)
            row = {
                "look": name, "kind": kind, "length": length, "numbers": len(got),
                "whole": round(sum(r["whole"] for r in got) / len(got), 4),
                "digits": round(sum(r["digits_right"] for r in got) / digits, 4),
                "missed": sum(r["missed"] for r in got),
                "invented": sum(r["invented"] for r in got),
                "ms_p50": round(statistics.median(r["seconds"] for r in got) * 1000, 2),
            }  # fmt: skip
            rows.append(row)
            print(f"  {kind:12} {length}  {row['whole']:7.1%} {row['digits']:7.1%} "
                  f"{row['missed']:4d} {row['invented']:4d} {row['ms_p50']:7.2f}")  # fmt: skip
    return rows


if __name__ == "__main__":
    sys.exit(main())
