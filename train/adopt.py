"""Adopt a model made elsewhere: a copy that carries its contract in its metadata and, where the
graph allows, takes any batch. Checked against the original before it is written.

Also `probe`: a model's accuracy under the pixel conventions exporters commonly use, for when
nobody remembers how it was trained.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from runtime.contract import FORMAT, Contract, Overrides, image_metadata
from runtime.errors import ModelError, ParityError
from runtime.evaluate import evaluate
from runtime.files import writable_target
from runtime.mnist import load_split
from runtime.parity import ParityReport, models_parity
from runtime.session import Classifier, time_limit
from train.gate import write_model
from train.simplify import static_shapes

# The pixel conventions of common exporters, tried by `probe`.
CONVENTIONS = {
    "pixels in [0, 1]": Overrides(input_range=(0.0, 1.0)),
    "pixels in [-1, 1] (Normalize 0.5/0.5)": Overrides(mean=0.5, std=0.5),
    "pixels 0..255": Overrides(input_range=(0.0, 255.0)),
    "MNIST mean/std (Normalize 0.1307/0.3081)": Overrides(mean=0.1307, std=0.3081),
    "inverted, [0, 1] (a dark digit on white)": Overrides(input_range=(1.0, 0.0)),
}
PROBE_IMAGES = 1000
# Conventions this close to the best (in accuracy) tie: on 1,000 images, 5 digits. A model that
# hardly cares about scale (a plain ReLU MLP) scores 0..255 and [0, 1] within 0.2 points.
TIE = 0.005
# Each check's limit: it stops a graph that never ends (a Loop of 10^15 steps); a model that
# needs longer for 10,000 digits is not one for a device anyway.
CHECK_SECONDS = 300.0
# onnxruntime runs opset 7 and later; an older model is converted by onnx's version converter to
# an opset its adapters reach reliably (13), then checked as every copy is.
OLDEST_RUNNABLE_OPSET = 7
UPGRADE_TO_OPSET = 13


@dataclass(frozen=True)
class AdoptResult:
    path: str
    source: str
    metadata: dict[str, str]  # the contract keys written
    dynamic_batch: bool  # the copy takes any batch
    batch_note: str  # why the batch stayed fixed, or how it was freed
    parity: ParityReport
    opset_note: str = ""  # how an opset onnxruntime no longer runs was upgraded


@dataclass(frozen=True)
class ProbeResult:
    convention: str
    options: str  # the options that select it
    accuracy: float
    ties_best: bool = False  # within TIE of the best: the measurement cannot tell them apart
    declared: bool = False  # the model's own metadata names this convention


def adopt_file(
    source: Path, out: Path, overrides: Overrides, data: Path | None = None
) -> AdoptResult:
    """Write `out`: `source` with its contract (from `overrides`, its metadata, or inferred)
    in its metadata, and a dynamic batch where that gives the same answers."""
    source, out = Path(source), Path(out)
    writable_target(out)  # before the work, not after it
    proto, opset_note = runnable(load_onnx(source), source)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-adopt-") as folder:
        runs = source
        if opset_note:  # the original cannot run: its upgrade is what the copy is checked against
            runs = Path(folder) / source.name
            onnx.save(proto, runs)
        with Classifier(runs, overrides=overrides) as original:
            result = _adopt(original, source, proto, out, load_split("test", data))
    return replace(result, opset_note=opset_note)


def _adopt(original: Classifier, source: Path, proto, out: Path, test) -> AdoptResult:
    contract = original.contract
    metadata = {**original.metadata, **contract_metadata(contract, source)}
    dynamic, note = proto, "the model already takes any batch"
    if contract.batch is not None:
        dynamic, note = free_batch(proto, contract)

    def check(tmp: Path) -> ParityReport:
        doing = f"score the {len(test.images):,} test images"
        with (
            Classifier(tmp) as copy,
            time_limit(original, CHECK_SECONDS, doing),
            time_limit(copy, CHECK_SECONDS, doing),
        ):
            return models_parity(original, copy, test.images, test.labels, int8=False)

    try:
        report = write_model(out, _denoted(dynamic, contract), metadata, check, against="original")
    except (ParityError, ModelError) as e:
        if dynamic is proto:
            raise
        note = f"kept the fixed batch of {contract.batch}: the copy with any batch failed ({e})"
        report = write_model(out, _denoted(proto, contract), metadata, check, against="original")
        dynamic = None
    return AdoptResult(
        path=str(out),
        source=str(source),
        metadata=contract_metadata(contract, source),
        dynamic_batch=dynamic is not None,
        batch_note=note,
        parity=report,
    )


def runnable(model: onnx.ModelProto, source: Path) -> tuple[onnx.ModelProto, str]:
    """`model`, upgraded to an opset onnxruntime runs where it is older; and what was done."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= OLDEST_RUNNABLE_OPSET:
        return model, ""
    try:
        upgraded = version_converter.convert_version(model, UPGRADE_TO_OPSET)
    except Exception as e:  # the converter raises bare RuntimeErrors and more
        reason = " ".join(str(e).split())[:300]
        raise ModelError(
            f"{source}: opset {opset} is older than onnxruntime runs, and onnx's version "
            f"converter could not upgrade it to {UPGRADE_TO_OPSET}: {reason}"
        ) from None
    return upgraded, f"opset {opset} upgraded to {UPGRADE_TO_OPSET} (onnxruntime runs 7 and later)"


def _denoted(model: onnx.ModelProto, contract: Contract) -> onnx.ModelProto:
    """A copy whose image input carries ONNX's denotations: IMAGE on the tensor, DATA_BATCH and
    DATA_CHANNEL on its dimensions, as the spec's image convention has them."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    (value,) = [i for i in copy.graph.input if i.name == contract.input_name]
    value.type.denotation = "IMAGE"
    dims = value.type.tensor_type.shape.dim
    channel = {"NCHW": 1, "NHWC": 3}.get(contract.layout)
    if dims:
        dims[0].denotation = "DATA_BATCH"
    if channel is not None and len(dims) > channel:
        dims[channel].denotation = "DATA_CHANNEL"
    return copy


def load_onnx(source: Path) -> onnx.ModelProto:
    """The model with its external data, or one line on why onnx will not read it (data that
    points outside the model's folder, say, in an initializer onnxruntime never loads)."""
    try:
        return onnx.load(source)
    except (onnx.checker.ValidationError, OSError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise ModelError(f"{source}: onnx cannot read the model: {reason}") from None


def contract_metadata(contract: Contract, source: Path) -> dict[str, str]:
    """The metadata keys that let later commands read the model with no options."""
    data = Path(source).read_bytes()
    image = image_metadata(contract.pixel_scale, contract.pixel_offset, contract.channels)
    return {
        **image,  # ONNX's own words for it, where they exist, beside ours
        "format": FORMAT,
        "input_layout": contract.layout,
        "pixel_scale": repr(contract.pixel_scale),
        "pixel_offset": repr(contract.pixel_offset),
        "output": contract.output,
        "output_name": contract.output_name,
        "labels": ",".join(contract.labels),
        "pixel_pad": str(contract.pad),
        "adopted_from": f"{Path(source).name} sha256 {hashlib.sha256(data).hexdigest()}",
    }


def free_batch(model: onnx.ModelProto, contract: Contract) -> tuple[onnx.ModelProto, str]:
    """A copy whose batch dimension is symbolic: inputs, outputs, and constant Reshape targets
    that name the fixed batch. Whether it still computes the same is for the caller to check."""
    batch = contract.batch
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    inferred = static_shapes(copy)
    # old exporters list initializers as inputs too: that makes them overridable and unfoldable
    initializers = {t.name for t in graph.initializer}
    kept = [i for i in graph.input if i.name not in initializers]
    if len(kept) < len(graph.input):
        del graph.input[:]
        graph.input.extend(kept)
        copy.ir_version = max(copy.ir_version, 4)  # IR 3 wants every initializer listed
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = "batch"
    rewritten = 0
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
            continue
        target = numpy_helper.to_array(constants[node.input[1]])
        if len(target) and target[0] == batch:
            shape = inferred.get(node.output[0])
            new = np.array([-1, *target[1:]], np.int64)
            if -1 in target[1:]:
                if shape is None or 0 in shape[1:]:
                    continue
                new = np.array([-1, *shape[1:]], np.int64)
            name = f"{node.input[1]}_any_batch"
            graph.initializer.append(numpy_helper.from_array(new, name))
            node.input[1] = name
            rewritten += 1
    used = {i for n in graph.node for i in n.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    del graph.value_info[:]  # shapes inferred at the fixed batch no longer hold
    note = f"batch {batch} made dynamic"
    if rewritten:
        note += f" ({rewritten} constant Reshape target{'s' if rewritten > 1 else ''} rewritten)"
    return copy, note


def probe(
    source: Path, overrides: Overrides, data: Path | None = None, count: int = PROBE_IMAGES
) -> list[ProbeResult]:
    """Accuracy on the first `count` test images under each convention, best first."""
    test = load_split("test", data)
    images, labels = test.images[:count], test.labels[:count]
    with Classifier(source, overrides=overrides) as clf:
        raw_only = clf.contract.dtype == np.uint8  # a uint8 input takes raw pixels alone
        said = clf.contract.sources.get("scaling") in ("metadata", "image metadata")
        declared = (clf.contract.pixel_scale, clf.contract.pixel_offset) if said else None
    results = []
    for name, convention in CONVENTIONS.items():
        if raw_only and convention.scaling() != (1.0, 0.0):
            continue
        chosen = replace(
            overrides,
            mean=convention.mean,
            std=convention.std,
            input_range=convention.input_range,
        )
        doing = f"score {len(images):,} test images"
        with Classifier(source, overrides=chosen) as clf, time_limit(clf, CHECK_SECONDS, doing):
            accuracy = evaluate(clf, images, labels).accuracy
        names_it = declared is not None and np.allclose(convention.scaling(), declared)
        results.append(ProbeResult(name, _spelling(convention), accuracy, declared=names_it))
    best = max(r.accuracy for r in results)
    results = [replace(r, ties_best=best - r.accuracy <= TIE) for r in results]
    return sorted(results, key=lambda r: -r.accuracy)


def probe_verdict(results: list[ProbeResult]) -> list[str]:
    """What the measurements can and cannot tell, in a line or two."""
    declared = [r for r in results if r.declared]
    if declared:
        return [f"the model's metadata names its convention: {declared[0].options}"]
    tied = [r for r in results if r.ties_best]
    if len(tied) > 1:
        names = ", ".join(r.options for r in tied)
        return [
            f"a tie: {names} score within {TIE:.1%} of each other, which 1,000 digits cannot "
            "tell apart: prefer what you know of how the model was trained"
        ]
    if len(results) == 1:  # a uint8 input: raw pixels are the only convention it takes
        return [f"one convention applies (a uint8 input takes raw pixels): {results[0].options}"]
    return [f"best by {results[0].accuracy - results[1].accuracy:.2%}: {results[0].options}"]


def _spelling(o: Overrides) -> str:
    if o.input_range is not None:
        low, high = o.input_range
        return f"--input-range {low:g},{high:g}"
    return f"--mean {o.mean:g} --std {o.std:g}"


def to_dict(result: AdoptResult) -> dict:
    return {**asdict(result), "parity": result.parity.to_dict()}
