"""mnist-edge runtime: run MNIST ONNX models with onnxruntime and numpy alone.

`Classifier` is imported on first use, so that `mnist-edge --help` and the errors module load
without onnxruntime.
"""

import os

from runtime.errors import DataError, InputError, MnistEdgeError, ModelError, ParityError

# onnxruntime 1.32 writes a telemetry database and a device id under ~/.cache, and uploads from
# it, unless this is set before it loads: a device runtime writes nothing it was not asked to.
# ORT_DISABLE_TELEMETRY=0 in the environment lets it (README, "Errors and faults").
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = [
    "Classifier",
    "DataError",
    "InputError",
    "MnistEdgeError",
    "ModelError",
    "Overrides",
    "ParityError",
    "SessionSettings",
]


def __getattr__(name: str):
    if name == "Classifier":
        from runtime.session import Classifier

        return Classifier
    if name == "Overrides":
        from runtime.contract import Overrides

        return Overrides
    if name == "SessionSettings":
        from runtime.settings import SessionSettings

        return SessionSettings
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
