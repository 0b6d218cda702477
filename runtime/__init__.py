"""mnist-edge runtime: run exported MNIST models with onnxruntime and numpy alone."""

from runtime.errors import DataError, InputError, MnistEdgeError, ModelError, ParityError
from runtime.session import Classifier, SessionSettings

__all__ = [
    "Classifier",
    "DataError",
    "InputError",
    "MnistEdgeError",
    "ModelError",
    "ParityError",
    "SessionSettings",
]
