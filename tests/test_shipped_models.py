"""The models in exported/ are what the README and the model card say they are."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from runtime import Classifier
from runtime.evaluate import evaluate
from runtime.images import load_image
from runtime.mnist import load_split
from runtime.models import default_model_path
from tests.conftest import cli_app

ROOT = Path(__file__).resolve().parent.parent
EXPORTED = ROOT / "exported"
DIGITS = sorted((ROOT / "examples" / "digits").glob("*.png"))

pytestmark = pytest.mark.mnist


@pytest.mark.parametrize(
    ("exact", "name"), [(True, "mnist_edge.int8.onnx"), (False, "mnist_edge.onnx")]
)
def test_default_model_is_the_shipped_edge_cnn_int8_where_the_cpu_allows(monkeypatch, exact, name):
    monkeypatch.setattr("runtime.models.int8_exact", lambda: exact)
    assert default_model_path().name == name
    with Classifier() as clf:
        assert clf.metadata["arch"] == "edge"
        assert clf.contract.int8 is exact


@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("mnist_edge.onnx", 0.994),
        ("mnist_edge.int8.onnx", 0.994),
        ("mnist_cnn.onnx", 0.994),
        ("mnist_cnn.int8.onnx", 0.994),
        ("mnist_edge.ort", 0.994),
        ("mnist_mlp.onnx", 0.94),
    ],
)
def test_shipped_model_accuracy_on_the_real_test_set(real_mnist, name, floor):
    clf = Classifier(EXPORTED / name)
    test = load_split("test", real_mnist)
    result = evaluate(clf, test.images, test.labels)
    assert result.count == 10000
    assert result.accuracy >= floor
    # The accuracy recorded in the model at export is the one measured now, through the runtime.
    assert result.accuracy == pytest.approx(float(clf.metadata["test_accuracy"]), abs=1e-6)


def test_shipped_cnn_reads_the_hand_drawn_examples():
    labels = Classifier().predict(np.stack([load_image(p) for p in DIGITS]))
    expected = [int(p.stem) for p in DIGITS]
    assert len(DIGITS) == 10
    assert (labels == expected).sum() >= 9, list(zip(expected, labels.tolist(), strict=True))


@pytest.mark.tensorflow
@pytest.mark.parametrize("arch", ["edge", "cnn", "mlp"])
def test_shipped_models_match_their_keras_source(real_mnist, arch):
    pytest.importorskip("tensorflow", reason="needs the train extra: pip install '.[train]'")
    keras_model, onnx_model = EXPORTED / f"mnist_{arch}.keras", EXPORTED / f"mnist_{arch}.onnx"
    args = ["parity", str(keras_model), str(onnx_model), "--data", str(real_mnist), "--json"]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["agreement"] == 1.0 and report["max_abs_diff"] <= 1e-5
    assert report["count"] == 10000


def test_int8_variants_agree_with_their_fp32_sources(real_mnist):
    for arch in ("edge", "cnn"):
        args = [
            "parity",
            str(EXPORTED / f"mnist_{arch}.onnx"),
            str(EXPORTED / f"mnist_{arch}.int8.onnx"),
            "--data",
            str(real_mnist),
            "--json",
        ]
        result = CliRunner().invoke(cli_app(), args)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["agreement"] >= 0.998
        assert report["reference_accuracy"] - report["candidate_accuracy"] <= 0.001


def test_shipped_edge_int8_gives_full_resolution_probabilities(real_mnist):
    """Its softmax runs in float: rows sum to 1, and confidences are not on a 1/256 grid."""
    images = load_split("test", real_mnist).images[:2000]
    probs = Classifier(EXPORTED / "mnist_edge.int8.onnx").predict_proba(images)
    assert np.abs(probs.sum(axis=1) - 1).max() <= 1e-5
    assert probs.max() > 255 / 256  # a quantized softmax tops out at 0.9961
    assert len(np.unique(probs)) > 1000  # 156 values on the whole test set when quantized
