"""Which model is the default depends on whether the CPU runs 8-bit kernels exactly."""

import pytest

from runtime.cpu import int8_exact


@pytest.mark.parametrize(
    ("machine", "flags", "exact"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, True),
        ("x86_64", {"avx2", "avx_vnni"}, True),
        ("x86_64", {"avx2", "avx512f"}, False),  # vpmaddubsw saturates: keep fp32
        ("AMD64", set(), False),
        ("aarch64", set(), True),
        ("arm64", {"asimd"}, True),
        ("riscv64", {"v"}, False),  # unknown: the safe choice
    ],
)
def test_int8_counts_as_exact_only_with_dot_product_instructions(machine, flags, exact):
    assert int8_exact(machine, flags) is exact
