"""mnist-edge training side: build and fit Keras models, export them to ONNX, check parity.

Needs the train extra (TensorFlow, tf2onnx, onnx); importing this package alone does not.
"""

import runtime  # noqa: F401  (before onnxruntime loads: it turns its telemetry off)
