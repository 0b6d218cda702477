"""Reading a handwritten number (runtime/segment.py, runtime/read.py, `mnist-edge read`): the
digits found left to right, strokes of one digit kept together, what is not a digit left out,
and every way of failing one line on stderr."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from runtime.cli import app
from runtime.errors import InputError
from runtime.mnist import load_split
from runtime.read import read_number
from runtime.segment import MAX_DIGITS, find_line
from runtime.session import Classifier
from tests.conftest import ROOT, real_mnist_dir

sys.path.insert(0, str(ROOT / "benchmarks"))
from read_numbers import compose, scan

runner = CliRunner()


def page(strokes: list[list[tuple[int, int]]], size=(600, 200), width=9) -> np.ndarray:
    """Strokes drawn dark on white, as float grayscale in [0, 1]."""
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        draw.line(stroke, fill=0, width=width, joint="curve")
    return np.asarray(img, np.float64) / 255


ONE = [[(0, 20), (0, 100)]]  # a "1", to be moved
SEVEN = [[(-25, 20), (25, 20), (-5, 100)]]
FIVE_IN_TWO = [[(-12, 20), (35, 20)], [(-15, 32), (-15, 55), (15, 55), (20, 80), (-20, 100)]]


def at(strokes, x: int, y: int = 40):
    return [[(px + x, py + y) for px, py in s] for s in strokes]


def test_digits_are_found_left_to_right_and_a_floating_bar_stays_with_its_five():
    line = find_line(page(at(SEVEN, 80) + at(FIVE_IN_TWO, 220) + at(ONE, 360)))
    assert len(line.digits) == 3
    lefts = [d.left * line.factor for d in line.digits]
    assert lefts == sorted(lefts)
    five = line.digits[1]
    assert five.right * line.factor >= 220 + 30  # its box holds the bar, which floats apart
    assert five.top * line.factor <= 40 + 20


def test_specks_and_an_underline_are_not_digits():
    strokes = at(SEVEN, 100) + at(ONE, 250) + at(SEVEN, 400)
    # an underline, thicker than a ruled line is
    strokes += [[(130, 168 + dy), (400, 170 + dy)] for dy in range(0, 8, 2)]
    strokes += [[(x, 185), (x + 1, 185)] for x in (150, 320, 500)]  # specks
    line = find_line(page(strokes, width=7))
    assert len(line.digits) == 3


def test_two_lines_of_digits_are_refused_in_one_line():
    strokes = at(SEVEN, 100, 10) + at(ONE, 250, 10) + at(SEVEN, 100, 180) + at(ONE, 250, 180)
    with pytest.raises(InputError, match="one line"):
        find_line(page(strokes, size=(500, 320)))


def test_a_blank_page_and_too_many_digits_are_refused():
    with pytest.raises(InputError, match="no writing"):
        find_line(page([]))
    ticks = [[(20 + 30 * i, 60), (20 + 30 * i, 140)] for i in range(MAX_DIGITS + 8)]
    with pytest.raises(InputError, match=f"at most {MAX_DIGITS}"):
        find_line(page(ticks, size=(20 + 30 * (MAX_DIGITS + 9), 200), width=6))


@pytest.fixture(scope="module")
def sure_digits():
    """MNIST test digits the default model reads right by themselves, surely: what is left
    to get wrong is finding them."""
    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    test = load_split("test", data)
    with Classifier() as clf:
        probs = clf.predict_proba(test.images[:2000])
    sure = np.nonzero((probs.argmax(1) == test.labels[:2000]) & (probs.max(1) > 0.99))[0]
    return test.images[sure], test.labels[sure]


@pytest.mark.parametrize("kind, least", [("separated", 26), ("touching", 5)])  # of 30
def test_five_digit_numbers_are_read_digit_for_digit(sure_digits, kind, least):
    images, labels = sure_digits
    rng = np.random.default_rng(7)
    right = 0
    with Classifier() as clf:
        for _ in range(30):
            picks = rng.integers(0, len(labels), 5)
            gray = scan(compose([images[i] for i in picks], kind, rng))
            right += read_number(clf, gray).text() == "".join(str(labels[i]) for i in picks)
    assert right >= least, right


def number_file(tmp_path, sure_digits, name="n.png", upscale=1):
    images, labels = sure_digits
    picks = [0, 1, 2]
    gray = scan(compose([images[i] for i in picks], "separated", np.random.default_rng(0)))
    img = Image.fromarray(np.uint8(gray * 255))
    img = img.resize((img.width * upscale, img.height * upscale))
    img.save(tmp_path / name)
    return tmp_path / name, "".join(str(labels[i]) for i in picks), img.size


def test_read_prints_the_number_and_json_gives_each_digit_with_its_box(tmp_path, sure_digits):
    path, number, (width, height) = number_file(tmp_path, sure_digits, upscale=5)  # decoded smaller
    result = runner.invoke(app, ["read", str(path)])
    assert result.exit_code == 0, result.output
    name, text, confidences = result.stdout.strip().split("\t")
    assert (name, text) == (str(path), number)
    assert len(confidences.split()) == len(number)
    result = runner.invoke(app, ["read", str(path), "--json", "--top-k", "2"])
    row = json.loads(result.stdout)
    assert row["number"] == number
    boxes = [d["box"] for d in row["digits"]]
    assert [len(d["top_k"]) for d in row["digits"]] == [2, 2, 2]
    for b in boxes:
        assert b["x"] >= 0 and b["x"] + b["w"] <= width and b["y"] + b["h"] <= height
    assert boxes[0]["h"] > 0.4 * height  # in the file's pixels, not the decoded picture's
    assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)


def test_unsure_digits_print_as_question_marks_and_exit_1(tmp_path, sure_digits):
    path, number, _ = number_file(tmp_path, sure_digits)
    result = runner.invoke(app, ["read", str(path), "--min-confidence", "1.0"])
    assert result.exit_code == 1
    text = result.stdout.split("\t")[1]
    assert len(text) == len(number) and set(text) <= set(number) | {"?"} and "?" in text


def test_annotate_draws_the_boxes_on_a_copy_of_the_image(tmp_path, sure_digits):
    path, _, size = number_file(tmp_path, sure_digits)
    out = tmp_path / "out" / "annotated.png"
    result = runner.invoke(app, ["read", str(path), "--annotate", str(out)])
    assert result.exit_code == 0, result.output
    drawn = np.asarray(Image.open(out).convert("RGB"), np.int16)
    assert drawn.shape[:2] == (size[1], size[0])
    green = (drawn[..., 1] > 120) & (drawn[..., 0] < 60) & (drawn[..., 2] < 60)
    assert green.sum() > 100  # the boxes, in the colour of sure digits
    assert sorted(p.name for p in out.parent.iterdir()) == ["annotated.png"]  # no temporaries


def test_read_failures_are_one_line_naming_the_file(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (300, 100), 255).save(blank)
    for path, fragment in ((blank, "no writing"), (tmp_path / "none.png", "no such file")):
        result = runner.invoke(app, ["read", str(path)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and fragment in lines[0], lines


def test_annotate_never_writes_over_the_image_it_reads(tmp_path, sure_digits):
    path, _, _ = number_file(tmp_path, sure_digits)
    before = path.read_bytes()
    result = runner.invoke(app, ["read", str(path), "--annotate", str(path)])
    assert result.exit_code == 2 and "--annotate" in result.stderr
    assert path.read_bytes() == before


def test_the_example_number_reads_as_it_was_written():
    # examples/draw_digits.py writes "40917" in the hand of the ten example digits
    result = runner.invoke(app, ["read", str(ROOT / "examples" / "number.png")])
    assert result.exit_code == 0, result.output
    assert result.stdout.split("\t")[1] == "40917"


def test_annotate_for_several_images_wants_a_folder_and_says_so_in_one_line(tmp_path):
    number = ROOT / "examples" / "number.png"
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"not a folder")
    result = runner.invoke(app, ["read", str(number), str(number), "--annotate", str(taken)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(taken) in lines[0], lines
    folder = tmp_path / "out"
    result = runner.invoke(app, ["read", str(number), "--annotate", str(folder), str(number)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in folder.iterdir()] == ["number.read.png"]
