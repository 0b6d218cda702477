"""Which model is the default depends on whether the CPU runs 8-bit kernels exactly."""

import json

import pytest

from runtime import cpu
from runtime.cpu import int8_exact


@pytest.mark.parametrize(
    ("machine", "flags", "exact"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, True),
        ("x86_64", {"avx2", "avx_vnni"}, True),
        ("x86_64", {"avx2", "avx512f"}, True),  # matched VNNI under emulated Haswell
        ("x86_64", {"sse4_2"}, False),  # no evidence without AVX2: the fp32 model
        ("AMD64", set(), False),
        ("aarch64", set(), True),
        ("arm64", {"asimd"}, True),
        ("riscv64", {"v"}, False),  # unknown: the safe choice
    ],
)
def test_int8_is_the_default_only_where_the_evidence_says_exact(machine, flags, exact):
    assert int8_exact(machine, flags) is exact


A72_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd08
""".splitlines()


@pytest.mark.parametrize(
    ("lines", "board", "name"),
    [
        (
            A72_CPUINFO,
            "Raspberry Pi 4 Model B Rev 1.4",
            "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)",
        ),
        (A72_CPUINFO, None, "Cortex-A72"),
        ([line.replace("0xd08", "0xfff") for line in A72_CPUINFO], None, "ARM CPU part 0xfff"),
        (["model name\t: AMD EPYC 7B13", "flags\t: avx2"], None, "AMD EPYC 7B13"),
    ],
)
def test_the_cpu_is_named_on_arm_as_on_x86(monkeypatch, lines, board, name):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: lines)
    monkeypatch.setattr(cpu, "_board", lambda: board)
    assert cpu.cpu_name() == name


@pytest.mark.parametrize(
    ("machine", "flags", "model", "reason"),
    [
        ("x86_64", "fpu avx2 avx512_vnni", "mnist_edge.int8.onnx", "x86 with avx512_vnni"),
        ("x86_64", "fpu avx2", "mnist_edge.int8.onnx", "x86 with AVX2, without VNNI"),
        ("x86_64", "fpu sse4_2", "mnist_edge.onnx", "x86 without AVX2"),
        ("aarch64", "fp asimd", "mnist_edge.int8.onnx", "64-bit ARM"),
        ("riscv64", "v", "mnist_edge.onnx", "riscv64: no evidence"),
    ],
)
def test_info_says_which_model_is_the_default_and_why(monkeypatch, machine, flags, model, reason):
    from typer.testing import CliRunner

    from runtime.cli import app

    monkeypatch.delenv("MNIST_EDGE_MODEL", raising=False)
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: [f"flags\t: {flags}"])
    out = CliRunner().invoke(app, ["info", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert info["path"].endswith(f"/{model}")
    assert reason in info["chosen"]
