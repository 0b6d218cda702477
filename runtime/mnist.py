"""MNIST readers (IDX, raw or gzip, and Keras' mnist.npz) and where the data comes from.

Search order for the data: an explicit folder or file, $MNIST_DIR, the copy Keras caches in
~/.keras/datasets/mnist.npz, then a checksum-verified download into that same cache.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtime.errors import DataError
from runtime.files import atomic_path

IMAGE_SIZE = 28
NUM_CLASSES = 10
SPLITS = ("train", "test")
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_NAME = "mnist.npz"
NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
DOWNLOAD_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

# IDX type byte -> numpy dtype; multi-byte values are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Split:
    """One MNIST split: images uint8 (N, 28, 28), white digit on black; labels uint8 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    source: Path

    def __len__(self) -> int:
        return len(self.labels)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by content, not by name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: broken gzip stream ({e})") from None


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode an IDX buffer into an array, checking magic, dimensions and size."""
    dtype, dims = _read_header(io.BytesIO(data), name)
    header = 4 + 4 * len(dims)
    _check_size(dims, dtype, len(data) - header, name)
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file, raw or gzip-compressed."""
    return parse_idx(read_bytes(path), str(path))


def iter_idx(path: Path, batch_size: int) -> Iterator[np.ndarray]:
    """Stream an IDX file in chunks of `batch_size` records: memory bounded by the chunk."""
    name = str(path)
    with _open_stream(path) as f:
        dtype, dims = _read_header(f, name)
        record = int(np.prod(dims[1:], dtype=np.int64)) * dtype.itemsize
        done = 0
        while done < dims[0]:
            n = min(batch_size, dims[0] - done)
            chunk = _read(f, n * record, name)
            if len(chunk) < n * record:
                _check_size(dims, dtype, done * record + len(chunk), name)
            yield np.frombuffer(chunk, dtype).reshape(n, *dims[1:]).astype(dtype.newbyteorder("="))
            done += n
        if _read(f, 1, name):
            _check_size(dims, dtype, done * record + 1, name)


def idx_shape(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file declares, read from its header alone."""
    with _open_stream(path) as f:
        return _read_header(f, str(path))[1]


def _read_header(f: BinaryIO, name: str) -> tuple[np.dtype, tuple[int, ...]]:
    magic = _read(f, 4, name)
    if len(magic) < 4:
        raise DataError(f"{name}: expected an IDX header of at least 4 bytes, found {len(magic)}")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        found = magic.hex(" ")
        raise DataError(f"{name}: not an IDX file: expected 00 00 <type> <ndim>, found {found}")
    ndim = magic[3]
    raw_dims = _read(f, 4 * ndim, name)
    if ndim == 0 or len(raw_dims) < 4 * ndim:
        raise DataError(f"{name}: IDX header claims {ndim} dimensions but the file is too short")
    return _IDX_DTYPES[magic[2]], tuple(int(d) for d in np.frombuffer(raw_dims, ">u4"))


def _check_size(dims: tuple[int, ...], dtype: np.dtype, found: int, name: str) -> None:
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {kind}: dimensions {dims} need {expected} data bytes, found {found}"
        )


def _open_stream(path: Path) -> BinaryIO:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if f.read(2) == _GZIP_MAGIC:
        f.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def _read(f: BinaryIO, n: int, name: str) -> bytes:
    try:
        return f.read(n)
    except (OSError, EOFError) as e:
        raise DataError(f"{name}: broken gzip stream ({e})") from None


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


def read_idx_split(folder: Path, split: str) -> Split:
    """Read one split from the standard IDX file names in a folder (.gz or not)."""
    images_name, labels_name = IDX_NAMES[split]
    images_path = _find_idx(folder, images_name)
    labels_path = _find_idx(folder, labels_name)
    images = check_images(read_idx(images_path), str(images_path))
    labels = check_labels(read_idx(labels_path), len(images), str(labels_path))
    return Split(images, labels, folder)


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


def load_split(split: str, data: Path | str | None = None) -> Split:
    """Load the 'train' or 'test' split from a folder of IDX files or an mnist.npz."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = find_data(data)
    if path.is_file():
        return read_npz_split(path, split)
    if (path / NPZ_NAME).is_file() and not _has_idx(path, split):
        return read_npz_split(path / NPZ_NAME, split)
    return read_idx_split(path, split)


def stream_split(
    split: str, data: Path | str | None = None, batch_size: int = 1024
) -> tuple[Path, int, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(source, count, batches of (images, labels)): IDX images are read chunk by chunk."""
    path = find_data(data)
    if path.is_file() or ((path / NPZ_NAME).is_file() and not _has_idx(path, split)):
        whole = load_split(split, path)
        batches = (
            (whole.images[i : i + batch_size], whole.labels[i : i + batch_size])
            for i in range(0, len(whole), batch_size)
        )
        return whole.source, len(whole), batches
    images_name, labels_name = IDX_NAMES[split]
    images_path = _find_idx(path, images_name)
    labels_path = _find_idx(path, labels_name)
    dims = idx_shape(images_path)
    check_images(np.zeros((0, *dims[1:]), np.uint8), str(images_path))
    labels = check_labels(read_idx(labels_path), dims[0], str(labels_path))

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        for chunk in iter_idx(images_path, batch_size):
            chunk = check_images(chunk, str(images_path))
            yield chunk, labels[start : start + len(chunk)]
            start += len(chunk)

    return path, dims[0], batches()


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
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(payload)
    return dest


_NO_DATA_HINT = (
    "no MNIST data found: pass --data DIR or set MNIST_DIR to a folder with the four IDX files "
    "(or an mnist.npz)"
)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: expected {stem} or {stem}.gz, found neither")


def _has_idx(folder: Path, split: str) -> bool:
    return any((folder / (n + ext)).is_file() for n in IDX_NAMES[split] for ext in ("", ".gz"))
