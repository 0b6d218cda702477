"""What the processor is and can do, as far as choosing a model goes."""

from __future__ import annotations

import platform
from pathlib import Path

X86 = ("x86_64", "amd64", "i386", "i686")
ARM64 = ("aarch64", "arm64")
# x86 instructions that multiply 8-bit integers into 32-bit sums without saturating.
X86_INT8_DOT = {"avx512_vnni", "avx_vnni"}
# Without them, onnxruntime's AVX2 kernels multiply-add pairs into 16 bits (vpmaddubsw), which
# can saturate in general; for the shipped INT8 model it did not change one bit (below).
X86_INT8_AVX2 = "avx2"
# ARM's own cores by "CPU part" (implementer 0x41), as /proc/cpuinfo gives them on ARM.
ARM_CORES = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2",
    "0xd4b": "Cortex-A78C",
    "0xd4f": "Neoverse-V2",
}
_DEVICE_TREE_MODEL = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))


def cpu_name() -> str:
    """x86: its model name. ARM: the board (device tree) and the core (CPU part), as known."""
    info = _cpuinfo()
    if name := _field(info, "model name"):
        return name
    board = _board()
    part = _field(info, "CPU part")
    core = ARM_CORES.get(part) if _field(info, "CPU implementer") == "0x41" else None
    if board and core:
        return f"{board} ({core})"
    return board or core or (f"ARM CPU part {part}" if part else platform.processor() or "unknown")


def cpu_flags() -> set[str]:
    line = _field(_cpuinfo(), "flags") or _field(_cpuinfo(), "Features") or ""
    return set(line.split())


def int8_exact(machine: str | None = None, flags: set[str] | None = None) -> bool:
    """Whether onnxruntime's uint8 x int8 kernels give the INT8 model's exact answers here."""
    return int8_choice(machine, flags)[0]


def int8_choice(machine: str | None = None, flags: set[str] | None = None) -> tuple[bool, str]:
    """(INT8 or not, on what that rests). The evidence: benchmarks/arm64.py, which compares
    the shipped INT8 model's probabilities under emulation with this project's x86 machine."""
    machine = (machine or platform.machine()).lower()
    if machine in ARM64:
        return True, (
            "64-bit ARM: onnxruntime's 8-bit kernels widen before they add; the INT8 model's "
            "labels matched x86 VNNI's on all 10,000 test images, probabilities within 3e-7 "
            "(emulated Cortex-A72 and A76)"
        )
    if machine in X86:
        flags = cpu_flags() if flags is None else flags
        if found := X86_INT8_DOT & flags:
            return True, f"x86 with {sorted(found)[0]}: 8-bit dot products without saturation"
        if X86_INT8_AVX2 in flags:
            return True, (
                "x86 with AVX2, without VNNI: the INT8 model's labels matched VNNI's on all 10,000 "
                "test images, probabilities within 3e-7 (emulated Haswell; speed not measured)"
            )
        return False, "x86 without AVX2: no evidence for onnxruntime's 8-bit kernels here"
    return False, f"{machine}: no evidence for onnxruntime's 8-bit kernels here"


def _board() -> str | None:
    for path in _DEVICE_TREE_MODEL:
        try:
            return path.read_bytes().rstrip(b"\x00\n").decode(errors="replace") or None
        except OSError:
            continue
    return None


def _field(lines: list[str], key: str) -> str | None:
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
