"""Where a batch-1 call's time goes, op by op, without the profiler.

onnxruntime's own profiler costs more per op than the ops of an MNIST model (a 21 us call reads
74 us profiled). This times the model cut after each of its nodes instead, beside an Identity
of the same input (the cost of a call itself): each op's cost is the difference between one cut
and the one before. Bare sessions, one thread (none spins), rounds interleaved, p50 per call.
A cut ends on an output onnxruntime may have to convert back from its own layout (after an NHWC
convolution, a Transpose), so one op's figure can come out negative and the next one larger;
their sum stays right.

    python benchmarks/op_costs.py [--model exported/mnist_edge.int8.onnx] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from measure import call_p50_us
from onnx import helper, shape_inference

ROOT = Path(__file__).resolve().parent.parent


def cuts(model: onnx.ModelProto) -> list[tuple[str, onnx.ModelProto]]:
    """(label, model) for an Identity of the input, then the model cut after each node."""
    model = shape_inference.infer_shapes(model)
    known = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    source = model.graph.input[0]
    identity = helper.make_graph(
        [helper.make_node("Identity", [source.name], ["copy"])],
        "call",
        [source],
        [helper.make_tensor_value_info("copy", source.type.tensor_type.elem_type, None)],
    )
    out = [("the call (Identity)", helper.make_model(identity, opset_imports=model.opset_import))]
    for k, node in enumerate(model.graph.node, 1):
        cut = onnx.ModelProto()
        cut.CopyFrom(model)
        del cut.graph.node[k:]
        del cut.graph.output[:]
        name = node.output[0]  # contrib ops (QGemm) have no inferred type: theirs is uint8
        fallback = helper.make_tensor_value_info(name, onnx.TensorProto.UINT8, None)
        cut.graph.output.append(known.get(name, fallback))
        out.append((f"{node.op_type} {node.name}", cut))
    return out


def timings(models: list[onnx.ModelProto], image: np.ndarray, rounds: int, calls: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3  # a cut leaves initializers unused: one warning each
    sessions = [ort.InferenceSession(m.SerializeToString(), options) for m in models]
    seen = [[] for _ in sessions]
    for _ in range(rounds):
        for session, times in zip(sessions, seen, strict=True):
            times.append(call_p50_us(session, {session.get_inputs()[0].name: image}, calls))
    return [float(np.median(t)) for t in seen]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "exported/mnist_edge.int8.onnx")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per cut a round")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    model = onnx.load(args.model)
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    dtype = helper.tensor_dtype_to_np_dtype(model.graph.input[0].type.tensor_type.elem_type)
    image = np.random.default_rng(0).integers(0, 256, dims).astype(dtype)
    labelled = cuts(model)
    cumulative = timings([m for _, m in labelled], image, args.rounds, args.calls)
    rows, before = [], 0.0
    for (label, _), us in zip(labelled, cumulative, strict=True):
        rows.append({"op": label, "cumulative_us": round(us, 2), "op_us": round(us - before, 2)})
        before = us
    print(f"{args.model.name}, batch 1, one thread, p50 over {args.rounds} interleaved rounds")
    for row in rows:
        print(f"{row['op_us']:+7.2f} us  (cumulative {row['cumulative_us']:6.2f})  {row['op']}")
    if args.json:
        result = {"model": args.model.name, "batch": 1, "threads": 1, "ops": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
