"""Digits that are not MNIST: how well each model reads them, side by side.

MNIST accuracy says little about digits written elsewhere. This renders every digit in every
TrueType font installed here (DejaVu and Liberation on Debian: sans, serif, mono, bold, italic,
condensed), dark on light at 120 px, turned 20 degrees either way or not, each four ways: as
drawn, with a stroke three times as thick, with a hairline stroke, and under a seeded elastic
distortion (Simard et al. 2003: a smoothed random displacement field); and it adds the ten
mouse-drawn digits of examples/digits/. Every image goes through the runtime's own
preprocessing (`mnist_style`: the digit's ink, 20x20 fit, centre of mass), as `predict` does.

Photos: the first --photos digits of MNIST's test set (written by people; the preprocessing was
tuned on digits from 5,000 on, never these) redrawn in pen on paper and photographed under each
condition of benchmarks/photos.py (gradient, shadow, grey sheet, ruled paper, hairline and
marker pens, ...). Each photo is read twice: "before" through the preprocessing every picture
got until #25 (ink against the border's median, `fit(plain_ink)`), "after" through today's.
Needs MNIST (--data or $MNIST_DIR); without it the photos are skipped with a line.

Accuracy is printed per model; the Keras models run in Keras, the ONNX ones in the runtime.
--examples writes contact sheets of photos the old path misread and of any today misreads.

    python benchmarks/robustness.py [--models exported/mnist_edge.onnx ...] [--photos 100]
        [--json FILE] [--examples DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from photos import CONDITIONS, photograph  # noqa: E402

from runtime.errors import DataError, InputError  # noqa: E402
from runtime.evaluate import Tally  # noqa: E402
from runtime.images import load_image  # noqa: E402
from runtime.ink import fit, mnist_style, plain_ink  # noqa: E402
from runtime.mnist import load_split  # noqa: E402

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
ANGLES = (-20, 0, 20)
STYLES = ("plain", "thick", "thin", "elastic")
THUMB_REDUCE = 6  # the photos' contact-sheet copies: 1200x900 -> 200x150
MAX_MISSED = 30
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


def photo_set(count: int, data: str | None) -> dict[str, np.ndarray]:
    """MNIST test digits 0..count-1 photographed under every condition, each read the old way
    and today's way; small copies of the photos are kept for the contact sheets."""
    split = load_split("test", data)
    before, after, thumbs, labels, conditions = [], [], [], [], []
    for i in range(count):
        ink = split.images[i].astype(np.float64) / 255
        for condition in CONDITIONS:
            photo = photograph(ink, condition, seed=i)
            gray = photo.astype(np.float64) / 255
            before.append(fit(plain_ink(gray)))
            after.append(_or_blank(gray))
            thumbs.append(np.asarray(Image.fromarray(photo).reduce(THUMB_REDUCE)))
            labels.append(int(split.labels[i]))
            conditions.append(condition)
        print(f"\rphotos: {i + 1}/{count} digits", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {
        "before": np.stack(before),
        "after": np.stack(after),
        "thumbs": np.stack(thumbs),
        "labels": np.array(labels),
        "conditions": np.array(conditions),
    }


def _or_blank(gray: np.ndarray) -> np.ndarray:
    try:
        return mnist_style(gray)
    except InputError:  # no digit found: a miss, shown as an empty field
        return np.zeros((28, 28), np.uint8)


def photo_rows(predicted: dict[str, np.ndarray], photos: dict[str, np.ndarray]) -> dict:
    cond = photos["conditions"]
    by = {}
    for condition in CONDITIONS:
        at = cond == condition
        by[condition] = {
            k: round(float((predicted[k][at] == photos["labels"][at]).mean()), 4)
            for k in ("before", "after")
        }
    return {
        "before": round(float((predicted["before"] == photos["labels"]).mean()), 4),
        "after": round(float((predicted["after"] == photos["labels"]).mean()), 4),
        "by_condition": by,
    }


def contact_sheet(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]) -> Image.Image:
    """One row per example: the photo (reduced), then what the old and today's preprocessing
    made of it, 28x28 shown at 4x, with a caption."""
    tw, th = rows[0][0].shape[1], rows[0][0].shape[0]
    big = 28 * 4
    height = max(th, big) + 16
    sheet = Image.new("L", (tw + 2 * big + 40, height * len(rows)), 255)
    draw = ImageDraw.Draw(sheet)
    for n, (thumb, old, new, caption) in enumerate(rows):
        y = n * height
        sheet.paste(Image.fromarray(thumb), (0, y))
        for k, digit in enumerate((old, new)):
            shown = Image.fromarray(digit).resize((big, big), Image.Resampling.NEAREST)
            sheet.paste(shown, (tw + 10 + k * (big + 10), y))
        draw.text((2, y + max(th, big) + 2), caption, fill=0)
    return sheet


def write_examples(folder: Path, photos: dict, predicted: dict) -> list[Path]:
    """fixed.png: per condition, the first photo the old preprocessing misread and today's
    reads; missed.png: photos today's preprocessing misreads (at most MAX_MISSED)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels, cond = photos["labels"], photos["conditions"]
    fixed, missed = [], []
    for condition in CONDITIONS:
        wrong_then = np.nonzero((cond == condition) & (predicted["before"] != labels)
                                & (predicted["after"] == labels))[0]  # fmt: skip
        if len(wrong_then):
            fixed.append(wrong_then[0])
    missed = np.nonzero(predicted["after"] != labels)[0][:MAX_MISSED]
    written = []
    for name, chosen in (("fixed.png", fixed), ("missed.png", missed)):
        if not len(chosen):
            continue
        rows = [
            (
                photos["thumbs"][i],
                photos["before"][i],
                photos["after"][i],
                f"{cond[i]}: a {labels[i]}, read {predicted['before'][i]} before, "
                f"{predicted['after'][i]} after",
            )
            for i in chosen
        ]
        contact_sheet(rows).save(folder / name, optimize=True)
        written.append(folder / name)
    return written


def probabilities(model: Path, images: np.ndarray) -> np.ndarray:
    if model.suffix == ".keras":
        import keras

        from runtime.preprocess import as_nhwc

        return keras.models.load_model(model).predict(as_nhwc(images), verbose=0)
    from runtime.session import Classifier

    with Classifier(model) as clf:
        return clf.predict_proba(images)


def predict(model: Path, images: np.ndarray) -> np.ndarray:
    return probabilities(model, images).argmax(1)


def calibration(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Expected calibration error and the threshold table, as `evaluate` gives them on MNIST."""
    tally = Tally()
    tally.add(probs.max(1), probs.argmax(1) == labels)
    return {"ece": round(tally.ece(), 4), "thresholds": [asdict(t) for t in tally.thresholds()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", type=Path, default=[Path(m) for m in DEFAULT_MODELS])
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--photos", type=int, default=100, help="MNIST test digits to photograph")
    parser.add_argument("--data", default=os.environ.get("MNIST_DIR"), help="MNIST folder")
    parser.add_argument("--examples", type=Path, default=None, help="write contact sheets here")
    args = parser.parse_args()
    found = fonts()
    images, labels, sources = digit_set(found)
    drawn = np.array([s.startswith("drawn/") for s in sources])
    if drawn.all():
        print("no TrueType fonts found: only the ten drawn digits are measured", file=sys.stderr)
    print(f"{len(images)} digits: {(~drawn).sum()} from {len(found)} fonts x 10 x "
          f"{len(ANGLES)} angles x {len(STYLES)} styles, {drawn.sum()} drawn")  # fmt: skip
    photos = None
    if args.photos > 0:
        try:
            photos = photo_set(args.photos, args.data)
        except DataError as e:  # no MNIST here
            print(f"photos skipped: {e}", file=sys.stderr)
    if photos is not None:
        print(f"{len(photos['labels'])} photos: MNIST test digits 0-{args.photos - 1} x "
              f"{len(CONDITIONS)} conditions")  # fmt: skip
    rows = []
    for model in args.models:
        path = model if model.is_absolute() else ROOT / model
        if not path.exists():
            print(f"{model}: not found, skipped", file=sys.stderr)
            continue
        probs = probabilities(path, images)
        hit = probs.argmax(1) == labels
        style = np.array([s.rsplit("/", 1)[-1] for s in sources])
        row = {
            "model": str(model),
            "accuracy": round(float(hit.mean()), 4),
            "fonts": round(float(hit[~drawn].mean()), 4) if (~drawn).any() else None,
            "by_style": {k: round(float(hit[style == k].mean()), 4) for k in STYLES},
            "drawn": f"{int(hit[drawn].sum())}/{int(drawn.sum())}",
            "missed": [s for s, h in zip(sources, hit, strict=True) if not h][:40],
            **calibration(probs, labels),
        }
        styles = "  ".join(f"{k} {v:.1%}" for k, v in row["by_style"].items())
        print(f"{row['accuracy']:7.2%}  {styles}  drawn {row['drawn']}  {model}")
        sure = "  ".join(
            f">={t['confidence']:g}: keeps {t['kept']:.1%}, right {t['accuracy']:.2%}"
            for t in row["thresholds"]
        )
        print(f"         ECE {row['ece']:.4f}  {sure}")
        if photos is not None:
            predicted = {k: predict(path, photos[k]) for k in ("before", "after")}
            row["photos"] = photo_rows(predicted, photos)
            print_photos(row["photos"])
            if args.examples and model == args.models[0]:
                for written in write_examples(args.examples, photos, predicted):
                    print(f"  wrote {written}")
        rows.append(row)
    if args.json:
        figures = {"digits": len(images), "results": rows}
        if photos is not None:
            figures["photos"] = {"digits": args.photos, "conditions": list(CONDITIONS)}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def print_photos(row: dict) -> None:
    print(f"  photos  {'before':>7} {'after':>7}")
    for condition, figures in row["by_condition"].items():
        print(f"  {condition:12} {figures['before']:7.1%} {figures['after']:7.1%}")
    print(f"  {'all photos':12} {row['before']:7.1%} {row['after']:7.1%}")


if __name__ == "__main__":
    sys.exit(main())
