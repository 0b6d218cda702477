"""MNIST, the data set: where it is, and its splits read whole or in batches.

Search order: an explicit folder or file (--data), $MNIST_DIR, the copy Keras caches in
~/.keras/datasets/mnist.npz, then a checksum-verified download into that same cache. A folder
may hold the four IDX files (raw or .gz) or an mnist.npz; `locate` decides which, once.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.contract import IMAGE_SIZE, NUM_CLASSES
from runtime.errors import DataError, InputError
from runtime.files import atomic_path, make_parent
from runtime.idx import idx_shape, iter_idx, read_idx

SPLITS = ("train", "test")
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_NAME = "mnist.npz"
NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
DOWNLOAD_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


@dataclass(frozen=True)
class Split:
    """One MNIST split: images uint8 (N, 28, 28), white digit on black; labels uint8 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    source: Path

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Source:
    """Where one split lives: an mnist.npz, or a pair of IDX files in a folder."""

    path: Path  # the npz file or the folder, as shown to the user
    split: str
    npz: Path | None = None
    images: Path | None = None
    labels: Path | None = None


def locate(split: str, data: Path | str | None = None, download: bool = True) -> Source:
    """Find `split`: IDX files where the folder has them, else its mnist.npz, else an npz file."""
    if split not in SPLITS:
        raise InputError(f"--split: expected one of {', '.join(SPLITS)}, found {split!r}")
    path = find_data(data, download)
    if path.is_file():
        return Source(path, split, npz=path)
    images, labels = (_find_idx(path, name) for name in IDX_NAMES[split])
    if images is None and labels is None and (path / NPZ_NAME).is_file():
        return Source(path / NPZ_NAME, split, npz=path / NPZ_NAME)
    for found, stem in zip((images, labels), IDX_NAMES[split], strict=True):
        if found is None:
            raise DataError(f"{path}: expected {stem} or {stem}.gz, found neither")
    return Source(path, split, images=images, labels=labels)


def load_split(split: str, data: Path | str | None = None) -> Split:
    """The whole 'train' or 'test' split, checked."""
    source = locate(split, data)
    if source.npz is not None:
        return read_npz_split(source.npz, split)
    count = _count(source.images, source.labels)
    images = check_images(read_idx(source.images), str(source.images))
    labels = check_labels(read_idx(source.labels), count, str(source.labels))
    return Split(images, labels, source.path)


def stream_split(
    split: str, data: Path | str | None = None, batch_size: int = 1024
) -> tuple[Path, int, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(source, count, batches of (images, labels)): IDX images are read chunk by chunk."""
    source = locate(split, data)
    if source.npz is not None:
        whole = read_npz_split(source.npz, split)
        batches = (
            (whole.images[i : i + batch_size], whole.labels[i : i + batch_size])
            for i in range(0, len(whole), batch_size)
        )
        return source.path, len(whole), batches
    images_path, labels_path = source.images, source.labels
    count = _count(images_path, labels_path)
    labels = check_labels(read_idx(labels_path), count, str(labels_path))

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        for chunk in iter_idx(images_path, batch_size):
            chunk = check_images(chunk, str(images_path))
            yield chunk, labels[start : start + len(chunk)]
            start += len(chunk)

    return source.path, count, batches()


def check_images(images: np.ndarray, name: str) -> np.ndarray:
    """Validate an MNIST image array: uint8 (N, 28, 28)."""
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{name}: expected images shaped (N, 28, 28), found {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{name}: expected uint8 pixels, found {images.dtype}")
    return images


def check_labels(labels: np.ndarray, count: int, name: str) -> np.ndarray:
    """Validate MNIST labels: integers 0-9, one per image."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{name}: expected 1-D integer labels, found {labels.dtype} {labels.shape}")
    if len(labels) != count:
        raise DataError(f"{name}: expected {count} labels (one per image), found {len(labels)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name}: expected labels 0-9, found values {labels.min()}..{labels.max()}")
    return labels.astype(np.uint8)


def read_npz_split(path: Path, split: str) -> Split:
    """Read one split from a Keras-style mnist.npz (keys x_train, y_train, x_test, y_test)."""
    images_key, labels_key = NPZ_KEYS[split]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (images_key, labels_key) if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: expected keys {images_key!r} and {labels_key!r}, "
                    f"found {sorted(npz.files)}"
                )
            images, labels = npz[images_key], npz[labels_key]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    images = check_images(images, f"{path}[{images_key}]")
    labels = check_labels(labels, len(images), f"{path}[{labels_key}]")
    return Split(images, labels, path)


def keras_cache() -> Path:
    """Where Keras keeps mnist.npz (honours $KERAS_HOME)."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "datasets" / NPZ_NAME


def find_data(data: Path | str | None = None, download: bool = True) -> Path:
    """Locate MNIST: `data`, then $MNIST_DIR, then Keras' cache, then a verified download."""
    for given, origin in ((data, "--data"), (os.environ.get("MNIST_DIR"), "MNIST_DIR")):
        if given:
            path = Path(given).expanduser()
            if not path.exists():
                raise DataError(f"{origin} {path}: no such file or folder")
            return path
    cached = keras_cache()
    if cached.is_file():
        return cached
    if not download:
        raise DataError(_NO_DATA_HINT)
    return download_mnist(cached)


def download_mnist(dest: Path, url: str = DOWNLOAD_URL, sha256: str = DOWNLOAD_SHA256) -> Path:
    """Download mnist.npz to `dest`, verifying its SHA-256 before it appears there."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = response.read()
    except OSError as e:
        raise DataError(f"{_NO_DATA_HINT} (download from {url} failed: {e})") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise DataError(f"{url}: checksum mismatch: expected sha256 {sha256}, found {digest}")
    make_parent(dest)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(payload)
    return dest


_NO_DATA_HINT = (
    "no MNIST data found: pass --data DIR or set MNIST_DIR to a folder with the four IDX files "
    "(or an mnist.npz)"
)


def _count(images: Path, labels: Path) -> int:
    """The images' count, checked against the labels' from the headers alone, before either
    file is read: a header that declares billions of labels costs nothing."""
    dims = idx_shape(images)
    check_images(np.zeros((0, *dims[1:]), np.uint8), str(images))
    declared = idx_shape(labels)
    if len(declared) != 1 or declared[0] != dims[0]:
        raise DataError(
            f"{labels}: expected {dims[0]} labels (one per image), found dimensions {declared}"
        )
    return dims[0]


def _find_idx(folder: Path, stem: str) -> Path | None:
    return next((folder / n for n in (stem, stem + ".gz") if (folder / n).is_file()), None)
