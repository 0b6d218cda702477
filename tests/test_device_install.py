"""Install the project the way a device does: a wheel, no extras, a fresh virtual environment,
then use it from a folder outside the repository."""

import json
import shutil
import subprocess
import sys
import urllib.request
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from runtime.models import default_model_name

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT), cwd=out
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("mnist_edge-*.whl")
    return path


@pytest.fixture(scope="module")
def device(tmp_path_factory, wheel) -> Path:
    """A fresh venv with the wheel installed, no extras; returns its bin folder."""
    env = tmp_path_factory.mktemp("device-venv")
    venv.create(env, with_pip=True)
    installed = _run(str(env / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel), cwd=env)
    assert installed.returncode == 0, installed.stderr
    return env / "bin"


def test_wheel_carries_the_models_and_nothing_the_device_does_not_need(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for model in ("mnist_edge.onnx", "mnist_edge.int8.onnx", "mnist_cnn.onnx", "mnist_mlp.onnx"):
        assert f"runtime/models/{model}" in names
    unwanted = [
        n
        for n in names
        if n.endswith((".keras", ".json", ".png"))
        or n.startswith(("tests/", "examples/", "benchmarks/", "exported/"))
    ]
    assert unwanted == []


def test_device_environment_has_no_training_stack(device):
    listed = _run(str(device / "python"), "-m", "pip", "list", "--format", "json", cwd=device)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"onnxruntime", "numpy", "typer", "pillow", "mnist-edge"} <= installed
    assert not installed & {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "tf-keras"}


def test_device_commands_work_from_any_folder_on_the_shipped_model(device, tmp_path):
    shutil.copy(ROOT / "examples" / "digits" / "7.png", tmp_path / "seven.png")
    np.save(tmp_path / "digits.npy", np.zeros((2, 28, 28), np.uint8))
    cli = str(device / "mnist-edge")

    info = _run(cli, "info", "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["path"].endswith(f"site-packages/runtime/models/{default_model_name()}")

    png = _run(cli, "predict", "seven.png", "--json", cwd=tmp_path)
    assert png.returncode == 0, png.stderr
    assert json.loads(png.stdout)["label"] == "7"

    npy = _run(cli, "predict", "digits.npy", "--json", cwd=tmp_path)
    assert npy.returncode == 0, npy.stderr
    assert len(npy.stdout.splitlines()) == 2

    bench = _run(cli, "bench", "--duration", "1", "--batch-sizes", "1,32", "--json", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    assert [r["batch_size"] for r in json.loads(bench.stdout)["results"]] == [1, 32]

    train = _run(cli, "train", cwd=tmp_path)
    assert train.returncode != 0 and "pip install 'mnist-edge[train]'" in train.stderr


def test_serve_web_finds_the_checkout_it_is_run_in_from_a_wheel_install(device, tmp_path):
    checkout = tmp_path / "mnist-edge"
    (checkout / "web" / "node_modules" / "onnxruntime-web").mkdir(parents=True)
    (checkout / "web" / "index.html").write_text("<!doctype html><title>draw a digit</title>")
    (checkout / "examples").mkdir()
    server = subprocess.Popen(
        [str(device / "mnist-edge"), "serve-web", "--port", "0"],
        cwd=checkout / "examples",  # below the checkout's top, as a user might be
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert "serving the draw-a-digit page at http://127.0.0.1:" in line, server.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"draw a digit" in page.read()
    finally:
        server.terminate()
        server.wait(timeout=10)
