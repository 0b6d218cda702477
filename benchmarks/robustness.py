"""Digits that are not MNIST: how well each model reads them, side by side.

MNIST accuracy says little about digits written elsewhere. This renders every digit in every
TrueType font installed here (DejaVu and Liberation on Debian: sans, serif, mono, bold, italic,
condensed), dark on light at 120 px, turned 20 degrees either way or not, each four ways: as
drawn, with a stroke three times as thick, with a hairline stroke, and under a seeded elastic
distortion (Simard et al. 2003: a smoothed random displacement field); and it adds the ten
mouse-drawn digits of examples/digits/. Every image goes through the runtime's own
preprocessing (`mnist_style`: ink box, 20x20 fit, centre of mass), as `predict` does. Accuracy
is printed per model; the Keras models run in Keras, the ONNX ones in the runtime.

    python benchmarks/robustness.py [--models exported/mnist_edge.onnx ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.preprocess import load_image, mnist_style  # noqa: E402

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
ANGLES = (-20, 0, 20)
STYLES = ("plain", "thick", "thin", "elastic")
DEFAULT_MODELS = (
    "exported/mnist_edge.int8.onnx",
    "exported/mnist_edge.onnx",
    "exported/mnist_cnn.onnx",
    "exported/mnist_mlp.onnx",
    "benchmarks/anchor/mnist_convnet.keras",
)


def fonts() -> list[Path]:
    return sorted({p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*.ttf")})


def render(font: Path, digit: int, angle: float, style: str, rng: np.random.Generator):
    """One digit, dark on light, as float grayscale in [0, 1]."""
    face = ImageFont.truetype(str(font), 120)
    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).text((100, 100), str(digit), font=face, fill=0, anchor="mm")
    if style == "thick":
        img = img.filter(ImageFilter.MinFilter(9))  # dark ink grows
    elif style == "thin":
        img = img.filter(ImageFilter.MaxFilter(5))  # and shrinks
    img = img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    gray = np.asarray(img, dtype=np.float64) / 255
    return _elastic(gray, rng) if style == "elastic" else gray


def _elastic(gray: np.ndarray, rng: np.random.Generator, alpha=240.0, sigma=12.0) -> np.ndarray:
    """Each pixel read from a place moved by a random field smoothed with a Gaussian."""
    h, w = gray.shape
    x = np.arange(-3 * int(sigma), 3 * int(sigma) + 1)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()

    def field() -> np.ndarray:
        f = rng.uniform(-1, 1, (h, w))
        f = np.apply_along_axis(np.convolve, 0, f, kernel, mode="same")
        return np.apply_along_axis(np.convolve, 1, f, kernel, mode="same") * alpha

    rows, cols = np.mgrid[0:h, 0:w]
    r = np.clip(np.rint(rows + field()), 0, h - 1).astype(int)
    c = np.clip(np.rint(cols + field()), 0, w - 1).astype(int)
    return gray[r, c]


def digit_set(found: list[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels, sources = [], [], []
    rng = np.random.default_rng(0)
    for font in found:
        for digit in range(10):
            for angle in ANGLES:
                for style in STYLES:
                    images.append(mnist_style(render(font, digit, angle, style, rng)))
                    labels.append(digit)
                    sources.append(f"{font.stem}/{digit}/{angle:+d}/{style}")
    for path in sorted((ROOT / "examples" / "digits").glob("*.png")):
        images.append(load_image(path))
        labels.append(int(path.stem))
        sources.append(f"drawn/{path.name}")
    return np.stack(images), np.array(labels), sources


def predict(model: Path, images: np.ndarray) -> np.ndarray:
    if model.suffix == ".keras":
        import keras

        from runtime.preprocess import as_nhwc

        return keras.models.load_model(model).predict(as_nhwc(images), verbose=0).argmax(1)
    from runtime.session import Classifier

    with Classifier(model) as clf:
        return clf.predict(images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", type=Path, default=[Path(m) for m in DEFAULT_MODELS])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    found = fonts()
    images, labels, sources = digit_set(found)
    drawn = np.array([s.startswith("drawn/") for s in sources])
    if drawn.all():
        print("no TrueType fonts found: only the ten drawn digits are measured", file=sys.stderr)
    print(f"{len(images)} digits: {(~drawn).sum()} from {len(found)} fonts x 10 x "
          f"{len(ANGLES)} angles x {len(STYLES)} styles, {drawn.sum()} drawn")  # fmt: skip
    rows = []
    for model in args.models:
        path = model if model.is_absolute() else ROOT / model
        if not path.exists():
            print(f"{model}: not found, skipped", file=sys.stderr)
            continue
        hit = predict(path, images) == labels
        style = np.array([s.rsplit("/", 1)[-1] for s in sources])
        row = {
            "model": str(model),
            "accuracy": round(float(hit.mean()), 4),
            "fonts": round(float(hit[~drawn].mean()), 4) if (~drawn).any() else None,
            "by_style": {k: round(float(hit[style == k].mean()), 4) for k in STYLES},
            "drawn": f"{int(hit[drawn].sum())}/{int(drawn.sum())}",
            "missed": [s for s, h in zip(sources, hit, strict=True) if not h][:40],
        }
        rows.append(row)
        styles = "  ".join(f"{k} {v:.1%}" for k, v in row["by_style"].items())
        print(f"{row['accuracy']:7.2%}  {styles}  drawn {row['drawn']}  {model}")
    if args.json:
        args.json.write_text(json.dumps({"digits": len(images), "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
