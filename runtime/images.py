"""Image files -> grayscale pictures, safely: one image (not an animation), its size checked
from the header before anything is decoded, large ones reduced while decoding, any mode
(16-bit, palette, alpha, CMYK) brought to luminance. Then `runtime.ink.mnist_style` makes the
digit of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from runtime.errors import InputError
from runtime.ink import mnist_style

# A digit needs few pixels: larger files are refused from their header, before decoding (a
# 30000x2900 RGBA image took 5.1 GB and 12 s), and images wider or taller than WORK_SIDE are
# reduced by a whole factor first (JPEG while decoding), so memory stays bounded.
MAX_PIXELS = 40_000_000
WORK_SIDE = 1024


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
    gray = decode(source, path, before_decoding)
    try:
        return mnist_style(gray)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def decode(
    source: Path | BinaryIO,
    path: str,
    before_decoding: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The image's luminance as float (h, w) in [0, 1], at most WORK_SIDE on its long side."""
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
                return _grayscale(_decoded(img, path))
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
