"""Write a model only if it passes its parity checks: into a temporary file beside its path,
checked there, then renamed over the path. A failed check leaves whatever was there before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx

from runtime.errors import ParityError
from runtime.files import atomic_path, make_parent
from runtime.parity import ParityReport


def write_checked(
    out: Path,
    write: Callable[[Path], None],
    check: Callable[[Path], ParityReport],
    stamp: Callable[[Path, ParityReport], None] | None = None,
    advice: str = "",
) -> ParityReport:
    """`write` fills the temporary file, `check` measures it; on a pass `stamp` may record the
    result in it before it appears at `out`. On a failure: ParityError, every failed check
    named, then `advice`."""
    make_parent(out)
    with atomic_path(out) as tmp:
        write(tmp)
        report = check(tmp)
        if not report.passed:
            failed = "; ".join(report.failures())
            raise ParityError(f"{out}: not written, parity failed: {failed}{advice}")
        if stamp is not None:
            stamp(tmp, report)
    return report


def write_model(
    out: Path,
    proto: onnx.ModelProto,
    metadata: dict[str, str],
    check: Callable[[Path], ParityReport],
    against: str,
    advice: str = "",
) -> ParityReport:
    """`write_checked` for an ONNX model: saved with `metadata`, checked, and on a pass saved
    again with the figures (test accuracy, parity against `against`) in its metadata."""

    def stamp(tmp: Path, report: ParityReport) -> None:
        metadata.update(
            test_accuracy=f"{report.candidate_accuracy:.6f}",
            parity=f"vs {against}: agreement {report.agreement:.6f}, max_abs_diff "
            f"{report.max_abs_diff:.3g} on {report.count} test images",
        )
        metadata[f"{against}_test_accuracy"] = f"{report.reference_accuracy:.6f}"
        save_with_metadata(proto, tmp, metadata)

    def write(tmp: Path) -> None:
        save_with_metadata(proto, tmp, metadata)

    return write_checked(out, write, check, stamp, advice)


def save_with_metadata(proto: onnx.ModelProto, path: Path, metadata: dict[str, str]) -> None:
    """Save `proto` to `path` with `metadata` as its metadata_props."""
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, path)
