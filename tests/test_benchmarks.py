"""A smoke run of the side-by-side comparison at a tiny size: it runs and reports every engine.
No test asserts a speed; the figures come from the full run (benchmarks/RESULTS.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.tensorflow, pytest.mark.mnist]


def test_quick_comparison_reports_every_engine(tmp_path, real_mnist):
    pytest.importorskip("tensorflow", reason="needs the train extra")
    pytest.importorskip("ai_edge_litert", reason="needs the bench extra: pip install '.[bench]'")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "compare.py"),
            "--quick",
            "--out",
            str(tmp_path),
            "--data",
            str(real_mnist),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (report_path,) = tmp_path.glob("*.json")
    report = json.loads(report_path.read_text())
    engines = {e["engine"] for e in report["engines"]}
    assert {
        "mnist-edge runtime",
        "onnxruntime session (bare)",
        "Keras model(x)",
        "Keras model.predict",
        "TensorFlow tf.function",
        "LiteRT fp32",
        "LiteRT INT8",
    } <= engines
    for e in report["engines"]:
        assert [r["batch_size"] for r in e["results"]] == [1, 4]
        assert all(r["p50_us"] > 0 and r["images_per_s"] > 0 for r in e["results"])
        assert e["accuracy"] > 0.9  # same weights everywhere: every engine reads digits
    runtime = next(e for e in report["engines"] if e["engine"] == "mnist-edge runtime")
    assert all(r["p50_vs_runtime"] == 1.0 for r in runtime["results"])
    assert report["model"]["mflops"] > 0 and report["peak_gflops"]["1"] > 0
    assert (
        report["peak_int8_gops"]["1"] > 0
        and "integer (uint8 x int8)" in (tmp_path / "RESULTS.md").read_text()
    )
    assert (tmp_path / "RESULTS.md").read_text().startswith("# Side-by-side latency")
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"


def test_flops_count_matches_the_architecture():
    pytest.importorskip("onnx")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from flops import flops_per_image

    # Dense 784x128 + 128x10, the seed MLP: 2 * (100,352 + 1,280) FLOPs.
    assert flops_per_image(ROOT / "exported" / "mnist_mlp.onnx") == 2 * (784 * 128 + 128 * 10)


def test_loadgen_cross_check_completes_every_query_in_bulk():
    """Our LoadGen SUT completes a batcher call's queries in one call; a query it lost would
    hang LoadGen, so the trial runs in a child process with a deadline."""
    pytest.importorskip("mlperf_loadgen", reason="needs the loadgen extra (x86-64)")
    script = (
        "import argparse, sys, numpy as np, mlperf_loadgen as lg\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "import loadgen as m\n"
        "args = argparse.Namespace(duration=0.5, bound_ms=50.0, batching=True)\n"
        "images = np.zeros((m.IMAGES, 28, 28), np.uint8)\n"
        "trials = []\n"
        "print(m._loadgen_trial(lg, m.NullClassifier(), images, 4000.0, args, trials))\n"
        "print(trials[0]['queries'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    valid, queries = done.stdout.split()[-2:]
    assert valid == "True" and int(queries) >= 1000  # 0.5 s at 4,000 qps


def test_ensemble_of_one_model_twice_scores_as_the_model(tmp_path, real_mnist):
    from runtime.evaluate import evaluate
    from runtime.mnist import load_split
    from runtime.session import Classifier

    model = ROOT / "exported" / "mnist_mlp.onnx"  # the weakest: a wrong ensemble would show
    out = tmp_path / "ensemble.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ensemble.py"), str(model), str(model),
         "--data", str(real_mnist), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    test = load_split("test", real_mnist)
    with Classifier(model) as clf:
        alone = evaluate(clf, test.images, test.labels).accuracy
    report = json.loads(out.read_text())
    assert report["ensemble"] == alone == report["models"][0]["accuracy"]
