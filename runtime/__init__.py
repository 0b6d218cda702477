"""mnist-edge runtime: run MNIST ONNX models with onnxruntime and numpy alone.

`Classifier` is imported on first use, so that `mnist-edge --help` and the errors module load
without onnxruntime.
"""

from runtime.errors import DataError, InputError, MnistEdgeError, ModelError, ParityError

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
