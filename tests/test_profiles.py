"""The measurements behind issue 15's reasons: per-op batch-1 costs (op_costs.py), per-layer
INT8 precision (int8_layers.py), two sessions in one process (cohabit.py). No test asserts a
speed; they pin down what is measured (and that it is measured: times follow the work done in
the same run)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install '.[onnx]'")
import onnxruntime as ort  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from cohabit import worker  # noqa: E402
from op_costs import cuts  # noqa: E402


def _run(model: onnx.ModelProto, image: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString())
    return session.run(None, {session.get_inputs()[0].name: image})[0]


def test_op_costs_cuts_start_at_the_input_and_end_at_the_models_output():
    model = onnx.load(ROOT / "exported" / "mnist_edge.int8.onnx")
    labelled = cuts(model)
    assert len(labelled) == len(model.graph.node) + 1
    assert [label.split()[0] for label, _ in labelled[1:]] == [n.op_type for n in model.graph.node]
    image = np.random.default_rng(1).integers(0, 256, (1, 28, 28)).astype(np.uint8)
    np.testing.assert_array_equal(_run(labelled[0][1], image), image)
    np.testing.assert_array_equal(_run(labelled[-1][1], image), _run(model, image))


@pytest.mark.mnist
def test_int8_layers_quantizes_each_layer_kept_and_alone(tmp_path, real_mnist):
    out = tmp_path / "layers.json"
    args = ["--data", real_mnist, "--rounds", "1", "--calls", "2", "--json", out]
    script = ROOT / "benchmarks" / "int8_layers.py"
    done = subprocess.run(
        [sys.executable, script, *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = json.loads(out.read_text())["files"]
    layers = files["fp32"]["kept_fp32"]
    assert layers == [
        "Conv__31",
        "Conv__33",
        "Conv__35",
        "mnist_edge_1/dense_1/MatMul/MatMulAddFusion",
    ]
    assert len(files) == 2 + 2 * len(layers)
    assert files["all INT8"]["kept_fp32"] == []
    for layer in layers:
        assert files[f"{layer} in fp32"]["kept_fp32"] == [layer]
        assert files[f"only {layer} INT8"]["kept_fp32"] == [x for x in layers if x != layer]
    for label, row in files.items():
        assert row["b1_us"] > 0 and row["b256_us"] > 0
        if label != "fp32":
            assert 0.9 < row["rows_within"] <= 1 and row["agreement"] >= 0.998
            assert row["p999_abs_diff"] <= row["max_abs_diff"]


@pytest.mark.parametrize("alternate", [False, True])
def test_cohabit_times_each_model_it_holds(alternate):
    spin = {"spinning": True, "spin_between_runs": False}
    p50 = worker(["fp32", "int8"], batch=4, spin=spin, blocks=2, alternate=alternate)
    assert set(p50) == {"fp32", "int8"} and all(us > 0 for us in p50.values())


def test_cohabit_times_are_measured_calls_not_figures():
    # 256 images a call against one, the same model in the same run: the time must follow the
    # work (about 100x here), which no made-up figure does
    spin = {"spinning": True, "spin_between_runs": False}
    one = worker(["fp32"], batch=1, spin=spin, blocks=2, alternate=False)["fp32"]
    many = worker(["fp32"], batch=256, spin=spin, blocks=2, alternate=False)["fp32"]
    assert many > 10 * one, (one, many)
