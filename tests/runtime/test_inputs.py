"""What `predict` reads (runtime/inputs.py): image files gathered into batches of the batch size,
arrays mapped rather than read, shards planned for every file from its header alone, and each
refusal one line that names the file and says what was expected and found."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from runtime.errors import InputError
from runtime.inputs import Shard, iter_inputs, plan_shards, read_shard
from tests.conftest import synthetic_digits, write_idx


def png(folder, name: str, seed: int = 0):
    Image.fromarray(synthetic_digits(1, seed=seed)[0][0]).save(folder / name)
    return folder / name


def test_image_files_are_gathered_into_batches_of_the_batch_size(tmp_path):
    paths = [png(tmp_path, f"{i}.png", seed=i) for i in range(5)]
    batches = list(iter_inputs(paths, batch_size=2))
    assert [names for names, _ in batches] == [
        [str(paths[0]), str(paths[1])], [str(paths[2]), str(paths[3])], [str(paths[4])],
    ]  # fmt: skip
    assert [len(images) for _, images in batches] == [2, 2, 1]


def test_shards_are_planned_for_every_file_in_the_order_given(tmp_path):
    first, last = png(tmp_path, "a.png"), png(tmp_path, "b.png", seed=1)
    array = tmp_path / "five.npy"
    np.save(array, synthetic_digits(5)[0])
    single = tmp_path / "one.npy"  # one (28, 28) image: a batch of one, not 28 rows
    np.save(single, synthetic_digits(1)[0][0])
    idx = write_idx(tmp_path / "three-idx3-ubyte", synthetic_digits(3)[0])
    shards = plan_shards([first, array, last, idx, single], size=2)
    assert shards == [
        Shard(str(first), "image", 0, 1),
        Shard(str(array), "npy", 0, 2), Shard(str(array), "npy", 2, 4),
        Shard(str(array), "npy", 4, 5),
        Shard(str(last), "image", 0, 1),
        Shard(str(idx), "idx", 0, 2), Shard(str(idx), "idx", 2, 3),
        Shard(str(single), "npy", 0, 1),
    ]  # fmt: skip


def _label_idx(folder):
    return write_idx(folder / "labels-idx1-ubyte", np.arange(10, dtype=np.uint8))


def _bad_magic(folder):
    (folder / "bad-idx3-ubyte").write_bytes(b"\x00\x00\x07\x03" + bytes(20))
    return folder / "bad-idx3-ubyte"


def _object_npy(folder):
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return folder / "objects.npy"


def _number_npy(folder):
    np.save(folder / "number.npy", np.float32(3))
    return folder / "number.npy"


REFUSED = {
    "label-idx": (_label_idx, "{}: expected an IDX image file, found a 1-D (label) file"),
    "bad-magic": (_bad_magic, "{}: not an IDX file: expected 00 00 <type> <ndim>, found"),
    "pickled-npy": (_object_npy, "{}: cannot read .npy array ("),
    "number-npy": (_number_npy, "{}: expected an array of images, found a single number"),
}


@pytest.mark.parametrize("reader", ["iter_inputs", "plan_shards"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_file_is_named_with_what_was_expected_and_found(tmp_path, case, reader):
    make, message = REFUSED[case]
    path = make(tmp_path)
    with pytest.raises(InputError) as refused:
        if reader == "iter_inputs":
            list(iter_inputs([path]))
        else:
            plan_shards([path], size=4)
    assert str(refused.value).startswith(message.format(path))


def test_images_of_the_wrong_shape_in_a_shard_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "small.npy"
    np.save(path, np.zeros((3, 27, 27), np.uint8))
    (shard,) = plan_shards([path], size=4)
    with pytest.raises(InputError) as refused:
        read_shard(shard)
    assert str(refused.value).startswith(f"{path}: ")


@pytest.mark.parametrize("kind", ["npy", "idx"])
def test_a_shard_of_a_file_that_shrank_names_the_rows_it_expected(tmp_path, kind):
    def write(n):
        if kind == "npy":
            np.save(tmp_path / "digits.npy", synthetic_digits(n)[0])
            return tmp_path / "digits.npy"
        return write_idx(tmp_path / "digits-idx3-ubyte", synthetic_digits(n)[0])

    path = write(10)
    last, one = plan_shards([path], size=4)[-1], plan_shards([path], size=1)[-1]  # 8..9, 9..9
    write(6)
    for shard, rows in ((last, "8..9"), (one, "9..9")):
        with pytest.raises(InputError) as refused:
            read_shard(shard)
        assert str(refused.value) == f"{path}: expected images {rows}, found fewer"


def test_an_array_larger_than_memory_allows_is_mapped_not_read(tmp_path):
    """784 MB of images on disk (sparse): the first batch and the last shard cost a few MB."""
    import tracemalloc

    path = tmp_path / "huge.npy"
    huge = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(1_000_000, 28, 28))
    del huge
    tracemalloc.start()
    try:
        _, images = next(iter_inputs([path], batch_size=256))
        _, last = read_shard(plan_shards([path], size=256)[-1])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(images) + len(last) == 256 + 1_000_000 % 256
    assert peak < 100 * 2**20, peak  # reading it whole would take 784 MB


def test_a_file_spoilt_after_planning_is_refused_naming_it(tmp_path):
    path = write_idx(tmp_path / "digits-idx3-ubyte", synthetic_digits(4)[0])
    (shard,) = plan_shards([path], size=4)
    path.write_bytes(b"\x00\x00\x07\x03" + bytes(20))
    with pytest.raises(InputError) as refused:
        read_shard(shard)
    assert str(refused.value).startswith(f"{path}: not an IDX file")
