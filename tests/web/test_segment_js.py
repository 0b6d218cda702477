"""The web page's number reader (web/segment.js) finds the digits runtime/segment.py finds, cuts
them to the same 28x28 pictures, and chooses the reading runtime/read.py chooses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.errors import InputError
from runtime.mnist import load_split
from runtime.read import plan_file
from runtime.session import Classifier
from tests.conftest import ROOT, real_mnist_dir
from tests.web.conftest import run_node

sys.path.insert(0, str(ROOT / "benchmarks"))
from read_numbers import compose, scan

SCRIPT = """
import fs from "node:fs";
import { createRequire } from "node:module";
import { grayscale } from "./web/preprocess.js";
import { choose, planReading, ReadError } from "./web/segment.js";
const { PNG } = createRequire(`${process.cwd()}/web/package.json`)("pngjs");
const [file, probsFile] = process.argv.slice(1);
const png = PNG.sync.read(fs.readFileSync(file));
try {
  const gray = grayscale(png.data, png.width, png.height, false);
  const plan = planReading(gray, png.width, png.height);
  const probs = probsFile ? Float32Array.from(JSON.parse(fs.readFileSync(probsFile))) : null;
  const read = probs ? choose(plan, probs, "0123456789".split("")) : null;
  console.log(JSON.stringify({ pictures: Array.from(plan.pictures), boxes: plan.boxes, read }));
} catch (e) {
  if (!(e instanceof ReadError)) throw e;
  console.log(JSON.stringify({ error: e.message }));
}
"""


def js_plan(node: str, path: Path, probs: np.ndarray | None = None, scratch: Path | None = None):
    args = [str(path)]
    if probs is not None:
        probs_file = scratch / f"{path.stem}.probs.json"  # never beside a file of the project
        probs_file.write_text(json.dumps(probs.astype(float).ravel().tolist()))
        args.append(str(probs_file))
    result = run_node(node, "--input-type=module", "-e", SCRIPT, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def numbers(tmp_path: Path) -> list[Path]:
    """The example number, and numbers of MNIST test digits: separated, touching, overlapping."""
    files = [ROOT / "examples" / "number.png"]
    data = real_mnist_dir()
    if data is None:
        return files
    test = load_split("test", data)
    rng = np.random.default_rng(3)
    for i, kind in enumerate(["separated", "touching", "overlapping", "touching", "separated"]):
        picks = rng.integers(0, 1000, 3 + i)
        gray = scan(compose([test.images[j] for j in picks], kind, rng))
        files.append(tmp_path / f"{kind}-{i}.png")
        Image.fromarray(np.uint8(np.rint(gray * 255))).convert("RGB").save(files[-1])
    return files


def test_js_finds_and_cuts_the_digits_python_does(node, tmp_path):
    with Classifier() as clf:
        for path in numbers(tmp_path):
            plan = plan_file(path, path.name)
            probs = clf.proba_of_images(plan.pictures)
            found = js_plan(node, path, probs, tmp_path)
            boxes = [{"x": b.x, "y": b.y, "w": b.w, "h": b.h} for b in plan.boxes]
            assert found["boxes"] == boxes, path.name
            pictures = np.array(found["pictures"], np.int16).reshape(-1, 28, 28)
            diff = np.abs(pictures - plan.pictures.astype(np.int16))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.999, path.name  # Lanczos in JS
            expected = plan.choose(probs, clf.contract.labels)
            assert [d["label"] for d in found["read"]] == [d.label for d in expected.digits]
            assert [d["box"] for d in found["read"]] == [
                {"x": d.box.x, "y": d.box.y, "w": d.box.w, "h": d.box.h} for d in expected.digits
            ]


def test_js_refuses_a_blank_page_and_two_lines_as_python_does(node, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 100), "white").save(blank)
    two = tmp_path / "two.png"
    number = Image.open(ROOT / "examples" / "number.png").convert("L")
    sheet = Image.new("L", (number.width, number.height * 2 + 40), 255)
    sheet.paste(number, (0, 0))
    sheet.paste(number, (0, number.height + 40))
    sheet.convert("RGB").save(two)
    for path in (blank, two):
        with pytest.raises(InputError) as refused:
            plan_file(path, path.name)
        assert js_plan(node, path)["error"] == str(refused.value).removeprefix(f"{path.name}: ")
