"""The shipped fp32 models' weights as TensorFlow.js layers models (model.json + weights.bin),
for the side-by-side of TF.js and onnxruntime (benchmarks/tfjs.py).

The weights come from the exported ONNX files, whose parity with Keras was checked at export:
the `tensorflowjs` converter would need the Keras files (not shipped) and pins its own
TensorFlow. Only the two graphs shipped are known here: the seed's MLP and the edge CNN (its
BatchNorm folded into each Conv's bias). Keras flattens (h, w, c) where the ONNX graph, in
NCHW, flattens (c, h, w): the dense layer's rows are reordered to match.

    python benchmarks/tfjs_models.py OUT_DIR     # writes OUT_DIR/{mlp,edge}/model.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {
    "mlp": ROOT / "exported" / "mnist_mlp.onnx",
    "edge": ROOT / "exported" / "mnist_edge.onnx",
}


def layers_of(path: Path) -> tuple[list[dict], list[tuple[str, np.ndarray]]]:
    """The Keras-style layer configs and named float32 weights of a shipped ONNX graph."""
    model = onnx.load(path)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = list(model.graph.node)
    ops = [node.op_type for node in nodes] + [None, None]
    layers: list[dict] = []
    named: list[tuple[str, np.ndarray]] = []
    spatial = None  # (channels, height, width) after the last conv, for the flatten
    size = 28
    for n, node in enumerate(nodes):
        if node.op_type == "Conv":
            strides = [int(s) for a in node.attribute if a.name == "strides" for s in a.ints]
            kernel = weights[node.input[1]]  # (out, in, kh, kw)
            name = f"conv{sum(layer['class_name'] == 'Conv2D' for layer in layers) + 1}"
            size = -(-size // strides[0])  # "same" padding: ceil(size / stride)
            spatial = (kernel.shape[0], size, size)
            layers.append(_layer("Conv2D", name, ops[n + 1], filters=int(kernel.shape[0]),
                                 kernel_size=list(kernel.shape[2:]), strides=strides,
                                 padding="same", data_format="channels_last"))  # fmt: skip
            named += [(f"{name}/kernel", kernel.transpose(2, 3, 1, 0)),
                      (f"{name}/bias", weights[node.input[2]])]  # fmt: skip
        elif node.op_type == "MatMul":  # then Add (the bias), then the activation
            kernel = weights[node.input[1]]
            if not any(layer["class_name"] == "Flatten" for layer in layers):
                layers.append({"class_name": "Flatten", "config": {"name": "flatten"}})
                if spatial is not None:  # rows in (c, h, w) order -> (h, w, c)
                    c, h, w = spatial
                    kernel = (
                        kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
                    )
            name = f"dense{sum(layer['class_name'] == 'Dense' for layer in layers) + 1}"
            layers.append(_layer("Dense", name, ops[n + 2], units=int(kernel.shape[1])))
            named += [(f"{name}/kernel", kernel), (f"{name}/bias", weights[nodes[n + 1].input[1]])]
    layers[0]["config"] |= {"batch_input_shape": [None, 28, 28, 1], "dtype": "float32"}
    return layers, [(k, v.astype(np.float32)) for k, v in named]


def _layer(kind: str, name: str, then: str | None, **config) -> dict:
    """A layer's config, with the ONNX op that follows it (`then`) as its activation."""
    activation = {"Relu": "relu", "Softmax": "softmax"}.get(then, "linear")
    config = {"name": name, "activation": activation, "use_bias": True, **config}
    return {"class_name": kind, "config": config}


def write_layers_model(path: Path, out: Path) -> Path:
    """`out`/model.json and weights.bin for the ONNX model at `path`; returns model.json's path."""
    layers, named = layers_of(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "weights.bin").write_bytes(b"".join(w.tobytes() for _, w in named))
    manifest = [{"name": k, "shape": list(w.shape), "dtype": "float32"} for k, w in named]
    model = {
        "format": "layers-model",
        "generatedBy": "mnist-edge benchmarks/tfjs_models.py",
        "convertedBy": None,
        "modelTopology": {
            "class_name": "Sequential",
            "config": {"name": path.stem, "layers": layers},
            "keras_version": "2.15.0",
            "backend": "tensorflow",
        },
        "weightsManifest": [{"paths": ["weights.bin"], "weights": manifest}],
        # what the ONNX model's metadata says its float input holds: pixels times this
        "userDefinedMetadata": {"pixel_scale": _pixel_scale(path)},
    }
    (out / "model.json").write_text(json.dumps(model))
    return out / "model.json"


def _pixel_scale(path: Path) -> float:
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return float(meta.get("pixel_scale", 1 / 255))


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "tfjs"
    for name, path in SHIPPED.items():
        print(write_layers_model(path, out / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
