"""The model architectures, one builder each. Inputs: float32 (N, 28, 28, 1) pixels in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from runtime.contract import NUM_CLASSES
from runtime.errors import ModelError
from runtime.preprocess import NHWC_SHAPE


def load_keras(path: Path) -> keras.Model:
    """A saved .keras model, or a ModelError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such Keras model file")
    try:
        return keras.models.load_model(path)
    except (ValueError, OSError) as e:
        raise ModelError(
            f"{path}: expected a Keras .keras model, but loading failed: {e}"
        ) from None


def build_mlp() -> keras.Model:
    """The seed tutorial's model, exactly: Flatten -> Dense(128, relu) -> Dense(10, softmax)."""
    return keras.Sequential(
        [
            keras.Input(NHWC_SHAPE, name="image"),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mnist_mlp",
    )


def build_cnn() -> keras.Model:
    """A small real CNN: three conv-BN-ReLU stages, dropout, a dense softmax head."""
    inputs = keras.Input(NHWC_SHAPE, name="image")
    x = _conv_bn_relu(inputs, 32)  # (N, 28, 28, 32)
    x = layers.MaxPooling2D()(x)  # (N, 14, 14, 32)
    x = _conv_bn_relu(x, 64)  # (N, 14, 14, 64)
    x = layers.MaxPooling2D()(x)  # (N, 7, 7, 64)
    x = _conv_bn_relu(x, 128, padding="valid")  # (N, 5, 5, 128)
    x = layers.Flatten()(x)  # (N, 3200)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def build_edge() -> keras.Model:
    """The default shipped model, co-designed for latency: three stride-2 conv-BN-ReLU stages
    (no pooling ops), a dense softmax head; 2.2 MFLOP per image."""
    inputs = keras.Input(NHWC_SHAPE, name="image")
    x = _conv_bn_relu(inputs, 24, kernel=5, strides=2)  # (N, 14, 14, 24)
    x = _conv_bn_relu(x, 48, strides=2)  # (N, 7, 7, 48)
    x = _conv_bn_relu(x, 64, strides=2)  # (N, 4, 4, 64)
    x = layers.Flatten()(x)  # (N, 1024)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mnist_edge")


def _conv_bn_relu(x, filters: int, padding: str = "same", kernel: int = 3, strides: int = 1):
    # No conv bias: BatchNorm's offset replaces it, and both fold into one Conv at export.
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


BUILDERS = {"cnn": build_cnn, "mlp": build_mlp, "edge": build_edge}
