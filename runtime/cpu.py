"""What the processor can do, as far as choosing a model goes."""

from __future__ import annotations

import platform
from pathlib import Path

X86 = ("x86_64", "amd64", "i386", "i686")
ARM64 = ("aarch64", "arm64")
# x86 instructions that multiply 8-bit integers into 32-bit sums without saturating.
X86_INT8_DOT = {"avx512_vnni", "avx_vnni"}


def cpu_name() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def int8_exact(machine: str | None = None, flags: set[str] | None = None) -> bool:
    """Whether onnxruntime's uint8 x int8 kernels compute exactly here.

    On x86 without VNNI they use an 8-bit multiply-add that can saturate and cost accuracy; ARM64
    kernels widen to 16 or 32 bits first. Unknown processors count as inexact.
    """
    machine = (machine or platform.machine()).lower()
    if machine in ARM64:
        return True
    if machine in X86:
        return bool(X86_INT8_DOT & (cpu_flags() if flags is None else flags))
    return False


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
