"""What a model file is: its contract, signature, metadata and size."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.session import Classifier


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: list
    type: str


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: str  # "onnx" or "ort" (onnxruntime's format for minimal builds)
    variant: str  # "fp32", "int8", "..., optimised offline"
    size_bytes: int
    sha256: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    layout: str
    pixel_scale: float
    output: str
    assumed: list[str]
    metadata: dict[str, str]

    def to_dict(self) -> dict:
        return asdict(self)


def describe(clf: Classifier) -> ModelInfo:
    """Describe the model a classifier has loaded."""
    path = Path(clf.path)
    data = path.read_bytes()
    c = clf.contract
    return ModelInfo(
        path=str(path.resolve()),
        format="ort" if data[4:8] == b"ORTM" else "onnx",
        variant=clf.metadata.get("variant", "fp32"),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        inputs=[_tensor(t) for t in clf.session.get_inputs()],
        outputs=[_tensor(t) for t in clf.session.get_outputs()],
        layout=c.layout,
        pixel_scale=c.pixel_scale,
        output=c.output,
        assumed=list(c.assumed),
        metadata=dict(sorted(clf.metadata.items())),
    )


def _tensor(arg) -> Tensor:
    return Tensor(arg.name, list(arg.shape), arg.type)
