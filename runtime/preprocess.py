"""Turn what a user has (arrays, image files) into MNIST's convention.

MNIST's convention: 28x28 grayscale, a white digit on black, the digit fitted into a 20x20 box
(aspect ratio kept) and centred by its centre of mass. Arrays are taken as already in that
convention; image files are brought into it the way MNIST itself was made.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from runtime.contract import IMAGE_SIZE
from runtime.errors import InputError, InputWarning

BOX = 20  # MNIST fitted each digit into a 20x20 box inside the field
CENTRE = 14.0  # where MNIST's centres of mass sit (row and column; measured on its test set)
INK_THRESHOLD = 0.2  # of the strongest ink: fainter pixels are background noise when cropping
# A digit needs few pixels: larger files are refused from their header, before decoding (a
# 30000x2900 RGBA image took 5.1 GB and 12 s), and images wider or taller than WORK_SIDE are
# reduced by a whole factor first (JPEG while decoding), so memory stays bounded.
MAX_PIXELS = 40_000_000
WORK_SIDE = 1024


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


def load_image(path: Path | str) -> np.ndarray:
    """Read an image file of any size and mode into an MNIST-style uint8 (28, 28) array."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: expected an image, found an empty file")
    return read_image(path, str(path))


def read_image(
    source: Path | BinaryIO,
    path: str,
    before_decoding: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """`load_image` for a path or an open binary file (an upload); `path` names it in errors.
    `before_decoding(width, height)` hears the size from the header, before any pixel is
    decoded, and may refuse it by raising."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                frames = getattr(img, "n_frames", 1)
                if frames > 1:
                    raise InputError(
                        f"{path}: expected one image, found {frames} frames (animated, multi-page)"
                    )
                if before_decoding is not None:
                    before_decoding(*img.size)
                gray = _grayscale(_decoded(img, path))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise InputError(
            f"{path}: not an image file PIL can read (PNG, JPEG, BMP, PGM...)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{path}: image too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: cannot decode image ({e})") from None
    try:
        return mnist_style(gray)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def _decoded(img: Image.Image, path: str) -> Image.Image:
    """The image decoded at most WORK_SIDE pixels wide and tall, or refused from its size."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InputError(
            f"{path}: expected an image of at most {MAX_PIXELS:,} pixels, found {w}x{h}: "
            "a digit needs far fewer, scale it down"
        )
    if max(w, h) > WORK_SIDE:
        img.draft(img.mode, (WORK_SIDE, WORK_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
    img.load()
    factor = -(-max(img.size) // WORK_SIDE)
    if factor > 1:
        if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
            img = img.convert("RGBA" if "transparency" in img.info or "A" in img.mode else "RGB")
        img = img.reduce(factor)
    return img


def _grayscale(img: Image.Image) -> np.ndarray:
    """Luminance as float in [0, 1], transparency composited onto the contrasting side."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        return (a / (65535.0 if a.max() > 255 else 255.0)).clip(0, 1)
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        return a / a.max() if a.max() > 1 else a.clip(0, 1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255
        lum = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])
        alpha = rgba[..., 3]
        if alpha.min() < 1:
            # Ink drawn on a transparent sheet: put it on the background it contrasts with.
            opaque = alpha > 0.5
            ink_is_light = opaque.any() and lum[opaque].mean() > 0.5
            background = 0.0 if ink_is_light else 1.0
            return lum * alpha + background * (1 - alpha)
        return lum
    return np.asarray(ImageOps.grayscale(img.convert("RGB")), dtype=np.float64) / 255


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """A grayscale digit (float in [0, 1], any size, either polarity) -> MNIST uint8 (28, 28)."""
    ink = _ink(gray)
    rows, cols = np.nonzero(ink > INK_THRESHOLD * ink.max()) if ink.max() > 0 else ((), ())
    if len(rows) == 0:
        raise InputError("expected a digit, found a blank image")
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    boxed = _fit_box(ink)  # (h, w), max(h, w) == 20
    return _centre_by_mass(boxed)


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink strength in [0, 1] (1 = strongest), whichever polarity the image has."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    edge = np.sort(border)  # the median; np.median would import numpy.ma, 8 ms of cold start
    background = float(edge[(len(edge) - 1) // 2] + edge[len(edge) // 2]) / 2
    ink = background - gray if background > 0.5 else gray - background
    ink = ink.clip(0, None)
    peak = ink.max()
    return ink / peak if peak > 0 else ink


def _fit_box(ink: np.ndarray) -> np.ndarray:
    h, w = ink.shape
    scale = BOX / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(ink.astype(np.float32)).resize(new, Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float64).clip(0, 1)


def _centre_by_mass(boxed: np.ndarray) -> np.ndarray:
    h, w = boxed.shape
    ys, xs = np.indices(boxed.shape)
    mass = boxed.sum()
    cy, cx = (ys * boxed).sum() / mass, (xs * boxed).sum() / mass
    top = int(np.rint(CENTRE - cy))
    left = int(np.rint(CENTRE - cx))
    top = min(max(top, 0), IMAGE_SIZE - h)  # keep the whole digit in the field
    left = min(max(left, 0), IMAGE_SIZE - w)
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float64)
    field[top : top + h, left : left + w] = boxed
    return np.round(field * 255).astype(np.uint8)
