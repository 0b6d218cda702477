"""Arrays -> checked batches in MNIST's convention: 28x28 grayscale, a white digit on black,
uint8 pixels (0-255) or floats in [0, 1]. Arrays are taken as already in that convention;
image files are brought into it by `runtime.images` and `runtime.ink`.
"""

from __future__ import annotations

import warnings

import numpy as np

from runtime.contract import IMAGE_SIZE
from runtime.errors import InputError, InputWarning


def as_batch(x: object, name: str = "input") -> np.ndarray:
    """Any accepted array -> float32 (N, 28, 28) with values in [0, 1]."""
    images = as_images(x, name)
    if images.dtype == np.uint8:
        return images.astype(np.float32) * np.float32(1 / 255)
    return images


NHWC_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # one image as the Keras models take it


def as_nhwc(x: object, name: str = "input") -> np.ndarray:
    """Any accepted array -> float32 (N, 28, 28, 1) in [0, 1]: what the Keras models take."""
    return as_batch(x, name)[..., None]


def as_images(x: object, name: str = "input") -> np.ndarray:
    """Any accepted array -> (N, 28, 28): uint8 pixels (0-255) or float32 in [0, 1].

    Accepts uint8 (0-255) or float (0-1) images shaped (28, 28), (N, 28, 28), (N, 28, 28, 1)
    or (N, 784); other integer dtypes must hold 0-255 and become uint8. uint8 input is only
    reshaped, never copied: the fast path for models that take uint8.
    """
    try:
        a = np.asarray(x)
    except ValueError as e:  # a ragged nested list
        raise InputError(f"{name}: expected a rectangular array of pixels ({e})") from None
    if a.dtype == np.uint8:
        return _to_nhw(a, name)
    if np.issubdtype(a.dtype, np.integer) and not np.issubdtype(a.dtype, np.bool_):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise InputError(
                f"{name}: expected integer pixels in 0..255, found {a.min()}..{a.max()}"
            )
        return _to_nhw(a.astype(np.uint8), name)
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{name}: expected uint8 or float pixels, found dtype {a.dtype}")
    batch = a.astype(np.float32, copy=False)
    if not np.isfinite(batch).all():
        raise InputError(f"{name}: expected finite pixel values, found NaN or inf")
    low, high = (float(batch.min()), float(batch.max())) if batch.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise InputError(f"{name}: expected float pixels in [0, 1], found {low:g}..{high:g}")
    if high > 1:
        # 0-255 pixels passed as floats: the common slip. Convert, and say so.
        warnings.warn(
            f"{name}: expected float pixels in [0, 1], found {low:g}..{high:g}: "
            "took them as 0-255 pixels and divided by 255",
            InputWarning,
            stacklevel=3,
        )
        batch = batch * np.float32(1 / 255)
    return _to_nhw(batch, name)


def _to_nhw(batch: np.ndarray, name: str) -> np.ndarray:
    shape = batch.shape
    if shape == (IMAGE_SIZE, IMAGE_SIZE):
        return batch[None]
    if batch.ndim == 3 and shape[1:] == (IMAGE_SIZE, IMAGE_SIZE):
        return batch
    if batch.ndim == 4 and shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 1):
        return batch[..., 0]
    if batch.ndim == 2 and shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        return batch.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    raise InputError(
        f"{name}: expected images shaped (28, 28), (N, 28, 28), (N, 28, 28, 1) or (N, 784), "
        f"found {shape}"
    )
