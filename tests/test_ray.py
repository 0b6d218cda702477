"""`predict --engine ray`: the same answers as one process, on the 10,000 MNIST test images, with
one and two workers on a local Ray; a bad file among good ones is the same one line."""

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="needs the scale extra: pip install '.[scale]'")

from runtime import Classifier  # noqa: E402
from runtime.cli import app  # noqa: E402
from runtime.mnist import load_split  # noqa: E402
from tests.conftest import ROOT, real_mnist_dir, write_idx  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.mnist]
runner = CliRunner()


@pytest.fixture(scope="module")
def local_ray():
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def test_images(tmp_path_factory):
    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    images = load_split("test", data).images
    # a raw IDX file beside the .gz one: the shards of a raw file seek, those of a .gz decompress
    folder = tmp_path_factory.mktemp("inputs")
    return write_idx(folder / "t10k-images-idx3-ubyte", images), images


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_gives_the_single_process_answers(local_ray, test_images, tmp_path, workers):
    path, images = test_images
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(
        app, ["predict", str(path), "--engine", "ray", "--workers", str(workers),
              "--output", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 10000 and summary["workers"] == workers
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(10000))
    assert rows[17]["input"] == f"{path}[17]"
    with Classifier() as clf:
        expected = clf.predict_proba(images)
    found = np.array([r["probabilities"] for r in rows], dtype=np.float32)
    assert np.array_equal(found, expected)  # max |dp| 0: the same model, one thread or not
    labels = [int(r["label"]) for r in rows]
    assert labels == expected.argmax(axis=1).tolist()


def test_parquet_holds_the_same_rows(local_ray, test_images, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path, _ = test_images
    digits = sorted((ROOT / "examples" / "digits").glob("*.png"))
    out = tmp_path / "scores.parquet"
    args = ["predict", *map(str, digits), str(path), "--engine", "ray", "--output", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 10 + 10000
    assert table.column("label").to_pylist()[:10] == list("0123456789")


def test_a_bad_file_among_good_ones_is_the_same_one_line(local_ray, tmp_path):
    good = ROOT / "examples" / "digits" / "3.png"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    single = runner.invoke(app, ["predict", str(good), str(bad)])
    out = tmp_path / "scores.jsonl"
    args = ["predict", str(good), str(bad), "--engine", "ray", "--output", str(out)]
    distributed = runner.invoke(app, args)
    assert distributed.exit_code == single.exit_code == 2
    assert distributed.stderr == single.stderr
    assert distributed.stderr.startswith("error: ") and distributed.stderr.count("\n") == 1
    assert not out.exists()


def test_without_ray_one_line_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "runtime.distributed", raising=False)
    args = ["predict", str(ROOT / "examples/digits/1.png"), "--engine", "ray",
            "--output", str(tmp_path / "o.jsonl")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "pip install 'mnist-edge[scale]'" in result.stderr
