"""IDX files (the format MNIST ships in), raw or gzip: read whole, stream, check sizes."""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from runtime.errors import DataError
from runtime.files import check_regular_file

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
_DEFLATE_MAX_RATIO = 1032  # the most DEFLATE can compress: a bound on what a .gz expands to


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode an IDX buffer into an array, checking magic, dimensions and size."""
    dtype, dims = _read_header(io.BytesIO(data), name)
    header = 4 + 4 * len(dims)
    _check_size(dims, dtype, len(data) - header, name)
    return _array(data[header:], dtype, dims)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file, raw or gzip-compressed, allocating only what its size can hold."""
    name = str(path)
    f, gzipped = _open(path)
    with f:
        dtype, dims = _read_header(f, name)
        _check_plausible(path, dims, dtype, gzipped)
        data = _read(f, _data_bytes(dims, dtype) + 1, name)  # one more: trailing bytes show
    _check_size(dims, dtype, len(data), name)
    return _array(data, dtype, dims)


def iter_idx(path: Path, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
    """Stream an IDX file in chunks of `batch_size` records from record `start`: memory bounded
    by the chunk. A raw file seeks there; a gzip one decompresses its way there."""
    name = str(path)
    f, gzipped = _open(path)
    with f:
        dtype, dims = _read_header(f, name)
        _check_plausible(path, dims, dtype, gzipped)
        record = math.prod(dims[1:]) * dtype.itemsize
        done = min(start, dims[0])
        if done:
            f.seek(f.tell() + done * record)  # gzip: reads and drops what comes before
        while done < dims[0]:
            n = min(batch_size, dims[0] - done)
            chunk = _read(f, n * record, name)
            if len(chunk) < n * record:
                _check_size(dims, dtype, done * record + len(chunk), name)
            yield _array(chunk, dtype, (n, *dims[1:]))
            done += n
        if _read(f, 1, name):
            _check_size(dims, dtype, done * record + 1, name)


def idx_shape(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file declares, read from its header alone."""
    f, _ = _open(path)
    with f:
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


def _data_bytes(dims: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(dims) * dtype.itemsize  # Python ints: no overflow, whatever the header says


def _check_plausible(path: Path, dims: tuple[int, ...], dtype: np.dtype, gzipped: bool) -> None:
    """Refuse a header that declares more data than the file can hold, before reading it: raw,
    the file's size; gzip, what DEFLATE can expand it to (at most 1032 to 1)."""
    header = 4 + 4 * len(dims)
    size = path.stat().st_size
    can_hold = size * _DEFLATE_MAX_RATIO if gzipped else size - header
    need = _data_bytes(dims, dtype)
    if need > can_hold:
        what = (
            f"a {size:,}-byte gzip file expands to at most {can_hold:,}"
            if gzipped
            else (f"the file holds {can_hold:,}")
        )
        raise DataError(f"{path}: truncated: dimensions {dims} need {need:,} data bytes, {what}")


def _array(data: bytes, dtype: np.dtype, dims: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _check_size(dims: tuple[int, ...], dtype: np.dtype, found: int, name: str) -> None:
    expected = _data_bytes(dims, dtype)
    if found != expected:
        kind = "truncated" if found < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {kind}: dimensions {dims} need {expected} data bytes, found {found}"
        )


def _open(path: Path) -> tuple[BinaryIO, bool]:
    """The file opened for reading, gunzipped when it is gzip (by content, not by name), and
    whether it was; a missing, unreadable or odd file is a DataError."""
    check_regular_file(path, DataError)
    try:
        f = path.open("rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if f.read(2) == _GZIP_MAGIC:
        f.close()
        return gzip.open(path, "rb"), True  # type: ignore[return-value]
    f.seek(0)
    return f, False


def _read(f: BinaryIO, n: int, name: str) -> bytes:
    try:
        return f.read(n)
    except (OSError, EOFError) as e:
        raise DataError(f"{name}: broken gzip stream ({e})") from None
