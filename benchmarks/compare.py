"""The comparison a user asks for: this runtime side by side with the engines they would pick
instead, on the same weights and inputs, in one run.

Engines: the mnist-edge runtime; a bare onnxruntime session; the Keras model called directly
and through predict; a TensorFlow tf.function; the LiteRT interpreter on fp32 and full-INT8
models converted from the same Keras model; the runtime on the INT8 ONNX model where it exists.
For each: p50/p99 latency and throughput per batch size and thread count, the ratio to this
runtime, and test accuracy. Plus the physical limit (FLOPs per image, measured matmul peak)
and process costs (cold start, peak memory, installed size).

    python benchmarks/compare.py                      # the full run, about 15 minutes
    python benchmarks/compare.py --quick --out /tmp   # a smoke run in well under a minute

Writes results/<date>-<machine>.json, RESULTS.md and latency.png (in --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
BASELINE = "mnist-edge runtime"


def convert_tflite(keras_path: Path, out: Path, data: Path | None, calibration: int) -> None:
    """fp32 and full-INT8 LiteRT models from the Keras model (TensorFlow's own converter)."""
    code = f"""
import os, numpy as np, tensorflow as tf, keras
from runtime.mnist import load_split
from runtime.preprocess import as_nhwc
model = keras.models.load_model({str(keras_path)!r})
model.export({str(out / "saved_model")!r}, verbose=False)
def converter():
    return tf.lite.TFLiteConverter.from_saved_model({str(out / "saved_model")!r})
c = converter()
open({str(out / "model_fp32.tflite")!r}, "wb").write(c.convert())
train = load_split("train", {str(data) if data else None!r})
def representative():  # calibration on training images, never the test set
    for image in train.images[:{calibration}]:
        yield [as_nhwc(image)]
c = converter()
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = representative
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
c.inference_input_type = tf.uint8
c.inference_output_type = tf.uint8
open({str(out / "model_int8.tflite")!r}, "wb").write(c.convert())
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_engines(args, tflite_dir: Path, threads: int) -> list[dict]:
    command = [
        sys.executable,
        str(HERE / "engines.py"),
        "--threads",
        str(threads),
        "--keras",
        str(args.keras),
        "--onnx",
        str(args.onnx),
        "--tflite-dir",
        str(tflite_dir),
        "--batch-sizes",
        args.batch_sizes,
        "--duration",
        str(args.duration),
        "--eval-images",
        str(args.eval_images),
    ]
    if args.int8:
        command += ["--int8", str(args.int8)]
    if args.anchor_dir:
        command += ["--anchor-tflite-dir", str(args.anchor_dir)]
    if args.data:
        command += ["--data", str(args.data)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"engines.py at {threads} thread(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def with_ratios(engines: list[dict]) -> list[dict]:
    """Add each case's p50 and throughput relative to this runtime at the same settings."""
    base = {
        (e["threads"], r["batch_size"]): r
        for e in engines
        if e["engine"] == BASELINE
        for r in e["results"]
    }
    for e in engines:
        for r in e["results"]:
            ref = base.get((e["threads"], r["batch_size"]))
            if ref:
                r["p50_vs_runtime"] = round(r["p50_us"] / ref["p50_us"], 3)
                r["throughput_vs_runtime"] = round(r["images_per_s"] / ref["images_per_s"], 3)
    return engines


def process_costs(args) -> dict:
    """Cold start and peak memory of one-image predict: runtime vs TensorFlow vs LiteRT."""
    import device

    envs = args.envs
    runtime_py = device.make_env(envs / "runtime", str(ROOT))
    tf_py = device.make_env(envs / "tensorflow", f"{ROOT}[train,bench]")
    png = str(device.PNG)
    litert = (
        "import sys, numpy as np\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "from runtime.images import load_image\n"
        "from runtime.preprocess import as_nhwc\n"
        "it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()\n"
        "x = as_nhwc(load_image(sys.argv[2]))\n"
        "it.set_tensor(it.get_input_details()[0]['index'], x); it.invoke()\n"
        "print(int(it.get_tensor(it.get_output_details()[0]['index']).argmax()))\n"
    )
    rows = [
        device.measure(
            "mnist-edge runtime (pip install .)",
            runtime_py,
            "runtime",
            [str(runtime_py.parent / "mnist-edge"), "predict", png],
            args.runs,
        ),
        device.measure(
            "TensorFlow + Keras",
            tf_py,
            "tensorflow",
            [str(tf_py), "-c", device.TF_PREDICT, str(args.keras), png],
            args.runs,
        ),
        device.measure(
            "LiteRT interpreter (fp32)",
            tf_py,
            "ai_edge_litert.interpreter",
            [str(tf_py), "-c", litert, str(args.tflite_dir / "model_fp32.tflite"), png],
            args.runs,
        ),
    ]
    return {"runs": args.runs, "rows": [vars(r) for r in rows]}


def results_markdown(report: dict) -> str:
    from engines import ANCHOR

    m = report["machine"]
    lines = [
        f"# Side-by-side latency, {report['date']}",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} cores, {m['machine']}. Model: "
        f"`{report['model']['onnx']}` ({report['model']['mflops']:.2f} MFLOP per image). "
        f"Matmul peak measured in the same run: {report['peak_gflops']['1']:.0f} GFLOP/s on one "
        f"thread, {report['peak_gflops']['2']:.0f} on two; integer (uint8 x int8) matmul peak "
        f"{report['peak_int8_gops']['1']:.0f} and {report['peak_int8_gops']['2']:.0f} GOP/s: an "
        "INT8 engine's % of peak is a share of that one. "
        f"Command: `{report['command']}`.",
        "",
        "| engine | threads | batch | p50 us | p99 us | images/s | % of peak | p50 vs runtime "
        "| accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in report["engines"]:
        for r in e["results"]:
            peaks = report["peak_int8_gops"] if "INT8" in e["engine"] else report["peak_gflops"]
            peak = peaks[str(e["threads"])]
            anchor = e["engine"].startswith(ANCHOR)  # another model: its own FLOPs
            mflops = report["model"]["anchor_mflops" if anchor else "mflops"]
            used = r["images_per_s"] * mflops / 1e3 / peak * 100
            lines.append(
                f"| {e['engine']} | {e['threads']} | {r['batch_size']} | {r['p50_us']:,.1f} | "
                f"{r['p99_us']:,.1f} | {r['images_per_s']:,.0f} | {used:.1f}% | "
                f"{r.get('p50_vs_runtime', float('nan')):.2f}x | {e['accuracy']:.2%} |"
            )
    costs = report.get("process_costs")
    if costs:
        lines += [
            "",
            "Process costs: one-image predict from a fresh process (median of "
            f"{costs['runs']}), outside the checkout.",
            "",
            "| what | import s | cold predict s | peak RSS MB | environment MB |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in costs["rows"]:
            lines.append(
                f"| {c['env']} | {c['import_s']:.3f} | {c['cold_predict_s']:.3f} | "
                f"{c['peak_rss_mb']:.0f} | {c['installed_mb']:.0f} |"
            )
    lines += ["", "![latency vs batch size](latency.png)", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({e["threads"] for e in report["engines"]})
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4.5), squeeze=False)
    for ax, t in zip(axes[0], threads, strict=True):
        for e in (e for e in report["engines"] if e["threads"] == t):
            sizes = [r["batch_size"] for r in e["results"]]
            ax.plot(sizes, [r["p50_us"] for r in e["results"]], marker="o", label=e["engine"])
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="batch size",
            ylabel="p50 latency per call (us)",
            title=f"{t} thread{'s' if t > 1 else ''}",
        )
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{Path(report['model']['onnx']).name}: latency vs batch size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keras", type=Path, default=ROOT / "exported" / "mnist_cnn.keras")
    parser.add_argument("--onnx", type=Path, default=ROOT / "exported" / "mnist_cnn.onnx")
    parser.add_argument("--int8", type=Path, default=ROOT / "exported" / "mnist_cnn.int8.onnx")
    parser.add_argument(
        "--anchor",
        type=Path,
        default=HERE / "anchor" / "mnist_convnet.keras",
        help="the Keras model to run on LiteRT beside ours (benchmarks/anchor.py)",
    )
    parser.add_argument("--batch-sizes", default="1,32,256,1024")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes for cold start")
    parser.add_argument("--data", type=Path, default=os.environ.get("MNIST_DIR"))
    parser.add_argument("--envs", type=Path, default=ROOT / "build" / "bench-envs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: batch 1 and 4, one thread, short timings, no processes",
    )
    args = parser.parse_args()
    if args.quick:
        args.batch_sizes, args.threads, args.duration, args.eval_images = "1,4", "1", 0.05, 500
    for name in ("keras", "onnx", "int8", "anchor"):  # children run in other folders
        setattr(args, name, getattr(args, name).resolve())
    sys.path.insert(0, str(HERE))
    from flops import flops_per_image, keras_flops_per_image, peak_gflops, peak_int8_gops

    from runtime.cpu import cpu_name
    from runtime.files import atomic_path, write_json

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args.tflite_dir = Path(tmp)
        print("converting the Keras model to LiteRT (fp32, INT8)", file=sys.stderr)
        convert_tflite(args.keras, args.tflite_dir, args.data, 100 if args.quick else 1000)
        args.anchor_dir = None
        if args.anchor.exists():
            args.anchor_dir = args.tflite_dir / "anchor"
            args.anchor_dir.mkdir()
            convert_tflite(args.anchor, args.anchor_dir, args.data, 100 if args.quick else 1000)
        engines = []
        for t in (int(x) for x in args.threads.split(",")):
            print(f"measuring every engine at {t} thread(s)", file=sys.stderr)
            engines += run_engines(args, args.tflite_dir, t)
        report = {
            "date": str(date.today()),
            "command": " ".join(["python benchmarks/compare.py", *sys.argv[1:]]),
            "machine": {
                "processor": cpu_name(),
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
                "node": platform.node(),
            },
            "model": {
                "onnx": str(
                    args.onnx.relative_to(ROOT) if args.onnx.is_relative_to(ROOT) else args.onnx
                ),
                "mflops": flops_per_image(args.onnx) / 1e6,
                "anchor_mflops": (
                    keras_flops_per_image(args.anchor) / 1e6 if args.anchor.exists() else None
                ),
            },
            "peak_gflops": {str(t): round(peak_gflops(t), 1) for t in (1, 2)},
            "peak_int8_gops": {str(t): round(peak_int8_gops(t), 1) for t in (1, 2)},
            "settings": {
                "batch_sizes": args.batch_sizes,
                "threads": args.threads,
                "duration_s": args.duration,
                "eval_images": args.eval_images,
            },
            "engines": with_ratios(engines),
        }
        if not args.quick:
            print("measuring process costs", file=sys.stderr)
            try:
                report["process_costs"] = process_costs(args)
            except (RuntimeError, subprocess.CalledProcessError) as e:  # keep what was measured
                print(f"process costs not measured: {e}"[:300], file=sys.stderr)
    name = f"{report['date']}-{platform.node()}.json"
    write_json(args.out / name, report)
    with atomic_path(args.out / "RESULTS.md") as tmp_md:
        tmp_md.write_text(results_markdown(report))
    with atomic_path(args.out / "latency.png") as tmp_png:
        plot(report, tmp_png)
    print(results_markdown(report))
    print(f"wrote {args.out / name}, RESULTS.md and latency.png in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
