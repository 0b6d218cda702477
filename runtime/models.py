"""Which model file: the shipped default for this CPU, a shipped model by name, or a path."""

from __future__ import annotations

import os
from pathlib import Path

from runtime.cpu import int8_choice, int8_exact
from runtime.errors import ModelError

FP32_MODEL = "mnist_edge.onnx"
INT8_MODEL = "mnist_edge.int8.onnx"  # the default where the CPU runs 8-bit kernels exactly
_PACKAGE_MODELS = Path(__file__).parent / "models"  # where a wheel install carries them
_SOURCE_MODELS = Path(__file__).parent.parent / "exported"  # a source checkout


def default_model_name() -> str:
    """The INT8 edge model where its answers were shown exact (ARM64, x86 with AVX2 or VNNI),
    else fp32 (runtime/cpu.py says on what each case rests)."""
    return INT8_MODEL if int8_exact() else FP32_MODEL


def default_reason() -> str:
    """Why `default_model_path` gives the model it gives, in one sentence."""
    if os.environ.get("MNIST_EDGE_MODEL"):
        return "named by $MNIST_EDGE_MODEL"
    return f"the default here: {int8_choice()[1]}"


def default_model_path() -> Path:
    """The shipped model: $MNIST_EDGE_MODEL, else the installed copy, else the checkout's."""
    if os.environ.get("MNIST_EDGE_MODEL"):
        return resolve_model(os.environ["MNIST_EDGE_MODEL"])
    name = default_model_name()
    path = _shipped(name)
    if path is None:
        raise ModelError(
            f"no shipped model {name} found in {_PACKAGE_MODELS} or {_SOURCE_MODELS}: "
            "pass --model PATH"
        )
    return path


def resolve_model(model: Path | str | None) -> Path:
    """A model path; a bare name that is no file here, such as mnist_edge.int8.onnx, names a
    shipped model."""
    if model is None:
        return default_model_path()
    path = Path(model)
    if path.exists() or path.parent != Path("."):
        return path
    return _shipped(path.name) or path


def _shipped(name: str) -> Path | None:
    """The installed copy of a shipped model, else the checkout's; None if neither exists."""
    return next((f / name for f in (_PACKAGE_MODELS, _SOURCE_MODELS) if (f / name).is_file()), None)
