"""The console examples of the README and docs/ are run and their output compared, so they
cannot drift from what the commands print.

Each ```console block is preceded by a marker saying how it is checked:
    <!-- example: exact -->      the output as printed; `...` in a line matches any text, a line
                                 of `...` alone any number of lines
    <!-- example: shape -->      the figures vary (timings): the same lines, digits aside
    <!-- example: not run: WHY -->
`needs MNIST` in a marker skips the block, saying why, where there is no data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, linear_onnx, real_mnist_dir

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- example: (exact|shape|not run: [^>]+?)(, needs MNIST)? -->")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    mode: str  # exact, shape or not run: ...
    needs_mnist: bool
    steps: tuple[tuple[str, tuple[str, ...]], ...]  # (command, expected output lines)

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.strip() != "```console":
            continue
        marker = MARKER.fullmatch(lines[i - 1].strip()) if i else None
        end = lines.index("```", i + 1)
        steps, command, output = [], None, []
        for text in lines[i + 1 : end]:
            if text.startswith("$ "):
                if command is not None:
                    steps.append((command, tuple(output)))
                command, output = text[2:], []
            else:
                output.append(text)
        if command is not None:
            steps.append((command, tuple(output)))
        found.append(
            Block(
                page,
                i + 1,
                marker.group(1) if marker else "unmarked",
                bool(marker and marker.group(2)),
                tuple(steps),
            )
        )
    return found


ALL = [b for page in PAGES for b in blocks(page)]
RUN = [b for b in ALL if b.mode in ("exact", "shape")]


def matches(expected: list[str], found: list[str], same=lambda e, f: e == f) -> bool:
    """`found` against `expected`, where a line of `...` takes any number of lines."""
    if not expected:
        return not found
    if expected[0].strip() == "...":
        return any(matches(expected[1:], found[k:], same) for k in range(len(found) + 1))
    return bool(found) and same(expected[0], found[0]) and matches(expected[1:], found[1:], same)


def exact_line(expected: str, found: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, found) is not None


def shape_line(expected: str, found: str) -> bool:
    def shape(text: str) -> str:
        return re.sub(r"\d[\d,.]*(e[-+]?\d+)?", "#", " ".join(text.split()))

    return exact_line(shape(expected), shape(found))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """What the examples name, as a user's folder would hold it."""
    work = tmp_path_factory.mktemp("examples")
    (work / "examples").symlink_to(ROOT / "examples")
    shutil.copy(ROOT / "tests" / "data" / "pytorch_mnist_fixed_batch.onnx", work / "net.onnx")
    (work / "notes.txt").write_text("shopping: eggs, milk\n")
    linear_onnx(work / "cifar.onnx", input_shape=["N", 3, 32, 32])
    return work


def test_every_console_example_says_how_it_is_checked():
    unmarked = [b.name for b in ALL if b.mode == "unmarked"]
    assert unmarked == [], "mark each ```console block with <!-- example: ... -->"
    assert len(RUN) >= 6


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.name)
def test_console_example_prints_what_it_shows(block, workdir):
    data = real_mnist_dir()
    if block.needs_mnist and data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MNIST_EDGE_MODEL", None)
    if data is not None:
        env["MNIST_DIR"] = str(data)
    same = exact_line if block.mode == "exact" else shape_line
    status = 0  # each step sees the one before's exit status, as `echo $?` in a shell would
    for command, expected in block.steps:
        done = subprocess.run(
            ["bash", "-c", f"(exit {status}); {{ {command}\n}} 2>&1"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        found, status = done.stdout.splitlines(), done.returncode
        assert matches(list(expected), found, same), (
            f"{block.name}: $ {command}\n--- shown\n" + "\n".join(expected)
            + "\n--- printed\n" + "\n".join(found)
        )  # fmt: skip
