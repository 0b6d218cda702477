"""What a model file is: its contract and where each part came from, signature, metadata, size."""

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
    contract: dict[str, tuple[str, str]]  # part -> (value, metadata | option | inferred | graph)
    assumed: list[str]  # what was inferred, as the one warning line says it
    metadata: dict[str, str]
    chosen: str | None = None  # why this model, when nobody named it

    def to_dict(self) -> dict:
        return asdict(self)


def describe(clf: Classifier, chosen: str | None = None) -> ModelInfo:
    """Describe the model a classifier has loaded (`chosen`: why it is the one in use)."""
    path = Path(clf.path)
    data = path.read_bytes()
    c = clf.contract
    source = c.sources.get
    layout = c.layout + (f", {c.channels} channels" if c.channels > 1 else "")
    contract = {
        "input": (f"{c.input_name} {c.dtype.name}", "graph"),
        "layout": (layout, source("layout", "graph")),
        "pixels": (c.scaling_phrase().removeprefix("pixels "), source("scaling", "graph")),
        "output": (f"{c.output_name}: {c.output}", source("output", "graph")),
        "batch": (str(c.batch) if c.batch else "any", "graph"),
    }
    if c.side != 28:  # LeNet's 32x32, a 20x20 crop: how MNIST's 28x28 is brought there
        how = f"padded by {c.pad}" if c.pad > 0 else f"cropped by {-c.pad}"
        contract["size"] = (f"{c.side}x{c.side}, MNIST's 28x28 {how}", "graph")
    return ModelInfo(
        path=str(path.resolve()),
        format="ort" if data[4:8] == b"ORTM" else "onnx",
        variant=clf.metadata.get("variant", "fp32"),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        inputs=[_tensor(t) for t in clf.session.get_inputs()],
        outputs=[_tensor(t) for t in clf.session.get_outputs()],
        contract=contract,
        assumed=list(c.assumed),
        metadata=dict(sorted(clf.metadata.items())),
        chosen=chosen,
    )


def _tensor(arg) -> Tensor:
    return Tensor(arg.name, list(arg.shape), arg.type)
