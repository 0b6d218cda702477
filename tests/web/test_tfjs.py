"""TF.js beside onnxruntime (benchmarks/tfjs.py): the shipped weights as TF.js layers models
answer as onnxruntime does, in Node.js and in Chromium, and the side-by-side runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from runtime.session import Classifier
from tests.conftest import ROOT, synthetic_digits
from tests.web.conftest import run_node

sys.path.insert(0, str(ROOT / "benchmarks"))
from tfjs_models import SHIPPED, write_layers_model

pytest.importorskip("onnx", reason="needs the onnx extra: pip install '.[onnx]'")


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfjs")
    return {name: write_layers_model(path, out / name).parent for name, path in SHIPPED.items()}


def reference(name: str, images: np.ndarray) -> np.ndarray:
    with Classifier(SHIPPED[name]) as clf:
        return clf.proba_of_images(images)


@pytest.mark.parametrize("backend", ["cpu", "wasm"])
@pytest.mark.parametrize("name", list(SHIPPED))
def test_tfjs_layers_models_answer_as_onnxruntime_does(node, layers, name, backend, tmp_path):
    images, _ = synthetic_digits(32, seed=3)
    images[:, 10:18, 10:18] |= np.uint8(90)  # ink in the middle too: every conv tap is used
    images.tofile(tmp_path / "images.u8")
    done = run_node(node, "web/bench/tfjs.mjs", "answer", str(layers[name]), backend,
                    str(tmp_path / "images.u8"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = np.array(json.loads(done.stdout)).reshape(-1, 10)
    expected = reference(name, images)
    assert np.abs(found - expected).max() < 1e-5
    assert (found.argmax(axis=1) == expected.argmax(axis=1)).all()


def page_pixels(n: int) -> np.ndarray:
    """web/bench/timing.js's pixelsFor(n), computed here independently."""
    i = np.arange(n * 784, dtype=np.uint64)
    return ((i * 2654435761) % 2**32 >> 24).astype(np.uint8).reshape(n, 28, 28)


def test_each_engine_in_the_browser_answers_as_onnxruntime_does(node, browser):
    import tfjs

    tfjs.make_models()
    with tfjs.Page() as page:
        for name in SHIPPED:
            expected = reference(name, page_pixels(8))
            for engine, threads in tfjs.BROWSER:
                got = page.run(engine=engine, model=name, threads=threads, answer=1)
                assert "error" not in got, got
                found = np.array(got["probabilities"]).reshape(-1, 10)
                assert np.abs(found - expected).max() < 1e-5, (engine, threads, name)


def test_the_side_by_side_runs_every_engine_in_both_worlds(node, browser, tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/tfjs.py", "--seconds", "0.05", "--batches", "1,4",
         "--json", str(tmp_path / "tfjs.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "tfjs.json").read_text())["rows"]
    seen = {(r["world"], r["engine"], r["threads"], r["model"], r["batch"]) for r in rows}
    node_engines = {("tfjs-cpu", 1), ("tfjs-wasm", 1), ("onnxruntime-node", 1)}
    import tfjs

    for model in SHIPPED:
        for batch in (1, 4):
            for engine, threads in node_engines:
                assert ("node", engine, threads, model, batch) in seen
            for engine, threads in tfjs.BROWSER:
                assert ("chromium", engine, threads, model, batch) in seen
    assert all(r["p50_ms"] > 0 and r["images_per_s"] > 0 and r["cold_start_ms"] > 0 for r in rows)
