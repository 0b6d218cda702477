"""The device path on 64-bit ARM, short: one emulated ARM CPU (Cortex-A72, a Raspberry Pi 4's)
and x86 without VNNI (Haswell), 200 test images (emulated Haswell runs the four models on
1,000 in about 8 minutes, too long for every CI run). `python benchmarks/arm64.py` is the full
run."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, real_mnist_dir

pytestmark = [pytest.mark.slow, pytest.mark.mnist]


def test_an_emulated_pi_4_and_haswell_install_and_answer_as_this_machine(tmp_path):
    missing = [t for t in ("qemu-aarch64-static", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        pytest.skip(
            f"needs Debian's qemu-user-static and mmdebstrap ({', '.join(missing)} missing)"
        )
    data = real_mnist_dir()
    if data is None:
        pytest.skip("needs real MNIST: set MNIST_DIR or see the README's Data section")
    command = [
        sys.executable, "benchmarks/arm64.py", "--cpus", "cortex-a72,haswell", "--limit", "200",
        "--data", str(data), "--work", str(ROOT / "build" / "arm64"),
        "--output", str(tmp_path / "arm64.json"), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-2000:]
    a72, haswell = json.loads(done.stdout)["cpus"]
    assert a72["machine"] == "aarch64" and a72["cpu_name"] == "Cortex-A72"
    # Haswell: AVX2 without VNNI, where 8-bit products are added in pairs in 16 bits
    assert haswell["machine"] == "x86_64"
    for cpu in (a72, haswell):
        assert cpu["default_model"] == "mnist_edge.int8.onnx"
        assert cpu["predicted_examples"] == list("0123456789")
        checks = {m["model"]: m for m in cpu["models"]}
        for model, check in checks.items():
            assert check["agreement"] == 1.0, (cpu["cpu"], model)
            # INT8: integer layers, then a float softmax that may differ in its last bit
            assert check["max_abs_diff"] <= (1e-6 if "int8" in model else 1e-5), model
            assert check["accuracy"] == check["x86_accuracy"], model
        assert cpu["evaluate_accuracy"] == checks["mnist_edge.int8.onnx"]["accuracy"]
