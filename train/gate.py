"""Write a model only if it passes its parity checks: into a temporary file beside its path,
checked there, then renamed over the path. A failed check leaves whatever was there before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx

from runtime.errors import ParityError
from runtime.files import atomic_path
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
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        write(tmp)
        report = check(tmp)
        if not report.passed:
            failed = "; ".join(report.failures())
            raise ParityError(f"{out}: not written, parity failed: {failed}{advice}")
        if stamp is not None:
            stamp(tmp, report)
    return report


def save_with_metadata(proto: onnx.ModelProto, path: Path, metadata: dict[str, str]) -> None:
    """Save `proto` to `path` with `metadata` as its metadata_props."""
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, path)
