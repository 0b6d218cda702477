"""Bad input, round two: what a careless user or an attacker feeds. Every row ends as one line
on stderr and exit 2 (a closed pipe: a quiet 141), with no traceback, no hang and nothing lost.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from runtime.cli import app
from runtime.contract import metadata_for
from tests.conftest import ROOT, linear_onnx, synthetic_digits, write_idx

runner = CliRunner()


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _npy_negative_dimension(path: Path) -> Path:
    np.save(path, np.zeros((2, 28, 28), np.uint8))
    data = path.read_bytes().replace(b"(2, 28, 28)", b"(-2, 28, 28)")
    path.write_bytes(data)
    return path


def _idx_huge(path: Path) -> Path:
    """IDX of float64 (type 0x0E) declaring 2^32 - 1 images of 28 x 28, with 16 data bytes."""
    path.write_bytes(bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 28, 28) + bytes(16))
    return path


def _too_many_pixels(path: Path) -> Path:
    Image.new("L", (8000, 6000), 255).save(path)  # 48 megapixels, a few KB as PNG
    return path


PREDICT_FAILURES = [
    ("fifo", lambda t: _fifo(t / "digit.png"), ["digit.png", "expected a regular file"]),
    ("npy-0-d", lambda t: _npy(t / "z.npy", np.array(5)), ["z.npy", "found a single number"]),
    (
        "npy-negative-dimension",
        lambda t: _npy_negative_dimension(t / "neg.npy"),
        ["neg.npy", "cannot read .npy"],
    ),
    (
        "idx-declares-2-to-the-32",
        lambda t: _idx_huge(t / "huge-idx3-ubyte"),
        ["huge-idx3-ubyte", "truncated", "the file holds 16"],
    ),
    (
        "image-with-too-many-pixels",
        lambda t: _too_many_pixels(t / "wide.png"),
        ["wide.png", "at most 40,000,000 pixels, found 8000x6000"],
    ),
]


@pytest.mark.parametrize(
    ("make", "fragments"), [r[1:] for r in PREDICT_FAILURES], ids=[r[0] for r in PREDICT_FAILURES]
)
def test_hostile_inputs_to_predict_get_one_line(tmp_path, tiny_model, make, fragments):
    result = runner.invoke(app, ["predict", str(make(tmp_path)), "--model", str(tiny_model)])
    assert_one_line(result, *fragments)


def _with_metadata(t: Path, **changed: str) -> Path:
    meta = {**metadata_for("NHWC", 1 / 255, "probabilities"), **changed}
    return linear_onnx(t / "m.onnx", metadata=meta)


def _nan_weights(t: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    path = _with_metadata(t)
    model = onnx.load(path)
    weights = next(w for w in model.graph.initializer if w.name == "W")
    weights.CopyFrom(onnx.numpy_helper.from_array(np.full((784, 10), np.nan, np.float32), "W"))
    onnx.save(model, path)
    return path


def _int64_scores(t: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    path = linear_onnx(t / "m.onnx")
    model = onnx.load(path)
    model.graph.node.append(
        onnx.helper.make_node("Cast", ["probabilities"], ["labels"], to=onnx.TensorProto.INT64)
    )
    del model.graph.output[:]
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("labels", onnx.TensorProto.INT64, ["N", 10])
    )
    onnx.save(model, path)
    return path


def _huge_allocation(t: Path) -> Path:
    """A model that asks for 4 TB: Expand of a scalar to [1e6, 1e6], summed into its scores."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    path = linear_onnx(t / "m.onnx")
    model = onnx.load(path)
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([10**6, 10**6], np.int64), "huge_shape"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        ]
    )
    softmax = graph.node[-1]
    softmax.input[0] = "logits_plus"
    # a scalar that depends on the input, so that nothing can be folded at load time
    graph.node.insert(
        len(graph.node) - 1, helper.make_node("ReduceMin", ["logits"], ["low"], keepdims=0)
    )
    graph.node.insert(len(graph.node) - 1, helper.make_node("Mul", ["low", "one"], ["scaled"]))
    graph.node.insert(
        len(graph.node) - 1, helper.make_node("Expand", ["scaled", "huge_shape"], ["big"])
    )
    graph.node.insert(
        len(graph.node) - 1, helper.make_node("ReduceMax", ["big"], ["peak"], keepdims=0)
    )
    graph.node.insert(
        len(graph.node) - 1, helper.make_node("Add", ["logits", "peak"], ["logits_plus"])
    )
    onnx.save(model, path)
    return path


MODEL_FAILURES = [
    ("labels-not-ten", lambda t: _with_metadata(t, labels="a,b,c"), "expected 10 labels, found 3"),
    (
        "pixel-scale-not-a-number",
        lambda t: _with_metadata(t, pixel_scale="one over 255"),
        "expected numbers, found 'one over 255'",
    ),
    (
        "pixel-scale-absurd",
        lambda t: _with_metadata(t, pixel_scale="-1e30"),
        "expected a non-zero scale and an offset within +-1e+06, found -1e+30/0",
    ),
    (
        "pixel-scale-nan",
        lambda t: _with_metadata(t, pixel_scale="nan"),
        "expected a non-zero scale and an offset within +-1e+06, found nan/0",
    ),
    (  # numpy printed "overflow encountered in cast" for each batch
        "pixel-offset-huge",
        lambda t: _with_metadata(t, pixel_offset="1e300"),
        "an offset within +-1e+06, found 0.00392157/1e+300",
    ),
    (  # printed raw, it broke the table into two lines
        "label-with-a-newline",
        lambda t: _with_metadata(t, labels="zero\n,1,2,3,4,5,6,7,8,9"),
        "expected printable, non-empty labels, found 'zero\\n'",
    ),
    (
        "label-with-an-escape-code",
        lambda t: _with_metadata(t, labels="\x1b[31m0,1,2,3,4,5,6,7,8,9"),
        "found '\\x1b[31m0'",
    ),
    ("empty-label", lambda t: _with_metadata(t, labels=",1,2,3,4,5,6,7,8,9"), "found ''"),
    (  # 1.6 GB to answer one image; 3,000,000 took 22.6 GB
        "fixed-batch-200000",
        lambda t: linear_onnx(t / "m.onnx", input_shape=(200_000, 28, 28, 1)),
        "expected a batch dimension that is free or at most 4,096, found a fixed 200,000",
    ),
    ("model-is-a-fifo", lambda t: _fifo(t / "m.onnx"), "expected a regular file, found"),
    ("int64-scores", _int64_scores, "expected an output of [N, 10] float scores"),
    ("nan-weights", _nan_weights, "the model gave NaN or infinite scores"),
]


@pytest.mark.parametrize(
    ("make", "fragment"), [r[1:] for r in MODEL_FAILURES], ids=[r[0] for r in MODEL_FAILURES]
)
def test_hostile_models_get_one_line_from_predict(tmp_path, make, fragment):
    digits = _npy(tmp_path / "d.npy", synthetic_digits(2)[0])
    result = runner.invoke(app, ["predict", str(digits), "--model", str(make(tmp_path))])
    assert_one_line(result, "m.onnx", fragment)


def test_a_model_that_asks_for_terabytes_gets_one_line(tmp_path):
    digits = _npy(tmp_path / "d.npy", synthetic_digits(1)[0])
    result = runner.invoke(
        app, ["predict", str(digits), "--model", str(_huge_allocation(tmp_path))]
    )
    assert_one_line(result, "m.onnx", "onnxruntime")


def _output_as_wide_as_the_batch(t: Path) -> Path:
    """Scores (N, 10) for one image but (N, 10 N) for N: Tile by the batch's own size."""
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    path = _with_metadata(t)
    model = onnx.load(path)
    graph = model.graph
    graph.node[-1].output[0] = "narrow"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([0], np.int64), "first"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Shape", ["image"], ["shape"]),
            helper.make_node("Gather", ["shape", "first"], ["n"]),
            helper.make_node("Concat", ["one", "n"], ["repeats"], axis=0),
            helper.make_node("Tile", ["narrow", "repeats"], ["probabilities"]),
        ]
    )
    graph.output[0].type.tensor_type.shape.dim[1].dim_param = "W"
    onnx.save(model, path)
    return path


def test_scores_of_the_wrong_shape_are_refused_on_every_call(tmp_path):
    # Bound calls (up to six batch shapes per thread) and plain ones alike: before, once a
    # thread had used six shapes, (N, 10 N) "probabilities" came back.
    from runtime import Classifier, ModelError

    with Classifier(_output_as_wide_as_the_batch(tmp_path)) as clf:
        assert clf.predict_proba(synthetic_digits(1)[0]).shape == (1, 10)
        for n in range(2, 10):  # onnxruntime refuses a bound buffer's shape; we, the rest
            with pytest.raises(ModelError, match=rf"{n}, ?10\b"):
                clf.predict_proba(synthetic_digits(n)[0])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--std", "1e-300"], "--mean/--std: expected a pixel scale and offset within +-1e+06"),
        (["--mean", "1e30", "--std", "0.5"], "found scale 0.00784314 and offset -2e+30"),
        (["--input-range", "0,1e300"], "--input-range: expected a pixel scale and offset"),
    ],
    ids=["std-tiny", "mean-huge", "range-huge"],
)
def test_contract_options_that_overflow_are_the_options_fault(tiny_model, args, fragment):
    # --std 1e-300 used to pass, and the model was blamed for the NaN that followed
    digit = str(ROOT / "examples" / "digits" / "7.png")
    result = runner.invoke(app, ["predict", digit, "--model", str(tiny_model), *args])
    assert_one_line(result, fragment)


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--batch-sizes", "10000000"],
        ["bench", "--threads", "3000"],
        ["predict", "x.png", "--threads", "99999999999"],
        ["bench", "--warmup", "inf"],
        ["bench", "--duration", "inf"],
        ["predict", "x.png", "--batch-size", "100000000"],
        ["serve-web", "--port", "99999"],
        ["serve-web", "--port", "-1"],
    ],
    ids=lambda a: " ".join(a),
)
def test_counts_and_durations_have_upper_bounds(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    "option, past, limit",
    [
        ("--duration", "3600.5", "<=3600"),
        ("--runs", "10000001", "<=10000000"),
        ("--warmup", "600.5", "<=600"),
        ("--threads", "65", "from 1 to 64"),
    ],
)
def test_bench_refuses_one_past_each_stated_limit_naming_it(option, past, limit):
    result = runner.invoke(app, ["bench", option, past])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert option in line and limit in line, line


def test_labels_header_declaring_billions_is_refused_before_reading(mnist_folder, tiny_model):
    labels = mnist_folder / "t10k-labels-idx1-ubyte.gz"
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", 4_000_000_000)
    labels.write_bytes(gzip.compress(header + bytes(4_000_000)))  # 3.9 KB compressed
    result = runner.invoke(
        app, ["evaluate", "--model", str(tiny_model), "--data", str(mnist_folder)]
    )
    assert_one_line(result, "t10k-labels", "expected 20 labels", "(4000000000,)")


def test_output_that_is_a_device_is_refused_and_left_alone(tiny_model):
    result = runner.invoke(app, _bench(tiny_model, "--output", "/dev/null"))
    assert_one_line(result, "/dev/null: expected a regular file to write, found a character device")
    assert Path("/dev/null").is_char_device()


def test_output_through_a_symlink_replaces_its_target_and_keeps_the_link(tiny_model, tmp_path):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("{}")
    link.symlink_to(target)
    result = runner.invoke(app, _bench(tiny_model, "--output", str(link)))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target
    assert '"results"' in target.read_text()


def test_names_with_tabs_and_newlines_stay_one_row_of_columns(tmp_path, tiny_model):
    path = _npy(tmp_path / "a\tb\nc.npy", synthetic_digits(1)[0])
    result = runner.invoke(app, ["predict", str(path), "--model", str(tiny_model)])
    assert result.exit_code == 0
    (line,) = result.stdout.splitlines()
    assert line.split("\t")[0] == str(path).replace("\t", "\\t").replace("\n", "\\n") + "[0]"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", *args]


def test_stdout_on_a_full_device_is_one_line(tmp_path):
    digits = write_idx(tmp_path / "d-idx3-ubyte", synthetic_digits(50)[0])
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            _cli("predict", str(digits)), stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert result.returncode == 2
    assert result.stderr == "error: stdout: cannot write (No space left on device)\n"


def test_a_closed_pipe_ends_quietly(tmp_path):
    images, _ = synthetic_digits(3000)
    digits = write_idx(tmp_path / "d-idx3-ubyte", images)
    child = subprocess.Popen(
        _cli("predict", str(digits)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )
    first = child.stdout.readline()
    child.stdout.close()  # as `| head -1` does
    stderr = child.stderr.read()
    assert child.wait(timeout=60) == 141
    assert first.startswith(str(digits).encode()) and stderr == b""


def _bench(model: Path, *args: str) -> list[str]:
    return [
        "bench",
        "--model",
        str(model),
        "--runs",
        "2",
        "--batch-sizes",
        "1",
        "--threads",
        "1",
        *args,
    ]


def assert_one_line(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
