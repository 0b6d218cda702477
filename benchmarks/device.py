"""What a device pays to run mnist-edge, against the same job done with TensorFlow.

Builds two fresh virtual environments from this checkout's wheel (reused on later runs):
`runtime` (pip install mnist-edge, no extras) and `tensorflow` (pip install 'mnist-edge[train]').
Then, in one run, it measures for each:
  - the import time of the package that does the work (`runtime` vs `tensorflow`),
  - the cold-start wall time of classifying one PNG from a fresh process (median of --runs),
  - the peak RSS of that process,
  - the installed size of the environment,
and, as the floor a runtime cannot go below, a fresh `python -c "import numpy, onnxruntime"` in
the runtime environment, its runs interleaved with those of `mnist-edge predict`; beside it the
same job with no CLI and no mnist-edge code (Pillow reads the PNG, one onnxruntime session of
the same model, one run), which tells what the command itself adds.

    python benchmarks/device.py [--runs 7] [--envs build/bench-envs]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import venv
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from measure import run_measured

from runtime.files import write_json

ROOT = Path(__file__).resolve().parent.parent
PNG = ROOT / "examples" / "digits" / "7.png"

# The TensorFlow way of doing `mnist-edge predict one.png`: load the Keras model, predict.
TF_PREDICT = """
import sys
import numpy as np
import keras
from runtime.images import load_image
from runtime.preprocess import as_nhwc
model = keras.models.load_model(sys.argv[1])
probs = model.predict(as_nhwc(load_image(sys.argv[2])), verbose=0)
print(sys.argv[2], int(np.argmax(probs)), float(probs.max()))
"""


@dataclass
class Figures:
    env: str
    import_s: float  # median of --runs
    cold_predict_s: float  # median wall time of one fresh process classifying one PNG
    peak_rss_mb: float  # median of those processes' peak RSS
    peak_rss_max_mb: float  # and the largest
    installed_mb: float


def make_env(folder: Path, spec: str) -> Path:
    """A virtual environment with `spec` installed, reused while it was made for that spec."""
    python, made_for = folder / "bin" / "python", folder / "mnist-edge-spec"
    if not python.exists():
        venv.create(folder, with_pip=True)
    if not made_for.exists() or made_for.read_text() != spec:
        subprocess.run([python, "-m", "pip", "install", "-q", spec], check=True)
        made_for.write_text(spec)
    else:  # this checkout's code as it is now, whatever it was when the environment was made
        refresh = ["install", "-q", "--no-deps", "--force-reinstall", str(ROOT)]
        subprocess.run([python, "-m", "pip", *refresh], check=True)
    return python


def import_time(python: Path, module: str, runs: int, cwd: Path) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = [
        float(
            subprocess.run(
                [python, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for _ in range(runs)
    ]
    return statistics.median(times)


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


FLOOR = "import numpy, onnxruntime"
BARE_JOB = """
import sys
import numpy as np, onnxruntime as ort
from PIL import Image
ink = 255 - np.asarray(Image.open(sys.argv[2]).convert("L").resize((28, 28)), np.uint8)[None]
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feed = session.get_inputs()[0]  # the INT8 default takes uint8 (N, 28, 28), the fp32 one floats
x = ink if "uint8" in feed.type else (ink / np.float32(255)).reshape(1, 28, 28, 1)
print(int(session.run(None, {feed.name: x})[0].argmax()))
"""


def measure(
    name: str, python: Path, module: str, command: list[str], runs: int, floor: dict | None = None
) -> Figures:
    """`floor`, when given, maps each reference command to the (wall, RSS) of its runs, one run
    of each after each sample."""
    cwd = Path("/tmp")  # outside the checkout: only the installed package is found
    samples = []
    for _ in range(runs):
        samples.append(run_measured(command, cwd))
        for reference, runs_of_it in (floor or {}).items():
            runs_of_it.append(run_measured([python, "-c", *reference], cwd))
    return Figures(
        env=name,
        import_s=round(import_time(python, module, runs, cwd), 3),
        cold_predict_s=round(statistics.median(s[0] for s in samples), 3),
        peak_rss_mb=round(statistics.median(s[1] for s in samples), 1),
        peak_rss_max_mb=round(max(s[1] for s in samples), 1),
        installed_mb=round(folder_mb(python.parent.parent), 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--envs", type=Path, default=ROOT / "build" / "bench-envs")
    args = parser.parse_args()

    runtime_py = make_env(args.envs / "runtime", str(ROOT))
    tf_py = make_env(args.envs / "tensorflow", f"{ROOT}[train]")
    keras_model = ROOT / "exported" / "mnist_cnn.keras"
    default_model = subprocess.run(
        [runtime_py, "-c", "from runtime.models import default_model_path as d; print(d())"],
        cwd="/tmp", capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    floor_key, bare_key = (FLOOR,), (BARE_JOB, default_model, str(PNG))
    floor = {floor_key: [], bare_key: []}
    results = [
        measure(
            "runtime only (pip install .)",
            runtime_py,
            "runtime.session",  # numpy, onnxruntime and the runtime's session code
            [str(runtime_py.parent / "mnist-edge"), "predict", str(PNG)],
            args.runs,
            floor,
        ),
        measure(
            "TensorFlow (pip install '.[train]')",
            tf_py,
            "tensorflow",
            [str(tf_py), "-c", TF_PREDICT, str(keras_model), str(PNG)],
            args.runs,
        ),
    ]
    print(
        f"{'environment':<38} {'import s':>9} {'cold predict s':>15} {'peak RSS MB':>12} "
        f"{'installed MB':>13}"
    )
    for r in results:
        print(
            f"{r.env:<38} {r.import_s:>9.3f} {r.cold_predict_s:>15.3f} {r.peak_rss_mb:>12.1f} "
            f"{r.installed_mb:>13.1f}"
        )
    ratio = results[1].installed_mb / results[0].installed_mb
    print(f"the TensorFlow environment is {ratio:.1f}x the size of the runtime-only one")
    floor_s = round(statistics.median(w for w, _ in floor[floor_key]), 3)
    floor_mb = round(statistics.median(m for _, m in floor[floor_key]), 1)
    floor_ratio = round(results[0].cold_predict_s / floor_s, 2)
    bare_s = round(statistics.median(w for w, _ in floor[bare_key]), 3)
    bare_mb = round(statistics.median(m for _, m in floor[bare_key]), 1)
    print(f"floor, python -c '{FLOOR}': {floor_s:.3f} s, {floor_mb:.1f} MB;"
          f" mnist-edge predict is {floor_ratio:.2f}x its wall time")  # fmt: skip
    print(f"the same job with no CLI (Pillow, one session, one run): {bare_s:.3f} s"
          f" ({bare_s / floor_s:.2f}x the floor), {bare_mb:.1f} MB")  # fmt: skip

    out = ROOT / "benchmarks" / "results" / f"{date.today()}-{platform.node()}-device.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "runs": args.runs,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "results": [asdict(r) for r in results],
        "size_ratio": round(ratio, 2),
        "floor": {"command": FLOOR, "cold_s": floor_s, "peak_rss_mb": floor_mb},
        "cold_predict_vs_floor": floor_ratio,
        "bare_job": {
            "what": "Pillow reads the PNG, one onnxruntime session of the default model, one run",
            "model": Path(default_model).name,
            "cold_s": bare_s,
            "peak_rss_mb": bare_mb,
            "vs_floor": round(bare_s / floor_s, 2),
        },
    }
    write_json(out, payload)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
