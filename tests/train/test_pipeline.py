"""Train -> export -> parity on a subset, for real (TensorFlow, tf2onnx, onnxruntime)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tensorflow", reason="needs the train extra: pip install '.[train]'")
onnx = pytest.importorskip("onnx")

from runtime import Classifier, ParityError  # noqa: E402
from runtime.cli import app  # noqa: E402
from runtime.mnist import load_split  # noqa: E402
from runtime.parity import compare  # noqa: E402
from train import export as export_module  # noqa: E402
from train.cli import register  # noqa: E402

register(app)
from train.export import export_file  # noqa: E402
from train.fit import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.tensorflow
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An MLP trained for one epoch on the first 2,000 real training images."""
    from tests.conftest import real_mnist_dir

    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    out = tmp_path_factory.mktemp("run")
    result = train(TrainConfig(arch="mlp", epochs=1, limit=2000, data=data, out=out, verbose=0))
    return result, data, out


def test_training_saves_model_history_and_metrics(trained):
    result, _, out = trained
    assert (out / "mnist_mlp.keras").is_file()
    history = json.loads((out / "mnist_mlp.history.json").read_text())
    assert len(history["loss"]) == 1
    assert history["learning_rate"] == [pytest.approx(0.01)]  # the seed's constant SGD rate
    assert (out / "mnist_mlp.history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "mnist_mlp.metrics.json").read_text())
    assert metrics["train_images"] == 2000 and metrics["epochs"] == 1
    assert 0.4 < result.test_accuracy < 1.0  # well above chance (0.1) after 63 SGD steps


def test_training_is_reproducible_with_the_same_seed(trained, tmp_path):
    result, data, _ = trained
    again = train(TrainConfig(arch="mlp", epochs=1, limit=2000, data=data, out=tmp_path, verbose=0))
    assert again.test_accuracy == result.test_accuracy
    assert again.test_loss == result.test_loss


def test_export_writes_a_checked_model_that_matches_keras(trained, tmp_path):
    result, data, _ = trained
    exported = export_file(result.model_path, tmp_path / "m.onnx", data=data)
    proto = onnx.load(exported.path)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["arch"] == "mlp" and meta["input_layout"] == "NHWC" and meta["opset"] == "17"
    assert float(meta["test_accuracy"]) == pytest.approx(result.test_accuracy, abs=1e-4)
    for key in ("tensorflow_version", "tf2onnx_version", "onnx_version", "keras_version"):
        assert meta[key]
    assert exported.parity.agreement == 1.0 and exported.parity.max_abs_diff <= 1e-5
    # Batch axis is dynamic: any batch size runs.
    clf = Classifier(exported.path)
    assert clf.session.get_inputs()[0].shape[0] == "batch"  # symbolic, not fixed
    test = load_split("test", data)
    for n in (1, 3, 300):
        assert clf.predict_proba(test.images[:n]).shape == (n, 10)


def test_parity_command_passes_then_fails_on_a_corrupted_weight(trained, tmp_path):
    result, data, _ = trained
    good = tmp_path / "good.onnx"
    export_file(result.model_path, good, data=data)
    ok = runner.invoke(app, ["parity", result.model_path, str(good), "--data", str(data), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["agreement"] == 1.0 and report["count"] == 10000
    keys = {"agreement", "max_abs_diff", "reference_accuracy", "candidate_accuracy", "passed"}
    assert set(report) >= keys and report["passed"] is True

    proto = onnx.load(good)
    weights = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    array = onnx.numpy_helper.to_array(weights).copy()
    array.flat[::7] += 0.5  # corrupt every 7th weight
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, bad)
    failed = runner.invoke(app, ["parity", result.model_path, str(bad), "--data", str(data)])
    assert failed.exit_code == 1
    assert "FAIL" in failed.stdout and "max probability difference" in failed.stdout


def test_export_that_fails_parity_leaves_the_previous_file_intact(trained, tmp_path, monkeypatch):
    result, data, _ = trained
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous model")

    def broken_parity(model, onnx_path, split):
        probs = np.full((len(split), 10), 0.1, np.float32)
        probs[:, 3] = 0.2
        return compare(probs, np.roll(probs, 1, axis=1), split.labels)  # every label differs

    monkeypatch.setattr(export_module, "keras_vs_onnx", broken_parity)
    with pytest.raises(ParityError, match="not written, parity failed"):
        export_file(result.model_path, target, data=data)
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left behind


def test_training_commands_without_the_extra_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    result = runner.invoke(app, ["export", str(tmp_path / "m.keras")])
    assert result.exit_code != 0
    assert "pip install 'mnist-edge[train]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_keras_parity_without_the_extra_names_the_extra_before_the_data(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if not installed
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "nowhere"))  # and no data either
    args = ["parity", str(tmp_path / "m.keras"), str(tmp_path / "m.onnx")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "needs the train extra" in result.stderr and "MNIST" not in result.stderr


def test_edge_model_learns_from_the_teacher_and_is_saved_alone(trained, tmp_path):
    _, data, _ = trained
    teacher = Path(__file__).resolve().parent.parent.parent / "exported" / "mnist_cnn.keras"
    result = train(
        TrainConfig(
            arch="edge", epochs=1, limit=1000, data=data, out=tmp_path, verbose=0, teacher=teacher
        )
    )
    import keras

    saved = keras.models.load_model(result.model_path)
    assert saved.name == "mnist_edge"  # the student, not the student + teacher trainer
    assert saved.count_params() < 60_000
    assert result.recipe["distill"] > 0 and 0.1 < result.test_accuracy <= 1.0

    # Exported for the device: raw uint8 pixels in, a lean graph, the same answers as Keras.
    exported = export_file(result.model_path, tmp_path / "edge.onnx", data=data)
    assert exported.parity.agreement == 1.0 and exported.parity.max_abs_diff <= 1e-5
    proto = onnx.load(exported.path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    ops = [n.op_type for n in proto.graph.node]
    assert "Transpose" not in ops and "Shape" not in ops and ops.count("Conv") == 3
    clf = Classifier(exported.path)
    assert clf.contract.layout == "NHW" and clf.contract.pixel_scale == 1.0


def test_one_epoch_run_prints_its_header_and_no_tensorflow_log_lines(trained, tmp_path):
    _, data, _ = trained
    args = ["train", "--arch", "mlp", "--epochs", "1", "--limit", "500"]
    command = [
        sys.executable,
        "-m",
        "runtime.cli",
        *args,
        "--data",
        str(data),
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no absl/oneDNN lines from TensorFlow's import
    assert result.stdout.startswith("Epoch 1/1\n")
    assert "after 1 epoch on 500 images" in result.stdout
