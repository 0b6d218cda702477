"""Offline-optimised and ORT-format variants of an exported model, checked against it.

onnxruntime applies its graph optimisations (BatchNorm/activation fusion, constant folding)
once and saves the result: the device skips that work at load time. The `.ort` format is what
onnxruntime's minimal builds for small devices load. Level "extended" is used, not "all": the
latter adds layout transforms tied to the CPU that ran the conversion.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

from runtime.errors import InputError
from runtime.files import writable_target
from runtime.mnist import load_split
from runtime.parity import ParityReport, models_parity
from runtime.session import Classifier
from train.gate import write_checked

FORMATS = {"onnx": ".opt.onnx", "ort": ".ort"}


@dataclass(frozen=True)
class VariantResult:
    path: str
    format: str
    size_bytes: int
    load_ms_source: float
    load_ms_variant: float
    parity: ParityReport


def optimize_file(
    source: Path, fmt: str = "onnx", out: Path | None = None, data: Path | None = None
) -> VariantResult:
    """Write the optimised variant of `source` in `fmt` (onnx or ort) if it matches `source`."""
    if fmt not in FORMATS:
        raise InputError(f"--format: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    source = Path(source)
    reference = Classifier(source)
    out = Path(out) if out else source.with_name(source.name.removesuffix(".onnx") + FORMATS[fmt])
    writable_target(out)  # before the work, not after it
    with tempfile.TemporaryDirectory() as tmp:
        tagged = Path(tmp) / "tagged.onnx"
        model = onnx.load(source)
        onnx.helper.set_model_props(
            model,
            {
                **reference.metadata,
                "variant": f"{reference.metadata.get('variant', 'fp32')}, "
                f"optimised offline ({fmt})",
            },
        )
        onnx.save(model, tagged)

        def write(tmp_out: Path) -> None:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.optimized_model_filepath = str(tmp_out)
            if fmt == "ort":
                opts.add_session_config_entry("session.save_model_format", "ORT")
            ort.InferenceSession(str(tagged), opts, providers=["CPUExecutionProvider"])

        def check(tmp_out: Path) -> ParityReport:
            test = load_split("test", data)
            with Classifier(tmp_out) as variant:
                return models_parity(reference, variant, test.images, test.labels, int8=False)

        report = write_checked(out, write, check)
    return VariantResult(str(out), fmt, out.stat().st_size, _load_ms(source), _load_ms(out), report)


def _load_ms(path: Path, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        Classifier(path).close()
        best = min(best, time.perf_counter() - start)
    return round(best * 1e3, 2)
