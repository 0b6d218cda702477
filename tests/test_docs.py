"""The console examples of the README and docs/ are run and their output compared, so they
cannot drift from what the commands print.

Each ```console block is preceded by a marker saying how it is checked:
    <!-- example: exact -->      the output as printed; `...` in a line matches any text, a line
                                 of `...` alone any number of lines
    <!-- example: shape -->      the figures vary (timings): the same lines, digits aside
    <!-- example: not run: WHY -->
`needs MNIST` in a marker skips the block, saying why, where there is no data. A step that
starts `mnist-edge serve` runs in the background until the block ends; its first line is
compared, and the steps after it talk to it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
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
    servers = []
    steps = _on_a_free_port(block.steps)
    try:
        for command, expected in steps:
            if command.startswith("mnist-edge serve"):
                servers.append(_serve(command, expected, workdir, env, block.name, same))
                continue
            status = _step(block, command, expected, workdir, env, same, status)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def _on_a_free_port(steps):
    """The steps with a server's port 8080 replaced by a free one: the example's port may be
    taken on the machine that runs the suite."""
    if not any(command.startswith("mnist-edge serve") for command, _ in steps):
        return steps
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def moved(text: str) -> str:
        return text.replace(":8080", f":{port}")

    return [
        (
            moved(command).replace("mnist-edge serve", f"mnist-edge serve --port {port}", 1),
            tuple(map(moved, expected)),
        )
        for command, expected in steps
    ]


def _serve(command, expected, workdir, env, name, same) -> subprocess.Popen:
    script = f"exec 2>&1\nexec {command}\n"  # a comment in the command ends at its line
    server = subprocess.Popen(
        ["bash", "-c", script], cwd=workdir, env=env, stdout=subprocess.PIPE, text=True
    )
    first = server.stdout.readline().rstrip("\n")  # printed once it listens
    if not matches(list(expected), [first], same):
        server.terminate()  # not left running when the example fails
        server.wait(timeout=30)
        pytest.fail(f"{name}: $ {command}\nprinted: {first}")
    return server


def _step(block, command, expected, workdir, env, same, status) -> int:
    done = subprocess.run(
        ["bash", "-c", f"(exit {status}); {{ {command}\n}} 2>&1"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = done.stdout.splitlines()
    if same is shape_line:  # figures that vary may come with a busy machine's warning
        found = [line for line in found if not line.startswith("warning: the machine was busy")]
    assert matches(list(expected), found, same), (
        f"{block.name}: $ {command}\n--- shown\n" + "\n".join(expected)
        + "\n--- printed\n" + "\n".join(found)
    )  # fmt: skip
    return done.returncode
