"""Parity of an exported ONNX model against its Keras source, through the runtime."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from runtime.contract import Overrides
from runtime.mnist import Split
from runtime.parity import ParityReport, compare
from runtime.preprocess import as_nhwc
from runtime.session import Classifier


def keras_probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """(N, 10) probabilities from Keras for uint8 (N, 28, 28) images."""
    return model.predict(as_nhwc(images), batch_size=1024, verbose=0)


def keras_vs_onnx(
    model: keras.Model, onnx_path: Path, split: Split, overrides: Overrides | None = None
) -> ParityReport:
    """Run both on `split`; the ONNX side goes through `runtime.Classifier` as users do."""
    reference = keras_probabilities(model, split.images)
    with Classifier(onnx_path, overrides=overrides) as clf:
        candidate = clf.predict_proba(split.images)
    return compare(reference, candidate, split.labels)
