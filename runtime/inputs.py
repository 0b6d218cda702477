"""Read what `predict` is given: image files, .npy arrays or IDX image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.errors import DataError, InputError
from runtime.mnist import parse_idx, read_bytes
from runtime.preprocess import as_batch, load_image

_NPY_MAGIC = b"\x93NUMPY"


def read_inputs(paths: list[Path]) -> tuple[list[str], np.ndarray]:
    """Names (one per image) and float32 (N, 28, 28) images in [0, 1], in the order given."""
    names: list[str] = []
    batches = []
    for path in paths:
        batch = read_input(path)
        batches.append(batch)
        if len(batch) == 1 and not _is_array_file(path):
            names.append(str(path))
        else:
            names.extend(f"{path}[{i}]" for i in range(len(batch)))
    images = np.concatenate(batches) if batches else np.zeros((0, 28, 28), np.float32)
    return names, images


def read_input(path: Path) -> np.ndarray:
    """One file -> float32 (N, 28, 28) in [0, 1], whichever kind it is (judged by content)."""
    head = _head(path)
    if head.startswith(_NPY_MAGIC):
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"{path}: cannot read .npy array ({e})") from None
        return as_batch(array, str(path))
    if head[:2] == b"\x1f\x8b" or head[:2] == b"\x00\x00":
        try:
            array = parse_idx(read_bytes(path), str(path))
        except DataError as e:
            raise InputError(str(e)) from None
        if array.ndim == 1:
            raise InputError(f"{path}: expected an IDX image file, found a 1-D (label) file")
        return as_batch(array, str(path))
    return as_batch(load_image(path), str(path))


def _is_array_file(path: Path) -> bool:
    head = _head(path)
    return head.startswith(_NPY_MAGIC) or head[:2] in (b"\x1f\x8b", b"\x00\x00")


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(8)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: expected a file, found a folder") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
