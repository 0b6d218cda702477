"""The Node.js script (web/classify.js, onnxruntime-node) agrees with the Python runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from runtime.images import load_image
from runtime.mnist import load_split
from runtime.session import Classifier
from tests.conftest import ROOT, synthetic_digits, write_idx
from tests.web.conftest import run_node

EXAMPLES = sorted((ROOT / "examples" / "digits").glob("*.png"))
PARITY_IMAGES = 1000
PROBABILITY_TOLERANCE = 1e-4


def node_rows(node: str, *args: str) -> list[dict]:
    result = run_node(node, "web/classify.js", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("model", ["mnist_cnn.onnx", "mnist_edge.onnx"])
def test_node_agrees_with_python_on_1000_mnist_test_images(node, real_mnist, model, tmp_path):
    path = ROOT / "exported" / model
    images = load_split("test", real_mnist).images[:PARITY_IMAGES]
    images_file = write_idx(tmp_path / "t10k-images-idx3-ubyte", images)  # wherever MNIST was
    rows = node_rows(node, "--model", str(path), str(images_file))
    expected = Classifier(path).predict_proba(images)

    found = np.array([row["probabilities"] for row in rows])
    assert found.shape == (PARITY_IMAGES, 10)
    assert [row["input"] for row in rows] == [f"{images_file}[{i}]" for i in range(PARITY_IMAGES)]
    np.testing.assert_array_equal([int(row["label"]) for row in rows], expected.argmax(1))
    assert np.abs(found - expected).max() < PROBABILITY_TOLERANCE


def drawn_variants(tmp_path):
    """PNGs the Python runtime handles in different ways: polarity, alpha, size, aspect."""
    files = []

    def save(name, image):
        files.append(tmp_path / name)
        image.save(files[-1])

    sheet = Image.new("L", (120, 160), 255)  # black ink on white paper, tall
    ImageDraw.Draw(sheet).line([(30, 20), (90, 20), (50, 140)], fill=0, width=11)
    save("seven-on-paper.png", sheet.convert("RGB"))
    transparent = Image.new("RGBA", (90, 90), (0, 0, 0, 0))  # dark ink on a transparent sheet
    ImageDraw.Draw(transparent).ellipse([20, 10, 70, 80], outline=(20, 20, 90, 255), width=8)
    save("zero-transparent.png", transparent)
    tiny = Image.new("L", (9, 12), 0)  # smaller than the 20x20 box: resized up
    ImageDraw.Draw(tiny).line([(4, 1), (4, 10)], fill=255, width=2)
    save("one-tiny.png", tiny)
    wide = Image.new("L", (200, 50), 30)  # a grey background, far wider than tall
    ImageDraw.Draw(wide).line([(10, 25), (190, 25)], fill=220, width=9)
    save("dash-wide.png", wide)
    return files


def assert_node_preprocesses_as_python(node, files: list[Path]) -> None:
    script = (
        "import {readPng} from './web/classify.js';"
        "console.log(JSON.stringify(process.argv.slice(1).map((f) => Array.from(readPng(f)))))"
    )
    result = run_node(node, "--input-type=module", "-e", script, *map(str, files))
    assert result.returncode == 0, result.stderr
    found = np.array(json.loads(result.stdout), dtype=np.int16).reshape(-1, 28, 28)
    expected = np.stack([load_image(f) for f in files]).astype(np.int16)
    assert found.shape == expected.shape
    # Pillow's Lanczos filter reimplemented in JS: at most one grey level off, and only rarely.
    assert np.abs(found - expected).max() <= 1
    assert (found == expected).mean() > 0.999


def test_node_preprocesses_images_as_python_does(node, tmp_path):
    assert_node_preprocesses_as_python(node, [*EXAMPLES, *drawn_variants(tmp_path)])


def test_node_finds_the_digit_in_photos_as_python_does(node, tmp_path):
    # Every step of runtime/ink.py (page, polarity, lines, groups, stroke) on photographed
    # digits, one per condition, at 800x600 (Python reduces larger files before it starts).
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from photos import CONDITIONS, photograph

    files = []
    for i, condition in enumerate(CONDITIONS):
        ink = np.zeros((28, 28))
        ink[6:22, 12:16] = 1  # a "1" ...
        ink[6:10, 8:16] = 1 if i % 2 else 0  # ... or a "7"
        photo = Image.fromarray(photograph(ink, condition, seed=i)).resize((800, 600))
        files.append(tmp_path / f"{condition}.png")
        photo.save(files[-1])
    assert_node_preprocesses_as_python(node, files)


def test_node_reads_the_drawn_example_digits(node):
    rows = node_rows(node, *map(str, EXAMPLES))
    assert [row["label"] for row in rows] == [f.stem for f in EXAMPLES]


def test_node_prints_what_the_cli_prints(node, tmp_path):
    from typer.testing import CliRunner

    from runtime.cli import app

    model = str(ROOT / "exported" / "mnist_cnn.onnx")
    idx = write_idx(tmp_path / "few-idx3-ubyte", synthetic_digits(5)[0])
    inputs = [*map(str, EXAMPLES), str(idx)]
    node_text = run_node(node, "web/classify.js", "--model", model, *inputs)
    cli_text = CliRunner().invoke(app, ["predict", "--model", model, *inputs])
    assert node_text.returncode == cli_text.exit_code == 0, node_text.stderr
    assert node_text.stdout == cli_text.stdout
    node_json = node_rows(node, "--model", model, *inputs)
    cli_json = CliRunner().invoke(app, ["predict", "--model", model, "--json", *inputs])
    for ours, theirs in zip(node_json, map(json.loads, cli_json.stdout.splitlines()), strict=True):
        assert (ours["input"], ours["label"]) == (theirs["input"], theirs["label"])
        assert ours["confidence"] == pytest.approx(theirs["confidence"], abs=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["README.md"], "README.md: expected IDX images (magic 0x00000803), found magic"),
        (["missing.png"], "missing.png: no such file"),
        (["--model", "README.md", "README.md"], "README.md: expected an ONNX model"),
        (["--limit", "0", "README.md"], "--limit: expected a positive integer, found '0'"),
        ([], "INPUT: expected at least one IDX or PNG file, found none"),
    ],
)
def test_node_reports_bad_input_in_one_line(node, args, message):
    result = run_node(node, "web/classify.js", *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
