"""Models made elsewhere: with the right options the CLI scores them exactly as plain
onnxruntime does with the right preprocessing; `adopt` writes copies that need no options."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnx", reason="the foreign models are built with onnx: pip install '.[onnx]'")

from runtime import Classifier
from runtime.mnist import load_split
from tests.conftest import ROOT, cli_app, linear_onnx, real_mnist_dir
from tests.foreign import BUILDERS, OPTIONS

pytestmark = pytest.mark.mnist
IMAGES = 1000
runner = CliRunner()


@pytest.fixture(scope="module")
def test_set():
    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    split = load_split("test", data)
    return data, split.images[:IMAGES], split.labels[:IMAGES]


@pytest.fixture(params=list(BUILDERS))
def foreign(request, tmp_path):
    path, preprocess = BUILDERS[request.param](tmp_path / f"{request.param}.onnx")
    return request.param, path, preprocess


def plain_onnxruntime(path, preprocess, images) -> np.ndarray:
    """The model's (N, 10) scores the way its author would run it: by hand, at its own batch."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    outputs = session.get_outputs()
    maps = [o.name for o in outputs if o.type.startswith("seq(map(")]
    (scores,) = maps or [o.name for o in outputs if o.shape[-1] == 10]
    batch = session.get_inputs()[0].shape[0]
    x = preprocess(images)
    step = batch if isinstance(batch, int) else len(x)

    def run(chunk):
        found = session.run([scores], {name: chunk})[0]
        return np.array([[row[k] for k in range(10)] for row in found]) if maps else found

    return np.concatenate([run(x[i : i + step]) for i in range(0, len(x), step)])


def cli(*args):
    return runner.invoke(cli_app(), [str(a) for a in args])


def evaluate_json(model, data, *options):
    result = cli(
        "evaluate", "--model", model, "--data", data, "--limit", IMAGES, "--json", *options
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_cli_scores_each_foreign_model_as_plain_onnxruntime_does(foreign, test_set):
    name, path, preprocess = foreign
    data, images, labels = test_set
    expected = (plain_onnxruntime(path, preprocess, images).argmax(axis=1) == labels).mean()
    payload, _ = evaluate_json(path, data, *OPTIONS[name])
    assert payload["accuracy"] == expected
    assert expected > 0.9  # a real classifier, so that equality means something


def test_adopted_copy_needs_no_options_and_takes_any_batch(foreign, test_set, tmp_path):
    name, path, preprocess = foreign
    data, images, labels = test_set
    out = tmp_path / "adopted.onnx"
    adopted = cli("adopt", path, "--out", out, "--data", data, "--json", *OPTIONS[name])
    assert adopted.exit_code == 0, adopted.output
    report = json.loads(adopted.stdout)
    assert report["dynamic_batch"] and report["parity"]["passed"]
    assert report["parity"]["agreement"] == 1.0 and report["parity"]["max_abs_diff"] <= 1e-5

    expected = (plain_onnxruntime(path, preprocess, images).argmax(axis=1) == labels).mean()
    payload, stderr = evaluate_json(out, data)  # no options
    assert payload["accuracy"] == expected
    assert stderr == ""  # nothing assumed, no fixed batch to warn about
    info = json.loads(cli("info", "--model", out, "--json").stdout)
    assert info["contract"]["batch"] == ["any", "graph"]
    assert {info["contract"][k][1] for k in ("layout", "pixels", "output")} == {"metadata"}


def test_predict_json_confidences_are_probabilities_whatever_the_model_outputs(foreign, test_set):
    name, path, _ = foreign
    images = test_set[1][:5]
    with Classifier(path, **_keywords(OPTIONS[name])) as clf:
        probs = clf.predict_proba(images)
    assert probs.min() >= 0 and probs.max() <= 1
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    npy = path.with_suffix(".npy")
    np.save(npy, images)
    result = cli("predict", npy, "--model", path, "--json", "--top-k", "10", *OPTIONS[name])
    assert result.exit_code == 0, result.output
    for row in map(json.loads, result.stdout.splitlines()):
        ranked = [t["probability"] for t in row["top_k"]]
        assert 0 <= row["confidence"] <= 1 and abs(sum(ranked) - 1) < 1e-4


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pytorch-normalized-logits", "logits"),
        ("pytorch-fixed-batch-logsoftmax", "log-probabilities"),
        ("chainer-three-channels", "probabilities"),
    ],
)
def test_output_kind_is_inferred_and_said_once(name, kind, tmp_path):
    path, _ = BUILDERS[name](tmp_path / "m.onnx")
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros((28, 28), np.uint8))
    result = cli("predict", npy, "--model", path)
    assert result.exit_code == 0, result.output
    (assumed,) = [line for line in result.stderr.splitlines() if "assumed" in line]
    assert f"output {kind} (from its scores on probe images)" in assumed


def test_fixed_batch_model_answers_any_count_of_images_and_says_so(test_set, tmp_path):
    path, preprocess = BUILDERS["pytorch-fixed-batch-logsoftmax"](tmp_path / "fixed.onnx")
    images = test_set[1][:37]
    with Classifier(path, mean=0.1307, std=0.3081) as clf:
        assert clf.contract.batch == 1
        together = clf.predict_proba(images)
    by_hand = plain_onnxruntime(path, preprocess, images)
    np.testing.assert_allclose(together, np.exp(by_hand), atol=1e-6)
    npy = tmp_path / "some.npy"
    np.save(npy, images)
    result = cli("predict", npy, "--model", path, "--mean", "0.1307", "--std", "0.3081")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 37
    fixed = [line for line in result.stderr.splitlines() if "fixed batch of 1" in line]
    assert len(fixed) == 1 and "mnist-edge adopt" in fixed[0]


def test_bench_marks_batches_a_fixed_batch_model_runs_in_chunks(tmp_path):
    path, _ = BUILDERS["chainer-three-channels"](tmp_path / "c.onnx")
    args = ["bench", "--model", path, "--batch-sizes", "1,8", "--runs", "3", "--warmup", "0"]
    result = cli(*args, "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["chunked"] for r in report["results"]] == [False, True]
    assert report["settings"]["fixed_batch"] == 1


def test_probe_ranks_conventions_by_measured_accuracy(test_set, tmp_path):
    data, images, labels = test_set
    path, preprocess = BUILDERS["pytorch-normalized-logits"](tmp_path / "n.onnx")
    result = cli("adopt", path, "--probe", "--data", data, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["accuracy"] for r in rows] == sorted((r["accuracy"] for r in rows), reverse=True)
    by_options = {r["options"]: r["accuracy"] for r in rows}
    truth = (plain_onnxruntime(path, preprocess, images).argmax(axis=1) == labels).mean()
    assert by_options["--mean 0.5 --std 0.5"] == truth  # measured, not guessed
    assert by_options["--input-range 1,0"] < 0.3  # the wrong polarity shows as such
    assert len(rows) == 5
    assert not list(tmp_path.glob("*.onnx.*"))  # writes nothing


def test_probe_says_conventions_tie_when_the_measurement_cannot_tell_them_apart(test_set, tmp_path):
    data, _, _ = test_set
    path, _ = BUILDERS["keras2onnx-nhwc-softmax"](tmp_path / "k.onnx")
    as_json = cli("adopt", path, "--probe", "--data", data, "--json")
    as_text = cli("adopt", path, "--probe", "--data", data)
    rows = {r["options"]: r for r in json.loads(as_json.stdout)}
    best = max(r["accuracy"] for r in rows.values())
    for r in rows.values():  # the margin, measured against the rows themselves
        assert r["ties_best"] == (best - r["accuracy"] <= 0.005)
    assert rows["--input-range 0,255"]["ties_best"] and rows["--input-range 0,1"]["ties_best"]
    verdict = as_text.stdout.splitlines()[-1]
    assert verdict.startswith("a tie: ") and "--input-range 0,1" in verdict


def test_probe_of_a_uint8_model_without_metadata_names_its_one_convention(test_set, tmp_path):
    data, _, _ = test_set
    path = linear_onnx(tmp_path / "u8.onnx", input_type="uint8")  # no metadata
    result = cli("adopt", path, "--probe", "--data", data)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and "--input-range 0,255" in lines[1]
    assert lines[-1] == (
        "one convention applies (a uint8 input takes raw pixels): --input-range 0,255"
    )


def test_probe_takes_the_models_own_image_metadata_as_the_answer(test_set, tmp_path):
    data, _, _ = test_set
    path, _ = BUILDERS["winmltools-image-metadata-zipmap"](tmp_path / "w.onnx")
    rows = json.loads(cli("adopt", path, "--probe", "--data", data, "--json").stdout)
    assert [r["options"] for r in rows if r["declared"]] == ["--input-range 0,255"]
    text = cli("adopt", path, "--probe", "--data", data).stdout.splitlines()
    assert text[-1] == "the model's metadata names its convention: --input-range 0,255"


def test_input_size_and_pad_say_what_a_symbolic_or_odd_input_means(test_set, tmp_path):
    import onnx

    from tests.foreign import lenet_32

    data, images, labels = test_set
    path, preprocess = lenet_32(tmp_path / "lenet.onnx")
    truth = (plain_onnxruntime(path, preprocess, images).argmax(axis=1) == labels).mean()
    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"  # [N, 1, height, width]
    onnx.save(model, path)
    unsaid = cli("evaluate", "--model", path, "--data", data, "--limit", "10")
    assert unsaid.exit_code == 2 and unsaid.stderr.count("\n") == 1  # fed 28x28: one line
    said, _ = evaluate_json(path, data, "--input-size", "32")
    assert said["accuracy"] == truth
    described = json.loads(cli("info", "--model", path, "--input-size", "32", "--json").stdout)
    assert described["contract"]["size"][0] == "32x32, MNIST's 28x28 padded by 2"
    odd = cli("info", "--model", path, "--input-size", "32", "--pad", "3")
    assert odd.exit_code == 2
    assert "input side 32: expected 28 + 2 x pad pixels, found --pad 3 giving 34" in odd.stderr


def test_several_score_outputs_need_a_choice_and_take_one(tmp_path):
    import onnx

    path, _ = BUILDERS["pytorch-normalized-logits"](tmp_path / "two.onnx")
    model = onnx.load(path)
    model.graph.node.append(onnx.helper.make_node("Identity", ["output"], ["copy"]))
    model.graph.output.append(
        onnx.helper.make_tensor_value_info("copy", onnx.TensorProto.FLOAT, ["batch_size", 10])
    )
    onnx.save(model, path)
    refused = cli("info", "--model", path)
    assert refused.exit_code == 2
    assert "'output', 'copy': choose one with --output-name" in refused.stderr
    chosen = cli("info", "--model", path, "--output-name", "copy", "--json")
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.stdout)["contract"]["output"] == ["copy: logits", "inferred"]


def test_an_output_listed_twice_is_one_tensor_and_taken(test_set, tmp_path):
    import onnx

    data, images, labels = test_set
    path, preprocess = BUILDERS["pytorch-normalized-logits"](tmp_path / "twice.onnx")
    truth = (plain_onnxruntime(path, preprocess, images).argmax(axis=1) == labels).mean()
    model = onnx.load(path)
    model.graph.output.append(model.graph.output[0])  # as a Java exporter lists it
    onnx.save(model, path)
    result = cli("evaluate", "--model", path, "--mean", "0.5", "--std", "0.5", "--data", data,
                 "--limit", "1000", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == truth


def test_an_opset_onnxruntime_no_longer_runs_is_one_line_naming_adopt(tmp_path):
    from tests.foreign import pytorch_03_opset6

    path, _ = pytorch_03_opset6(tmp_path / "old.onnx")
    result = cli("info", "--model", path)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "Could not find an implementation for Gemm(6)" in line
    assert f"`mnist-edge adopt {path} --out COPY` upgrades an old opset" in line


def test_adopt_upgrades_an_old_opset_and_the_copy_reads_as_the_weights_do(test_set, tmp_path):
    import onnx

    from tests.foreign import mlp_reference, pytorch_03_opset6

    data, images, labels = test_set
    path, _ = pytorch_03_opset6(tmp_path / "old.onnx")
    out = tmp_path / "new.onnx"
    adopted = cli(
        "adopt", path, "--out", out, "--data", data, "--mean", "0.1307", "--std", "0.3081"
    )
    assert adopted.exit_code == 0, adopted.output
    assert "opset     opset 6 upgraded to 13" in adopted.stdout
    assert "batch     batch 64 made dynamic" in adopted.stdout
    assert onnx.load(out).opset_import[0].version == 13
    payload, _ = evaluate_json(out, data)  # no options: the copy says it all
    truth = (mlp_reference(images).argmax(axis=1) == labels).mean()
    assert payload["accuracy"] == truth


def test_adopt_writes_onnx_image_metadata_and_denotations(test_set, tmp_path):
    import onnx

    data, _, _ = test_set
    path, _ = BUILDERS["pytorch-normalized-logits"](tmp_path / "n.onnx")
    out = tmp_path / "n.adopted.onnx"
    assert cli("adopt", path, "--out", out, "--data", data, "--input-range", "-1,1").exit_code == 0
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["Image.NominalPixelRange"] == "Normalized_1_1"
    assert meta["Image.BitmapPixelFormat"] == "Gray8"
    image = model.graph.input[0].type
    assert image.denotation == "IMAGE"
    dims = [d.denotation for d in image.tensor_type.shape.dim]
    assert dims == ["DATA_BATCH", "DATA_CHANNEL", "", ""]  # NCHW
    described = json.loads(cli("info", "--model", out, "--json").stdout)
    assert described["contract"]["pixels"][1] == "metadata"  # ours first, then the spec's


@pytest.mark.parametrize(
    ("option", "value", "range_name"),
    [("--input-range", "0,255", "NominalRange_0_255"), ("--input-range", "0,1", "Normalized_0_1")],
)
def test_onnx_image_metadata_alone_sets_the_pixel_range(tmp_path, test_set, option, value,
                                                        range_name):  # fmt: skip
    import onnx

    data, _, _ = test_set
    path, _ = BUILDERS["keras2onnx-nhwc-softmax"](tmp_path / "k.onnx")
    truth_with_option, _ = evaluate_json(path, data, option, value)
    model = onnx.load(path)
    model.metadata_props.add(key="Image.NominalPixelRange", value=range_name)
    onnx.save(model, path)
    payload, _ = evaluate_json(path, data)
    assert payload["accuracy"] == truth_with_option["accuracy"]
    described = json.loads(cli("info", "--model", path, "--json").stdout)
    assert described["contract"]["pixels"][1] == "image metadata"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--mean", "0.5", "--input-range", "-1,1"], "--input-range: give either it or --mean"),
        (["--std", "0"], "--std: expected a finite non-zero number"),
        (["--input-range", "1"], "--input-range: expected LOW,HIGH"),
        (["--layout", "CHW"], "--layout: expected one of NHWC, NCHW, NHW, NF"),
        (["--model-output", "scores"], "--model-output: expected one of probabilities"),
        (["--output-name", "nope"], "--output-name: expected one of ['output']"),
        (["--layout", "NHWC"], "found ['batch_size', 1, 28, 28] (layout NHWC)"),
    ],
)
def test_bad_contract_options_get_one_line(options, fragment, tmp_path):
    path, _ = BUILDERS["pytorch-normalized-logits"](tmp_path / "m.onnx")
    result = cli("info", "--model", path, *options)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]


def _keywords(options: list[str]) -> dict:
    pairs = dict(zip(options[::2], options[1::2], strict=True))

    def value(text: str):
        return tuple(map(float, text.split(","))) if "," in text else float(text)

    return {k.removeprefix("--").replace("-", "_"): value(v) for k, v in pairs.items()}


PYTORCH = ROOT / "tests" / "data" / "pytorch_mnist_fixed_batch.onnx"  # tests/data/make_*.py


def test_a_real_pytorch_export_scores_as_in_pytorch_and_adopts(test_set, tmp_path):
    # PyTorch 2.13's torch.onnx.export of examples/mnist's recipe: [1, 1, 28, 28], MNIST's
    # mean/std, log_softmax; 98.31% on the 10k test images in PyTorch itself
    data, images, labels = test_set

    def preprocess(x):
        return ((x.astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]

    expected = (plain_onnxruntime(PYTORCH, preprocess, images).argmax(axis=1) == labels).mean()
    payload, stderr = evaluate_json(PYTORCH, data, "--mean", "0.1307", "--std", "0.3081")
    assert payload["accuracy"] == expected > 0.97
    assert "output log-probabilities" in stderr and "fixed batch of 1" in stderr
    out = tmp_path / "adopted.onnx"
    adopted = cli("adopt", PYTORCH, "--mean", "0.1307", "--std", "0.3081", "--out", out, "--json",
                  "--data", data)  # fmt: skip
    assert adopted.exit_code == 0, adopted.output
    assert json.loads(adopted.stdout)["dynamic_batch"]
    payload, stderr = evaluate_json(out, data)
    assert payload["accuracy"] == expected and stderr == ""


def _external_data_outside(folder):
    """A model whose unused initializer keeps its data in ../outside.data: onnxruntime never
    loads it, onnx refuses the path (onnx's ValidationError used to come out as 96 lines)."""
    onnx = pytest.importorskip("onnx")
    from tests.conftest import linear_onnx

    inner = folder / "inner"
    inner.mkdir()
    (folder / "outside.data").write_bytes(bytes(16))
    model = onnx.load(linear_onnx(inner / "m.onnx"))
    tensor = onnx.helper.make_tensor("unused", onnx.TensorProto.FLOAT, [4], [0, 0, 0, 0])
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../outside.data"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    model.graph.initializer.append(tensor)
    onnx.save(model, inner / "m.onnx")
    return inner / "m.onnx"


def test_adopt_problems_are_one_line(tmp_path, mnist_folder):
    outside = _external_data_outside(tmp_path)
    rows = [
        (("adopt", outside, "--out", tmp_path / "a.onnx"), "onnx cannot read the model"),
        (("adopt", outside, "--probe", "--out", tmp_path / "b.onnx"), "--probe writes nothing"),
    ]
    for args, fragment in rows:
        result = cli(*args, "--data", mnist_folder)
        assert result.exit_code == 2 and fragment in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.onnx*"))


def test_adopt_stops_a_model_that_never_answers(tmp_path, mnist_folder, monkeypatch):
    from tests.conftest import slow_onnx
    from train import adopt

    monkeypatch.setattr(adopt, "CHECK_SECONDS", 1.0)
    endless = slow_onnx(tmp_path / "endless.onnx", 1e15)
    for args in (["--probe"], ["--out", tmp_path / "copy.onnx"]):
        result = cli("adopt", endless, *args, "--data", mnist_folder)
        assert result.exit_code == 2 and "within 1 s" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "copy.onnx").exists()
