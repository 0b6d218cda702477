"""The runtime must work on a device with no TensorFlow: it never imports the training side."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import runtime

FORBIDDEN = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "train")
RUNTIME_DIR = Path(runtime.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(RUNTIME_DIR.glob("*.py")), ids=lambda p: p.name)
def test_runtime_modules_import_nothing_from_the_training_side(path):
    assert not _imported_roots(path) & set(FORBIDDEN)


def test_device_commands_load_no_training_module(tiny_model):
    # Run the real entry point in a fresh interpreter, then list what got imported.
    code = f"""
import json, sys
from runtime.cli import main
sys.argv = ["mnist-edge", "info", "--model", {str(tiny_model)!r}, "--json"]
try:
    main()
except SystemExit as e:
    code = e.code
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({list(FORBIDDEN)!r}))
print(json.dumps({{"exit": code, "loaded": loaded}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"exit": 0, "loaded": ["train"]}  # train.cli itself, nothing heavier


def test_device_commands_write_nothing_to_home(tmp_path):
    # onnxruntime would write a telemetry database and a device id under ~/.cache on every run.
    home = tmp_path / "home"
    home.mkdir()
    digit = Path(__file__).parents[2] / "examples" / "digits" / "7.png"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    for args in (["predict", str(digit)], ["info"], ["bench", "--batch-sizes", "1", "--runs", "5"]):
        command = [sys.executable, "-m", "runtime.cli", *args]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
    assert list(home.rglob("*")) == []
