"""What each part of the training augmentation buys: the edge model trained on labels alone
(no teacher, so each run stands by itself) under the whole of `train.augment.PEOPLE`, under
none of it, and under all of it but one part at a time; each scored on MNIST's test set and on
the digits written elsewhere of benchmarks/robustness.py (fonts in four styles, drawn digits),
which no run trains on.

    python benchmarks/augment_ablation.py [--epochs 10] [--json FILE]

Each run takes about 15 s an epoch on 2 cores; the default is 7 runs of 10 epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from robustness import digit_set, fonts  # noqa: E402

from runtime.preprocess import as_nhwc  # noqa: E402
from train.augment import NO_AUGMENT, PEOPLE  # noqa: E402
from train.fit import RECIPES, TrainConfig, train  # noqa: E402

# Each part of PEOPLE, as the fields that turn it off.
PARTS = {
    "geometry (shift, rotation, size)": {"shift": 0.0, "rotate": 0.0, "zoom": 0.0},
    "slant": {"shear": 0.0},
    "elastic": {"elastic": 0.0},
    "stroke width": {"stroke": 0.0},
    "broken strokes": {"breaks": 0.0},
}


def variants() -> dict[str, object]:
    runs = {"all of it": PEOPLE, "none": NO_AUGMENT}
    runs.update({f"all but {name}": replace(PEOPLE, **off) for name, off in PARTS.items()})
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", default=None, help="run the variants whose name has this")
    args = parser.parse_args()
    import keras

    images, labels, _ = digit_set(fonts())
    recipe = replace(RECIPES["edge"], distill=0.0, epochs=args.epochs)
    rows = []
    print(f"edge model, labels only, {args.epochs} epochs, seed 0; "
          f"{len(images)} digits written elsewhere")  # fmt: skip
    print(f"{'augmentation':38} {'MNIST':>8} {'elsewhere':>10} {'seconds':>8}")
    for name, how in variants().items():
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            config = TrainConfig(
                arch="edge", out=Path(out), verbose=0, recipe=replace(recipe, augment=how)
            )
            result = train(config)
            model = keras.models.load_model(result.model_path)
            elsewhere = float(
                (model.predict(as_nhwc(images), verbose=0).argmax(1) == labels).mean()
            )
        row = {
            "augmentation": name,
            "mnist": result.test_accuracy,
            "elsewhere": round(elsewhere, 4),
            "seconds": round(time.perf_counter() - start),
        }
        rows.append(row)
        print(f"{name:38} {row['mnist']:8.2%} {row['elsewhere']:10.2%} {row['seconds']:8}",
              flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"epochs": args.epochs, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
