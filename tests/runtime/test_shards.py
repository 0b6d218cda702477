"""Shards, as `--engine ray` reads them: each holds exactly the images that single-process
`predict` reads at those rows, for every input kind and a count that is not a multiple of the
shard size (the last shard is shorter)."""

import numpy as np
import pytest
from PIL import Image

from runtime.errors import InputError
from runtime.inputs import iter_inputs, plan_shards, read_shard
from tests.conftest import synthetic_digits, write_idx

COUNT, SHARD = 1003, 97  # 10 full shards and one of 33


def write_input(folder, kind: str):
    images = synthetic_digits(COUNT, seed=3)[0]
    if kind == "npy":
        np.save(folder / "digits.npy", images)
        return folder / "digits.npy"
    if kind == "npy-float":
        np.save(folder / "digits.npy", images.astype(np.float32) / 255)
        return folder / "digits.npy"
    if kind == "image":
        Image.fromarray(images[0]).save(folder / "digit.png")
        return folder / "digit.png"
    return write_idx(folder / "digits-idx3-ubyte", images, compress=kind == "idx-gz")


@pytest.mark.parametrize("kind", ["npy", "npy-float", "idx", "idx-gz", "image"])
def test_every_shard_holds_the_rows_single_process_predict_reads(tmp_path, kind):
    path = write_input(tmp_path, kind)
    expected_names, expected = [], []
    for names, images in iter_inputs([path], batch_size=64):
        expected_names += names
        expected.append(images)
    expected = np.concatenate(expected)

    shards = plan_shards([path], SHARD)
    found_names, found = [], []
    for shard in shards:
        names, images = read_shard(shard)
        found_names += names
        found.append(images)
    assert found_names == expected_names
    np.testing.assert_array_equal(np.concatenate(found), expected)
    if kind != "image":
        assert len(shards) == 11 and shards[-1].stop - shards[-1].start == COUNT - 10 * SHARD


def test_a_file_that_shrank_after_planning_is_one_line(tmp_path):
    path = write_input(tmp_path, "npy")
    last = plan_shards([path], SHARD)[-1]
    np.save(path, synthetic_digits(COUNT - 40)[0])
    with pytest.raises(InputError, match="found fewer"):
        read_shard(last)
