"""One benchmark worker: every engine at one thread count, on the same weights and inputs.

Run by compare.py in a fresh process per thread count, because TensorFlow fixes its thread
pools when it starts. Prints one JSON object: per engine, its accuracy and latency per batch.

    python benchmarks/engines.py --threads 1 --keras M.keras --onnx M.onnx --tflite-dir DIR ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.bench import summarize, time_calls
from runtime.mnist import load_split
from runtime.preprocess import NHWC_SHAPE, as_nhwc

ANCHOR = "anchor (Keras simple convnet): "


@dataclass
class Engine:
    name: str
    make_call: Callable[[np.ndarray], Callable[[], object]]  # uint8 (N, 28, 28) -> timed call
    proba: Callable[[np.ndarray], np.ndarray]  # uint8 (N, 28, 28) -> (N, 10), for accuracy


def runtime_engines(onnx_path: Path, threads: int, int8_path: Path | None) -> list[Engine]:
    import onnxruntime as ort

    from runtime import Classifier

    def classifier_engine(name: str, path: Path) -> Engine:
        clf = Classifier(path, threads=threads, batch_size=4096)
        return Engine(name, lambda x: lambda: clf.predict_proba(x), clf.predict_proba)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    raw = session.get_inputs()[0].type == "tensor(uint8)"  # uint8 (N, 28, 28) raw pixels

    def tensor(x: np.ndarray) -> np.ndarray:
        return x if raw else as_nhwc(x)

    def bare_call(x: np.ndarray) -> Callable[[], object]:
        feed = {name: tensor(x)}  # prepared once, outside the timing
        return lambda: session.run(None, feed)

    engines = [
        classifier_engine("mnist-edge runtime", onnx_path),
        Engine(
            "onnxruntime session (bare)",
            bare_call,
            lambda x: session.run(None, {name: tensor(x)})[0],
        ),
    ]
    if int8_path is not None and int8_path.exists():
        engines.append(classifier_engine("mnist-edge runtime, INT8", int8_path))
    return engines


def tensorflow_engines(keras_path: Path, threads: int) -> list[Engine]:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    model = keras.models.load_model(keras_path)
    spec = tf.TensorSpec((None, *NHWC_SHAPE), tf.float32)
    graph = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    floats = as_nhwc

    def proba(x: np.ndarray) -> np.ndarray:
        return model.predict(floats(x), batch_size=1000, verbose=0)

    return [
        Engine("Keras model(x)", lambda x: lambda f=floats(x): model(f, training=False), proba),
        Engine(
            "Keras model.predict", lambda x: lambda f=floats(x): model.predict(f, verbose=0), proba
        ),
        Engine(
            "TensorFlow tf.function",
            lambda x: lambda t=tf.constant(floats(x)): graph(t),
            lambda x: graph(tf.constant(floats(x))).numpy(),
        ),
    ]


def litert_engines(tflite_dir: Path, threads: int, prefix: str = "") -> list[Engine]:
    from ai_edge_litert.interpreter import Interpreter

    engines = []
    for label, file in (("LiteRT fp32", "model_fp32.tflite"), ("LiteRT INT8", "model_int8.tflite")):
        path = tflite_dir / file
        if not path.exists():
            continue
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        engines.append(
            Engine(prefix + label, _litert_call(interpreter), _litert_proba(interpreter))
        )
    return engines


def _litert_input(interpreter, x: np.ndarray) -> np.ndarray:
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] == np.uint8:  # full-integer model: scale 1/255, zero point 0
        return x[..., None]
    return as_nhwc(x)


def _litert_call(interpreter):
    def make(x: np.ndarray) -> Callable[[], object]:
        inp = interpreter.get_input_details()[0]["index"]
        out = interpreter.get_output_details()[0]["index"]
        interpreter.resize_tensor_input(inp, [len(x), *NHWC_SHAPE])
        interpreter.allocate_tensors()
        feed = _litert_input(interpreter, x)

        def call():
            interpreter.set_tensor(inp, feed)
            interpreter.invoke()
            return interpreter.get_tensor(out)

        return call

    return make


def _litert_proba(interpreter):
    def proba(x: np.ndarray) -> np.ndarray:
        scores = _litert_call(interpreter)(x)()
        detail = interpreter.get_output_details()[0]
        if detail["dtype"] == np.uint8:
            scale, zero = detail["quantization"]
            return (scores.astype(np.float32) - zero) * scale
        return scores

    return proba


def measure(
    engine: Engine,
    images: np.ndarray,
    labels: np.ndarray,
    batch_sizes: list[int],
    duration: float,
    threads: int,
) -> dict:
    rng = np.random.default_rng(0)
    probs = np.concatenate(
        [engine.proba(images[i : i + 1000]) for i in range(0, len(images), 1000)]
    )
    rows = []
    for batch in batch_sizes:
        x = images[rng.integers(0, len(images), batch)]
        call = engine.make_call(x)
        time_calls(call, duration=min(0.2, duration), min_runs=3)  # warm-up
        rows.append(asdict(summarize(batch, time_calls(call, duration, min_runs=5), threads)))
    return {
        "engine": engine.name,
        "threads": threads,
        "accuracy": float((probs.argmax(1) == labels).mean()),
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--keras", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--int8", type=Path, default=None)
    parser.add_argument("--tflite-dir", type=Path, required=True)
    parser.add_argument("--anchor-tflite-dir", type=Path, default=None)
    parser.add_argument("--batch-sizes", default="1,32,256,1024")
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--data", type=Path, default=os.environ.get("MNIST_DIR"))
    args = parser.parse_args()

    test = load_split("test", args.data)
    images, labels = test.images[: args.eval_images], test.labels[: args.eval_images]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    engines = (
        runtime_engines(args.onnx, args.threads, args.int8)
        + litert_engines(args.tflite_dir, args.threads)
        + (
            litert_engines(args.anchor_tflite_dir, args.threads, ANCHOR)
            if args.anchor_tflite_dir
            else []
        )
        + tensorflow_engines(args.keras, args.threads)
    )
    out = []
    for engine in engines:
        print(f"  {engine.name}, {args.threads} thread(s)", file=sys.stderr, flush=True)
        out.append(measure(engine, images, labels, sizes, args.duration, args.threads))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
