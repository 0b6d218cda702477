"""INT8, offline-optimised and ORT-format variants: they load like any model, carry their
metadata, and parity catches a variant that went wrong."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install '.[onnx]'")
pytest.importorskip("sympy", reason="needs the onnx extra: pip install '.[onnx]'")

from runtime import Classifier  # noqa: E402
from runtime.cli import app  # noqa: E402
from runtime.mnist import load_split  # noqa: E402
from train.cli import register  # noqa: E402

register(app)
from tests.conftest import real_mnist_dir  # noqa: E402

pytestmark = pytest.mark.mnist  # no TensorFlow: these commands need the onnx extra only
ROOT = Path(__file__).resolve().parent.parent.parent
runner = CliRunner()


@pytest.fixture
def mlp():
    """The shipped seed model and real MNIST: a real model, with no training."""
    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    return ROOT / "exported" / "mnist_mlp.onnx", data


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _quantize_edge(tmp_path, *flags):
    """Quantize the shipped fp32 edge model with `flags`: (the output path, the CLI result)."""
    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    out = tmp_path / "edge.int8.onnx"
    source = ROOT / "exported" / "mnist_edge.onnx"
    return out, _invoke("quantize", source, "--out", out, "--data", data, *flags)


def test_quantized_variant_loads_carries_metadata_and_matches_fp32(tmp_path):
    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    source = ROOT / "exported" / "mnist_cnn.onnx"
    out = tmp_path / "cnn.int8.onnx"
    result = _invoke(
        "quantize", source, "--out", out, "--data", data, "--calibration-size", "300", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["parity"]["agreement"] >= 0.998 and report["parity"]["passed"]
    assert report["size_bytes"] < 0.3 * report["source_size_bytes"]
    clf = Classifier(out)
    assert (
        clf.metadata["variant"] == "int8" and "calibration on 300" in clf.metadata["quantization"]
    )
    assert clf.metadata["arch"] == "cnn"  # the source's metadata carried over
    assert "QLinearConv" in {n.op_type for n in onnx.load(out).graph.node}
    info = json.loads(_invoke("info", "--model", out, "--json").stdout)
    assert info["variant"] == "int8" and info["format"] == "onnx"


@pytest.mark.parametrize("fmt", ["onnx", "ort"])
def test_optimised_variants_load_the_same_way_and_agree_exactly(mlp, tmp_path, fmt):
    source, data = mlp
    out = tmp_path / f"mlp.{fmt}"
    result = _invoke("optimize", source, "--format", fmt, "--out", out, "--data", data, "--json")
    assert result.exit_code == 0, result.output
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(
        Classifier(out).predict_proba(images), Classifier(source).predict_proba(images), atol=1e-5
    )
    info = json.loads(_invoke("info", "--model", out, "--json").stdout)
    assert info["format"] == fmt and "optimised offline" in info["variant"]


def test_optimize_refuses_a_variant_that_answers_differently_and_writes_nothing(
    mlp, tmp_path, monkeypatch
):
    # onnxruntime "optimises" into a copy with one class's weights shifted: the gate compares
    # that copy with the source and must refuse it
    import train.variants as variants

    source, data = mlp
    real_session = variants.ort.InferenceSession

    def corrupting(path, opts=None, *args, **kwargs):
        if opts is None or not opts.optimized_model_filepath:  # every other session
            return real_session(path, opts, *args, **kwargs)
        model = onnx.load(path)
        weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        array = onnx.numpy_helper.to_array(weights).copy()
        array[:, 3] += 0.5
        weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
        onnx.save(model, opts.optimized_model_filepath)

    monkeypatch.setattr(variants.ort, "InferenceSession", corrupting)
    out = tmp_path / "mlp.opt.onnx"
    result = _invoke("optimize", source, "--out", out, "--data", data)
    monkeypatch.setattr(variants.ort, "InferenceSession", real_session)
    assert result.exit_code == 1, result.output
    assert "not written, parity failed: top-1 agreement" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_parity_between_two_onnx_models_fails_on_a_corrupted_weight(mlp, tmp_path):
    source, data = mlp
    ok = _invoke("parity", source, source, "--data", data, "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["agreement"] == 1.0

    model = onnx.load(source)
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    array = onnx.numpy_helper.to_array(weights).copy()
    array[:, 3] += 0.5  # one class's weights shifted: many images now read as 3
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    failed = _invoke("parity", source, bad, "--data", data)
    assert failed.exit_code == 1
    assert "FAIL: top-1 agreement" in failed.stdout


@pytest.mark.parametrize(
    ("flags", "blocked", "fp32_convs", "qdq"),
    [
        ([], True, 0, False),
        (["--no-space-to-depth"], False, 0, False),
        (["--no-space-to-depth", "--fp32-single-channel-convs"], False, 1, False),
        (["--format", "qdq", "--no-space-to-depth", "--fp32-single-channel-convs"], False, 1, True),
        (["--fp32-single-channel-convs"], True, 0, False),  # none is left over one channel
    ],
)
def test_quantize_blocks_or_keeps_the_one_channel_conv_as_told(
    tmp_path, flags, blocked, fp32_convs, qdq
):
    out, result = _quantize_edge(tmp_path, "--calibration-size", "200", *flags)
    assert result.exit_code == 0, result.output
    graph = onnx.load(out).graph
    ops = {n.op_type for n in graph.node}
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    float_convs = [n for n in graph.node if n.op_type == "Conv" and n.input[1] not in dequantized]
    assert len(float_convs) == fp32_convs
    assert ("QLinearConv" not in ops) == qdq
    assert ("SpaceToDepth" in ops) == blocked
    quantization = Classifier(out).metadata["quantization"]
    assert ("over 2x2 blocks (SpaceToDepth" in quantization) == blocked
    kept = re.search(r"kept in fp32: ([^;]+)", quantization)
    assert (kept is not None) == bool(fp32_convs)
    if kept:
        assert kept.group(1) == float_convs[0].name


def test_keep_fp32_leaves_the_named_layer_in_float_and_reports_rows_within(tmp_path):
    out, result = _quantize_edge(tmp_path, "--calibration-size", "200", "--keep-fp32", "Conv__33")
    assert result.exit_code == 0, result.output
    assert re.search(r"rows within 0\.01 \d+\.\d\d%", result.stdout)
    graph = onnx.load(out).graph
    assert [n.name for n in graph.node if n.op_type == "Conv"] == ["Conv__33"]
    assert sum(n.op_type == "QLinearConv" for n in graph.node) == 2
    assert "kept in fp32: Conv__33" in Classifier(out).metadata["quantization"]


def test_keep_fp32_with_an_unknown_node_lists_the_names_in_one_line(tmp_path):
    out, result = _quantize_edge(tmp_path, "--keep-fp32", "conv2")
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.startswith("error: --keep-fp32: expected a Conv, Gemm or MatMul node")
    assert "Conv__33" in result.stderr and "found 'conv2'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_int8_graph_rewrites_change_no_output_and_leave_the_fewest_ops(tmp_path, monkeypatch):
    import train.quantize as quantize_module

    # the 7-bit weights of the pixel-reading layer change outputs by design: kept out of both
    monkeypatch.setattr(quantize_module, "limit_pixel_weights", lambda model: None)
    out, result = _quantize_edge(tmp_path, "--calibration-size", "200", "--fp32-softmax")
    assert result.exit_code == 0, result.output
    ops = [n.op_type for n in onnx.load(out).graph.node]
    # pixels straight into the first QLinearConv; the flatten reads NHWC
    assert ops[:3] == ["Reshape", "SpaceToDepth", "QLinearConv"]
    assert ops[ops.index("QGemm") - 2 : ops.index("QGemm")] == ["Transpose", "Reshape"]
    monkeypatch.setattr(quantize_module, "feed_pixels_directly", lambda model: False)
    monkeypatch.setattr(quantize_module, "flatten_in_nhwc_order", lambda model: [])
    plain = tmp_path / "plain"
    plain.mkdir()
    plain_out, result = _quantize_edge(plain, "--calibration-size", "200", "--fp32-softmax")
    assert result.exit_code == 0, result.output
    assert "Cast" in [n.op_type for n in onnx.load(plain_out).graph.node]
    images = load_split("test", real_mnist_dir()).images[:500]
    with Classifier(out) as rewritten, Classifier(plain_out) as reference:
        np.testing.assert_array_equal(
            rewritten.predict_proba(images), reference.predict_proba(images)
        )


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_quantize_calibrates_with_each_method_at_the_default_size(tmp_path, method):
    # 1,000 calibration images in batches of 64 once left a short last batch that these
    # calibrators could not stack
    out, result = _quantize_edge(tmp_path, "--method", method)
    assert result.exit_code == 0, result.output
    quantization = Classifier(out).metadata["quantization"]
    assert f"{method} calibration on 1000" in quantization
    # pixels keep their 0..255 range whatever the method clips: fed straight in, 7-bit weights
    assert "Cast" not in {n.op_type for n in onnx.load(out).graph.node}
    assert "its weights in 7 bits" in quantization
    assert "Collecting tensor data" not in result.stdout  # the calibrators' prints are kept out


def test_quantizing_the_seed_mlp_misses_the_gate_and_says_what_to_do(mlp, tmp_path):
    source, data = mlp
    out = tmp_path / "mlp.int8.onnx"
    result = _invoke("quantize", source, "--out", out, "--data", data)
    assert result.exit_code == 1
    assert "top-1 agreement" in result.stderr and "ship its fp32 file" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_quantize_into_a_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "some.png").write_bytes(b"not a folder")
    result = _invoke(
        "quantize", ROOT / "exported" / "mnist_edge.onnx", "--out", tmp_path / "some.png" / "x.onnx"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "some.png is not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_fp32_softmax_gives_full_resolution_probabilities(tmp_path):
    out, result = _quantize_edge(tmp_path, "--calibration-size", "200", "--fp32-softmax")
    assert result.exit_code == 0, result.output
    assert onnx.load(out).graph.node[-1].op_type == "Softmax"  # a float softmax, last
    images = load_split("test", real_mnist_dir()).images[:200]
    with Classifier(out) as clf:
        probs = clf.predict_proba(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    on_grid = np.isclose(probs * 256, np.round(probs * 256), atol=1e-4)
    assert not on_grid.all()  # a quantized softmax puts every value on a 1/256 grid
    assert "softmax in fp32" in clf.metadata["quantization"]
