"""IDX files (the format MNIST ships in), raw or gzip: read whole, stream, check sizes."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtime.errors import DataError

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
