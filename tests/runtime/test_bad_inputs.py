"""Every kind of bad input a device may be fed, through the CLI, as a user sees it.

Each row: how to make the input, the command, and what the user must see. Failures must be one
line on stderr naming the file or argument with expected vs found, a non-zero exit and no
traceback; accepted-with-conversion inputs must say what was done.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from runtime.cli import app
from tests.conftest import idx_bytes, linear_onnx, synthetic_digits, write_idx

runner = CliRunner()


def _digit_png(path: Path, mode: str = "L") -> Path:
    a = np.full((60, 40), 255, np.uint8)
    a[10:50, 18:24] = 0
    img = Image.fromarray(a)
    if mode == "I;16":
        img = Image.fromarray(a.astype(np.uint16) * 257)
    elif mode == "RGBA":
        rgba = np.zeros((60, 40, 4), np.uint8)
        rgba[10:50, 18:24] = (0, 0, 0, 255)
        img = Image.fromarray(rgba, "RGBA")
    elif mode != "L":
        img = img.convert(mode)
    img.save(path)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(path: Path) -> Path:
    """A valid PNG header claiming 40000 x 40000 pixels (1.6 gigapixels); the data is tiny."""
    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 40001)  # one row; the decoder never gets that far
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    return path


def _animated_gif(path: Path) -> Path:
    frames = [Image.new("L", (30, 30), c) for c in (0, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    return path


def _multipage_tiff(path: Path) -> Path:
    pages = [Image.new("L", (30, 30), c) for c in (0, 255, 128)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def _truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=True)
    return path


def _raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _blank(path: Path) -> Path:
    Image.new("L", (40, 40), 255).save(path)
    return path


def _nan_images() -> np.ndarray:
    x = np.zeros((2, 28, 28), np.float32)
    x[1, 3, 3] = np.nan
    return x


def _inf_images() -> np.ndarray:
    x = np.zeros((1, 784), np.float64)
    x[0, 5] = np.inf
    return x


# (id, make input in tmp -> path, expected fragments on stderr)
PREDICT_FAILURES = [
    (
        "not-an-image",
        lambda t: _raw(t / "a.png", b"hello, not a picture"),
        ["a.png", "not an image"],
    ),
    ("empty-image", lambda t: _raw(t / "e.png", b""), ["e.png", "empty file"]),
    (
        "truncated-png",
        lambda t: _truncated(t / "t.png", _digit_png(t / "full.png")),
        ["t.png", "cannot decode"],
    ),
    ("decompression-bomb", lambda t: _bomb_png(t / "bomb.png"), ["bomb.png", "too large"]),
    ("animated-gif", lambda t: _animated_gif(t / "anim.gif"), ["anim.gif", "found 2 frames"]),
    (
        "multi-page-tiff",
        lambda t: _multipage_tiff(t / "pages.tif"),
        ["pages.tif", "found 3 frames"],
    ),
    ("blank-image", lambda t: _blank(t / "b.png"), ["b.png", "blank"]),
    (
        "wrong-rank",
        lambda t: _npy(t / "r.npy", np.zeros((2, 2, 28, 28), np.uint8)),
        ["r.npy", "found (2, 2, 28, 28)"],
    ),
    (
        "wrong-size",
        lambda t: _npy(t / "s.npy", np.zeros((3, 32, 32), np.uint8)),
        ["s.npy", "found (3, 32, 32)"],
    ),
    (
        "object-dtype",
        lambda t: _npy(t / "o.npy", np.array([None, 1], dtype=object)),
        ["o.npy", "cannot read .npy"],
    ),
    ("strings", lambda t: _npy(t / "u.npy", np.full((28, 28), "x")), ["u.npy", "dtype <U1"]),
    (
        "complex",
        lambda t: _npy(t / "c.npy", np.zeros((28, 28), np.complex64)),
        ["c.npy", "complex64"],
    ),
    ("nan", lambda t: _npy(t / "n.npy", _nan_images()), ["n.npy", "NaN or inf"]),
    ("inf", lambda t: _npy(t / "i.npy", _inf_images()), ["i.npy", "NaN or inf"]),
    (
        "idx-wrong-magic",
        lambda t: _raw(t / "w-idx3-ubyte", b"\x00\x00\x07\x03" + bytes(20)),
        ["w-idx3-ubyte", "not an IDX file"],
    ),
    (
        "idx-truncated",
        lambda t: _raw(t / "tr-idx3-ubyte", idx_bytes(synthetic_digits(3)[0])[:-50]),
        ["tr-idx3-ubyte", "truncated"],
    ),
    (
        "idx-dims-disagree",
        lambda t: _raw(t / "d-idx3-ubyte", idx_bytes(synthetic_digits(3)[0]) + bytes(784)),
        ["d-idx3-ubyte", "trailing bytes"],
    ),
    (
        "idx-label-file",
        lambda t: write_idx(t / "l-idx1-ubyte", np.arange(5, dtype=np.uint8)),
        ["l-idx1-ubyte", "label"],
    ),
    ("missing-file", lambda t: t / "nothing.png", ["nothing.png", "no such file"]),
    ("folder", lambda t: t, [": expected a file, found a folder"]),
]


@pytest.mark.parametrize(
    ("make", "fragments"), [r[1:] for r in PREDICT_FAILURES], ids=[r[0] for r in PREDICT_FAILURES]
)
def test_bad_inputs_to_predict_get_one_clear_line(tmp_path, tiny_model, make, fragments):
    result = runner.invoke(app, ["predict", str(make(tmp_path)), "--model", str(tiny_model)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


# Inputs that are odd but valid: accepted, with a warning where something was converted.
PREDICT_ACCEPTED = [
    ("16-bit-png", lambda t: _digit_png(t / "d16.png", "I;16"), None),
    ("palette-png", lambda t: _digit_png(t / "p.png", "P"), None),
    ("rgba-transparent", lambda t: _digit_png(t / "rgba.png", "RGBA"), None),
    ("cmyk-jpeg", lambda t: _digit_png(t / "c.jpg", "CMYK"), None),
    ("floats-0-255", lambda t: _npy(t / "f.npy", np.full((1, 28, 28), 200.0)), "divided by 255"),
]


@pytest.mark.parametrize(
    ("make", "warning"), [r[1:] for r in PREDICT_ACCEPTED], ids=[r[0] for r in PREDICT_ACCEPTED]
)
def test_odd_but_valid_inputs_are_classified(tmp_path, tiny_model, make, warning):
    result = runner.invoke(app, ["predict", str(make(tmp_path)), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    if warning:
        assert result.stderr.startswith("warning: ") and warning in result.stderr
    else:
        assert result.stderr == ""


def test_empty_batch_gives_empty_output(tmp_path, tiny_model):
    path = _npy(tmp_path / "none.npy", np.zeros((0, 28, 28), np.uint8))
    result = runner.invoke(app, ["predict", str(path), "--model", str(tiny_model)])
    assert result.exit_code == 0 and result.stdout == ""


MODEL_FAILURES = [
    ("missing", lambda t: t / "none.onnx", "no such model file"),
    ("empty", lambda t: _raw(t / "m.onnx", b""), "empty file"),
    (
        "not-onnx",
        lambda t: _raw(t / "m.onnx", b"<html>not a model</html>" * 20),
        "expected an ONNX model",
    ),
    (
        "truncated",
        lambda t: _truncated(t / "m.onnx", linear_onnx(t / "full.onnx")),
        "expected an ONNX model",
    ),
    (
        "other-contract",
        lambda t: linear_onnx(t / "m.onnx", ("N", 3, 32, 32)),
        "(one channel at other sides: [N, 1, 32, 32]), found ['N', 3, 32, 32]",
    ),
]


@pytest.mark.parametrize(
    ("make", "fragment"), [r[1:] for r in MODEL_FAILURES], ids=[r[0] for r in MODEL_FAILURES]
)
def test_bad_model_files_get_one_clear_line(tmp_path, make, fragment):
    path = make(tmp_path)
    result = runner.invoke(app, ["info", "--model", str(path)])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and path.name in line and fragment in line


def test_model_without_our_metadata_is_used_and_says_what_was_assumed(tmp_path):
    path = linear_onnx(tmp_path / "foreign.onnx")
    result = runner.invoke(app, ["info", "--model", str(path)])
    assert result.exit_code == 0
    assert "layout     NHWC  (inferred)" in result.stdout
    assert "pixels     scaled to [0, 1]  (inferred)" in result.stdout
    assert "output     probabilities: probabilities  (inferred)" in result.stdout
    digits = _npy(tmp_path / "d.npy", synthetic_digits(2)[0])
    predicted = runner.invoke(app, ["predict", str(digits), "--model", str(path)])
    assert predicted.exit_code == 0 and len(predicted.stdout.splitlines()) == 2
    assert predicted.stderr.startswith("warning: ") and "no mnist-edge metadata" in predicted.stderr


DATA_FAILURES = [
    (
        "labels-out-of-range",
        "t10k-labels-idx1-ubyte.gz",
        lambda: np.full(20, 10, np.uint8),
        "expected labels 0-9",
    ),
    (
        "count-mismatch",
        "t10k-labels-idx1-ubyte.gz",
        lambda: np.zeros(5, np.uint8),
        "expected 20 labels",
    ),
    (
        "wrong-image-size",
        "t10k-images-idx3-ubyte.gz",
        lambda: np.zeros((20, 30, 30), np.uint8),
        "expected images shaped (N, 28, 28)",
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "fragment"), [r[1:] for r in DATA_FAILURES], ids=[r[0] for r in DATA_FAILURES]
)
def test_bad_mnist_folders_get_one_clear_line(mnist_folder, tiny_model, name, make, fragment):
    write_idx(mnist_folder / name, make(), compress=True)
    result = runner.invoke(
        app, ["evaluate", "--model", str(tiny_model), "--data", str(mnist_folder)]
    )
    assert result.exit_code == 2
    assert name in result.stderr and fragment in result.stderr


def test_npz_missing_keys_get_one_clear_line(tmp_path, tiny_model):
    path = tmp_path / "mnist.npz"
    np.savez(path, x_test=np.zeros((2, 28, 28), np.uint8))
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_model), "--data", str(path)])
    assert result.exit_code == 2
    assert "expected keys 'x_test' and 'y_test'" in result.stderr
