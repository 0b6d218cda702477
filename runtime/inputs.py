"""Read what `predict` is given: image files, .npy arrays or IDX image files, in batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.contract import DEFAULT_BATCH_SIZE, IMAGE_SIZE
from runtime.errors import DataError, InputError
from runtime.files import check_regular_file
from runtime.idx import idx_shape, iter_idx
from runtime.images import load_image
from runtime.preprocess import as_images

_NPY_MAGIC = b"\x93NUMPY"


def iter_inputs(
    paths: list[Path], batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(names, (n, 28, 28) images: uint8, or float32 in [0, 1]) batches, in the order given.

    An image file is one image named by its path; an array or IDX file gives `path[i]` per image
    and is read chunk by chunk, so memory stays bounded by `batch_size` whatever the file size.
    """
    names: list[str] = []
    images: list[np.ndarray] = []
    for path in paths:
        kind = _kind(path)
        if kind != "image":
            if images:
                yield names, np.concatenate(images)
                names, images = [], []
            yield from _array_batches(path, kind, batch_size)
            continue
        names.append(str(path))
        images.append(as_images(load_image(path), str(path)))
        if len(images) == batch_size:
            yield names, np.concatenate(images)
            names, images = [], []
    if images:
        yield names, np.concatenate(images)


def _array_batches(
    path: Path, kind: str, batch_size: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    start = 0
    for chunk in _chunks(path, kind, batch_size):
        batch = as_images(chunk, str(path))
        yield [f"{path}[{i}]" for i in range(start, start + len(batch))], batch
        start += len(batch)


def _chunks(path: Path, kind: str, batch_size: int) -> Iterator[np.ndarray]:
    if kind == "npy":
        array = _open_npy(path)
        for start in range(0, max(len(array), 1), batch_size):
            yield np.asarray(array[start : start + batch_size])
        return
    try:
        if len(idx_shape(path)) == 1:
            raise InputError(f"{path}: expected an IDX image file, found a 1-D (label) file")
        yield from iter_idx(path, batch_size)
    except DataError as e:
        raise InputError(str(e)) from None


def _open_npy(path: Path) -> np.ndarray:
    """A .npy file mapped, not read: one (28, 28) image becomes a batch of one."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OverflowError, OSError) as e:
        raise InputError(f"{path}: cannot read .npy array ({e})") from None
    if array.ndim == 0:
        raise InputError(f"{path}: expected an array of images, found a single number")
    return array[None] if array.shape == (IMAGE_SIZE, IMAGE_SIZE) else array


def _kind(path: Path) -> str:
    """ "npy", "idx" (raw or gzip) or "image", judged by content, not by name."""
    head = _head(path)
    if head.startswith(_NPY_MAGIC):
        return "npy"
    return "idx" if head[:2] in (b"\x1f\x8b", b"\x00\x00") else "image"


def _head(path: Path) -> bytes:
    check_regular_file(path)
    try:
        with path.open("rb") as f:
            return f.read(8)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


@dataclass(frozen=True)
class Shard:
    """A slice of the inputs that one task reads and scores: an image file, or a range of an
    array or IDX file."""

    path: str
    kind: str  # "image", "npy" or "idx"
    start: int
    stop: int


def plan_shards(paths: list[Path], size: int) -> list[Shard]:
    """The inputs cut into shards of at most `size` images, from the files' headers alone (a
    missing or unreadable file is refused here, before any work is sent out)."""
    shards = []
    for path in paths:
        kind = _kind(path)
        if kind == "image":
            shards.append(Shard(str(path), kind, 0, 1))
            continue
        count = _count(path, kind)
        shards += [Shard(str(path), kind, a, min(a + size, count)) for a in range(0, count, size)]
    return shards


def read_shard(shard: Shard) -> tuple[list[str], np.ndarray]:
    """A shard's names and checked images, as `iter_inputs` would give them."""
    path = Path(shard.path)
    if shard.kind == "image":
        return [shard.path], as_images(load_image(path), shard.path)
    size = shard.stop - shard.start
    if shard.kind == "npy":
        chunk = np.asarray(_open_npy(path)[shard.start : shard.stop])
    else:
        try:
            chunk = next(iter_idx(path, size, shard.start), np.empty((0,)))
        except DataError as e:
            raise InputError(str(e)) from None
    if len(chunk) != size:  # the file changed between planning and reading
        raise InputError(f"{path}: expected images {shard.start}..{shard.stop - 1}, found fewer")
    names = [f"{shard.path}[{i}]" for i in range(shard.start, shard.stop)]
    return names, as_images(chunk, shard.path)


def _count(path: Path, kind: str) -> int:
    if kind == "npy":
        return len(_open_npy(path))
    try:
        dims = idx_shape(path)
    except DataError as e:
        raise InputError(str(e)) from None
    if len(dims) == 1:
        raise InputError(f"{path}: expected an IDX image file, found a 1-D (label) file")
    return dims[0]
