"""How long an image file takes to become MNIST's 28x28, on one core: decoding (Pillow, the
file to grayscale at most 1,024 pixels on a side) apart from finding the digit and fitting it
(`runtime.ink.mnist_style`).

Files, written to a temporary folder: a 12 MP phone photo (4000x3000 JPEG, quality 90) and a
500x500 photo (PNG), both a digit in pen on paper under a gradient, a shadow and noise
(benchmarks/photos.py); a 500x500 drawing (black on white PNG); and a 28x28 MNIST digit (the
fast path). Each is timed over --repeat calls after a warm-up; the median is printed.

    python benchmarks/preprocess_speed.py [--repeat 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core: numpy's own loops are single-threaded anyway

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from photos import photograph  # noqa: E402

from runtime.images import decode  # noqa: E402
from runtime.ink import mnist_style  # noqa: E402

TARGETS_MS = {"12 MP photo (JPEG)": 60.0, "500x500 photo (PNG)": 5.0, "500x500 drawing (PNG)": 5.0}


def a_digit() -> np.ndarray:
    """A 7 drawn with a thick line on 28x28, float in [0, 1]: the ink the photos are made of."""
    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).line([(8, 7), (20, 7), (12, 22)], fill=255, width=3)
    return np.asarray(img, np.float64) / 255


def files(folder: Path) -> dict[str, Path]:
    photo = Image.fromarray(photograph(a_digit(), "all", seed=1))
    made = {
        "12 MP photo (JPEG)": (photo.resize((4000, 3000), Image.Resampling.BICUBIC), "jpg"),
        "500x500 photo (PNG)": (photo.resize((500, 500), Image.Resampling.BICUBIC), "png"),
    }
    drawing = Image.new("L", (500, 500), 255)
    font = ImageFont.load_default(size=360)
    ImageDraw.Draw(drawing).text((250, 250), "4", font=font, fill=0, anchor="mm")
    made["500x500 drawing (PNG)"] = (drawing, "png")
    made["28x28 MNIST-style (PNG)"] = (Image.fromarray(np.uint8(a_digit() * 255)), "png")
    paths = {}
    for n, (name, (img, ext)) in enumerate(made.items()):
        paths[name] = folder / f"{n}.{ext}"
        img.save(paths[name], quality=90) if ext == "jpg" else img.save(paths[name])
    return paths


def median_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rows = []
    print(f"{'file':26} {'size':>10} {'decode ms':>10} {'digit ms':>9} {'target':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in files(Path(tmp)).items():
            gray = decode(path, str(path))
            row = {
                "file": name,
                "size": "x".join(map(str, Image.open(path).size)),
                "bytes": path.stat().st_size,
                "decode_ms": round(median_ms(lambda p=path: decode(p, str(p)), args.repeat), 2),
                "digit_ms": round(median_ms(lambda g=gray: mnist_style(g), args.repeat), 2),
                "target_ms": TARGETS_MS.get(name),
            }
            rows.append(row)
            target = f"{row['target_ms']:g}" if row["target_ms"] else "-"
            print(f"{name:26} {row['size']:>10} {row['decode_ms']:10.2f} "
                  f"{row['digit_ms']:9.2f} {target:>8}")  # fmt: skip
    print("targets: for the 12 MP photo its digit (decode stated apart), for 500x500 both")
    if args.json:
        args.json.write_text(json.dumps({"repeat": args.repeat, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
