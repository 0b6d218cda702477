"""The device commands through typer's runner: output, JSON contracts and failure paths."""

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

import runtime.session as session_module
from runtime.cli import app
from runtime.errors import InputError
from runtime.idx import read_idx
from runtime.options import parse_counts
from tests.conftest import synthetic_digits, write_idx

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "digits"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments, code: int = 2):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def inputs(tmp_path):
    images, _ = synthetic_digits(3)
    npy = tmp_path / "three.npy"
    np.save(npy, images)
    idx = write_idx(tmp_path / "three-idx3-ubyte.gz", images, compress=True)
    png = tmp_path / "one.png"
    Image.fromarray(255 - images[0]).resize((56, 56)).save(png)
    return {"npy": npy, "idx": idx, "png": png}


def test_predict_json_gives_one_object_per_image(tiny_model, inputs):
    result = run(
        "predict",
        inputs["png"],
        inputs["npy"],
        inputs["idx"],
        "--model",
        tiny_model,
        "--json",
        "--top-k",
        "3",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == [str(inputs["png"])] + [
        f"{inputs[k]}[{i}]" for k in ("npy", "idx") for i in range(3)
    ]
    for r in rows:
        assert set(r) == {"input", "label", "confidence", "top_k"}
        assert (
            r["label"] == r["top_k"][0]["label"] and r["confidence"] == r["top_k"][0]["probability"]
        )
        probs = [t["probability"] for t in r["top_k"]]
        assert probs == sorted(probs, reverse=True) and len(probs) == 3


def test_predict_npy_and_idx_of_the_same_images_agree(tiny_model, inputs):
    rows = [
        json.loads(line)
        for line in run(
            "predict", inputs["npy"], inputs["idx"], "--model", tiny_model, "--json"
        ).stdout.splitlines()
    ]
    assert [r["label"] for r in rows[:3]] == [r["label"] for r in rows[3:]]
    assert "top_k" not in rows[0]


def test_predict_plain_output_has_a_line_per_image(tiny_model, inputs):
    result = run("predict", inputs["npy"], "--model", tiny_model)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["predict", "missing.png"], ["missing.png", "no such file"]),
        (["predict", "{png}", "--top-k", "11"], ["--top-k"]),
        (["predict", "{png}", "--top-k", "0"], ["--top-k"]),
        (["predict", "{png}", "--threads", "0"], ["--threads"]),
        (["predict", "{labels}"], ["labels-idx1-ubyte", "label"]),
        (["predict", "{png}", "--model", "{tmp}/nope.onnx"], ["nope.onnx", "no such model file"]),
        (["predict"], ["Missing argument"]),
        (["bench", "--batch-sizes", "1,x"], ["--batch-sizes", "1,x"]),
        (["bench", "--batch-sizes", "0"], ["--batch-sizes"]),
        (["evaluate", "--split", "dev"], ["--split", "dev"]),
        (["evaluate", "--data", "{tmp}/nowhere"], ["nowhere", "no such file or folder"]),
        (["info", "--model", "{text}"], ["notes.onnx", "expected an ONNX model"]),
    ],
    ids=[
        "missing-input",
        "top-k-high",
        "top-k-zero",
        "threads",
        "label-file",
        "missing-model",
        "no-inputs",
        "batch-sizes-text",
        "batch-sizes-zero",
        "split",
        "data",
        "not-onnx",
    ],
)
def test_bad_arguments_get_one_line_naming_them(tiny_model, inputs, tmp_path, args, fragments):
    labels = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    values = {"png": inputs["png"], "labels": labels, "tmp": tmp_path, "text": text}
    args = [a.format(**values) for a in args]
    if "--model" not in args and args[0] != "info":
        args += ["--model", str(tiny_model)]
    assert_one_line_error(run(*args), *fragments)


def test_bench_json_keeps_the_documented_keys(tiny_model):
    result = run(
        "bench",
        "--model",
        tiny_model,
        "--batch-sizes",
        "1,4",
        "--duration",
        "0.05",
        "--warmup",
        "0",
        "--json",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["batch_size"] for r in payload["results"]] == [1, 4]
    for r in payload["results"]:
        assert {"batch_size", "p50_us", "p90_us", "p99_us", "mean_us", "images_per_s"} <= set(r)
        # throughput is the batch over the mean call time, so the two must agree
        assert r["images_per_s"] == pytest.approx(r["batch_size"] / (r["mean_us"] * 1e-6), rel=1e-3)
    assert payload["settings"]["threads"] == [1] and payload["settings"]["batch_sizes"] == [1, 4]


def test_evaluate_json_reports_accuracy_and_count(tiny_model, mnist_folder):
    result = run("evaluate", "--model", tiny_model, "--data", mnist_folder, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["count"] == 20
    # the same 20 images through plain onnxruntime, preprocessed by hand
    images = read_idx(mnist_folder / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_folder / "t10k-labels-idx1-ubyte.gz")
    session = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    x = images[..., None].astype(np.float32) / 255
    expected = int((session.run(None, {"image": x})[0].argmax(axis=1) == labels).sum())
    assert payload["correct"] == expected and payload["accuracy"] == expected / 20
    assert sum(map(sum, payload["confusion"])) == 20


def test_info_json_describes_the_model(tiny_model):
    payload = json.loads(run("info", "--model", tiny_model, "--json").stdout)
    assert payload["inputs"][0]["name"] == "image"
    assert payload["outputs"][0]["shape"] == ["N", 10]
    assert payload["metadata"]["arch"] == "linear"
    assert payload["contract"]["layout"] == ["NHWC", "metadata"]
    assert payload["size_bytes"] == tiny_model.stat().st_size


def test_parse_counts():
    assert parse_counts("1, 32,256", "--batch-sizes", 256) == (1, 32, 256)
    with pytest.raises(InputError, match="from 1 to 255"):
        parse_counts("1,256", "--batch-sizes", 255)
    with pytest.raises(InputError, match="--threads"):
        parse_counts("", "--threads", 8)


def test_low_power_runs_one_thread_without_spinning(tiny_model, inputs, monkeypatch):
    made = []
    real = session_module.Classifier
    monkeypatch.setattr(
        session_module, "Classifier", lambda *a, **k: made.append(real(*a, **k)) or made[-1]
    )
    result = run("predict", inputs["npy"], "--model", tiny_model, "--low-power")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    options = made[0].session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["predict", "{npy}", "--low-power", "--threads", "2"], "--low-power"),
        (["predict", "{npy}", "--low-power", "--spinning"], "--low-power"),
        (["bench", "--low-power", "--threads", "1,2"], "--low-power"),
        (["bench", "--optimization", "max"], "--optimization"),
        (["bench", "--threads", "0"], "--threads"),
        (["predict", "{npy}", "--batch-size", "0"], "--batch-size"),
    ],
    ids=[
        "low-power-threads",
        "low-power-spinning",
        "bench-sweep",
        "optimization",
        "bench-threads",
        "batch-size",
    ],
)
def test_conflicting_or_bad_device_options_are_refused(tiny_model, inputs, args, fragment):
    args = [a.format(npy=inputs["npy"]) for a in args] + ["--model", str(tiny_model)]
    assert_one_line_error(run(*args), fragment)


def test_bench_sweeps_threads_reports_cold_start_and_saves_json(tiny_model, tmp_path):
    out = tmp_path / "bench.json"
    result = run(
        "bench",
        "--model",
        tiny_model,
        "--batch-sizes",
        "1,2",
        "--threads",
        "1,2",
        "--runs",
        "15",
        "--warmup",
        "0",
        "--no-spinning",
        "--no-memory-arena",
        "--optimization",
        "basic",
        "--output",
        out,
    )
    assert result.exit_code == 0, result.output
    assert "cold start, threads 1" in result.stdout and "p99.9 us" in result.stdout
    saved = json.loads(out.read_text())
    assert [(r["threads"], r["batch_size"]) for r in saved["results"]] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    assert all(r["runs"] == 15 for r in saved["results"])
    s = saved["settings"]
    assert (s["spinning"], s["memory_arena"], s["optimization"]) == (False, False, "basic")
    assert len(saved["cold_start"]) == 2


def test_predict_streams_a_large_idx_file_in_batches(tiny_model, tmp_path):
    images, _ = synthetic_digits(700)
    idx = write_idx(tmp_path / "many-idx3-ubyte", images)
    result = run("predict", idx, "--model", tiny_model, "--batch-size", "64", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 700 and rows[-1]["input"] == f"{idx}[699]"


def test_help_at_80_columns_keeps_option_names_whole(monkeypatch):
    from tests.conftest import cli_app

    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(cli_app(), ["quantize", "--help"], terminal_width=80)
    assert result.exit_code == 0
    assert "--fp32-single-channel-convs / --int8-single-channel-convs" in result.stdout
    assert "--calibration-size" in result.stdout and "<bool>" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_the_cli_module_loads_without_onnxruntime():
    import subprocess
    import sys

    code = "import sys, runtime.cli; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # --help and usage errors never pay for it


def test_a_named_command_is_built_alone_and_still_runs_as_a_subcommand(tiny_model, inputs):
    import typer

    from runtime.cli import invoked_only
    from tests.conftest import cli_app

    full = cli_app()
    before = list(full.registered_commands)
    one = invoked_only(full, ["predict"])
    assert [c.callback.__name__ for c in one.registered_commands] == ["predict"]
    assert full.registered_commands == before  # the app itself keeps every command
    assert isinstance(typer.main.get_command(one), typer.core.TyperGroup)
    result = runner.invoke(one, ["predict", str(inputs["npy"]), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    # a typo, a bare call, or an option first: every command stays reachable
    for first in (["predcit"], [], ["--help"]):
        assert invoked_only(full, first) is full


def test_a_bare_call_prints_the_help_without_an_error_prefix():
    from tests.conftest import cli_app

    result = runner.invoke(cli_app(), [])
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: ")  # the runner names the program "root"
    assert "predict" in result.stderr and "error:" not in result.stderr


def test_bench_csv_holds_the_rows_the_json_reports(tiny_model, tmp_path):
    out = tmp_path / "bench.csv"
    args = ["bench", "--model", tiny_model, "--runs", "30", "--warmup", "0"]
    result = run(*args, "--batch-sizes", "1,4", "--threads", "1", "--csv", out, "--json")
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)["results"]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["batch_size"]), int(r["runs"])) for r in rows] == [(1, 30), (4, 30)]
    for row, case in zip(rows, reported, strict=True):
        for key in ("batch_size", "threads", "runs"):
            assert int(row[key]) == case[key]
        for key, value in case["percentiles_us"].items():
            assert float(row[key]) == pytest.approx(value)


def test_bench_profile_writes_onnxruntimes_trace_and_lists_the_models_ops(tiny_model, tmp_path):
    out = tmp_path / "profile.json"
    args = ["bench", "--model", tiny_model, "--runs", "5", "--batch-sizes", "2", "--threads", "1"]
    result = run(*args, "--profile", out, "--json")
    assert result.exit_code == 0, result.output
    trace = json.loads(out.read_text())
    nodes = {e["name"] for e in trace if e.get("cat") == "Node"}
    ops = json.loads(result.stdout)["profile"]["ops"]
    assert ops and nodes
    kinds = {n.op_type for n in onnx.load(tiny_model).graph.node}
    assert {o["op"] for o in ops} <= kinds | {"MemcpyToHost", "MemcpyFromHost"}, ops


def test_serve_beyond_loopback_without_a_token_warns_before_it_listens(tiny_model):
    # 192.0.2.1 is a documentation address no machine holds: the bind fails, nothing listens
    result = run("serve", "--model", tiny_model, "--host", "192.0.2.1", "--port", "0")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2
    assert lines[0].startswith("warning: --host 192.0.2.1: listening beyond loopback with no")
    assert lines[1].startswith("error: --port 0: cannot listen on 192.0.2.1:0")


def test_bench_cold_start_is_measured_not_made_up(tiny_model, tmp_path):
    # A model with 51 MB of weights loads and first runs far slower than the 31 KB tiny one,
    # side by side in one run: figures that did not come from the clock could not show it.
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.01, s).astype(np.float32) for s in ((784, 16384), (16384, 10))]
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W1"], ["hidden"]),
            helper.make_node("MatMul", ["hidden", "W2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "big",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(weights[0], "W1"),
            numpy_helper.from_array(weights[1], "W2"),
            numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape"),
        ],
    )
    big = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), big)

    def cold(model):  # the quickest of three cold starts: one slow start is the machine's
        args = ["--runs", "5", "--warmup", "0", "--batch-sizes", "1", "--threads", "1", "--json"]
        starts = []
        for _ in range(3):
            result = run("bench", "--model", model, *args)
            assert result.exit_code == 0, result.output
            starts.append(json.loads(result.stdout)["cold_start"][0])
        return {key: min(s[key] for s in starts) for key in ("load_ms", "first_inference_us")}

    small, large = cold(tiny_model), cold(big)
    assert large["load_ms"] > 3 * small["load_ms"], (small, large)
    assert large["first_inference_us"] > 3 * small["first_inference_us"], (small, large)


def test_predict_text_runners_up_keep_two_significant_digits():
    digits = sorted(EXAMPLES.glob("*.png"))  # the default model is sure of them: tiny runners-up
    as_text = run("predict", *digits, "--top-k", "3")
    as_json = run("predict", *digits, "--top-k", "3", "--json")
    assert as_text.exit_code == as_json.exit_code == 0
    for line, row in zip(as_text.stdout.splitlines(), as_json.stdout.splitlines(), strict=True):
        runners_up = line.split("\t")[3].split("  ")
        expected = json.loads(row)["top_k"][1:]
        assert len(runners_up) == len(expected) == 2
        for shown, truth in zip(runners_up, expected, strict=True):
            label, probability = shown.split(":")
            assert label == truth["label"]
            assert float(probability) == pytest.approx(truth["probability"], rel=0.06, abs=1e-6)
            assert float(probability) > 0 or truth["probability"] == 0


def test_predict_prints_a_header_at_a_terminal_and_none_when_piped(tiny_model, inputs, monkeypatch):
    piped = run("predict", inputs["png"], "--model", tiny_model)
    assert piped.stdout.count("\n") == 1 and not piped.stdout.startswith("input")
    monkeypatch.setattr("runtime.cli._at_terminal", lambda: True)
    at_terminal = run("predict", inputs["png"], "--model", tiny_model, "--top-k", "2")
    assert at_terminal.stdout.splitlines()[0].split("\t") == [
        "input", "label", "confidence", "runners-up"
    ]  # fmt: skip
    assert len(at_terminal.stdout.splitlines()) == 2


def test_version_names_the_package_and_onnxruntime():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == (
        f"mnist-edge {version('mnist-edge')} (onnxruntime {ort.__version__}, "
        f"Python {__import__('platform').python_version()})\n"
    )


@pytest.mark.parametrize("option", ["--output", "--csv", "--profile"])
def test_bench_refuses_a_device_as_output_before_it_measures(tiny_model, option, monkeypatch):
    def measured(*args, **kwargs):
        raise AssertionError("measured before the output was checked")

    monkeypatch.setattr("runtime.bench.bench", measured)
    result = run("bench", "--model", tiny_model, option, "/dev/null")
    assert_one_line_error(result, "/dev/null: expected a regular file to write, found")
