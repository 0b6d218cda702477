import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import DataError
from runtime.idx import idx_shape, iter_idx, parse_idx, read_idx
from runtime.mnist import (
    download_mnist,
    find_data,
    load_split,
    read_npz_split,
    stream_split,
)
from tests.conftest import idx_bytes, synthetic_digits, write_idx


def test_idx_round_trips_raw_and_gzip(tmp_path):
    images, _ = synthetic_digits(5)
    raw = write_idx(tmp_path / "a-idx3-ubyte", images)
    packed = write_idx(tmp_path / "b-idx3-ubyte.gz", images, compress=True)
    np.testing.assert_array_equal(read_idx(raw), images)
    np.testing.assert_array_equal(read_idx(packed), images)


def test_idx_reads_big_endian_types():
    values = np.array([[1, -2], [300, 40000]], dtype=np.int32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(values, type_byte=0x0C)), values)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "at least 4 bytes"),
        (b"\x01\x02\x08\x01" + bytes(8), "not an IDX file"),
        (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file"),
        (b"\x00\x00\x08\x03\x00\x00", "too short"),
        (idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-10], "truncated"),
        (idx_bytes(np.zeros((2, 28, 28), np.uint8)) + b"x", "trailing bytes"),
    ],
    ids=["short", "bad-magic", "bad-type", "short-header", "truncated", "trailing"],
)
def test_idx_rejects_malformed_files_naming_the_problem(data, message):
    with pytest.raises(DataError, match=message):
        parse_idx(data, "f.idx")


def test_broken_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28), np.uint8)))[:30])
    with pytest.raises(DataError, match="broken gzip"):
        read_idx(path)


def test_folder_split_loads_images_and_labels(mnist_folder):
    split = load_split("test", mnist_folder)
    assert split.images.shape == (20, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.shape == (20,) and split.labels.max() <= 9
    assert len(split) == 20


def test_labels_out_of_range_are_rejected(mnist_folder):
    write_idx(mnist_folder / "t10k-labels-idx1-ubyte.gz", np.full(20, 12, np.uint8), compress=True)
    with pytest.raises(DataError, match=r"expected labels 0-9, found values 12..12"):
        load_split("test", mnist_folder)


def test_label_count_must_match_image_count(mnist_folder):
    write_idx(mnist_folder / "t10k-labels-idx1-ubyte.gz", np.zeros(7, np.uint8), compress=True)
    with pytest.raises(DataError, match="expected 20 labels"):
        load_split("test", mnist_folder)


def test_images_must_be_28_by_28(mnist_folder):
    write_idx(mnist_folder / "t10k-images-idx3-ubyte.gz", np.zeros((20, 32, 32), np.uint8), True)
    with pytest.raises(DataError, match=r"expected images shaped \(N, 28, 28\)"):
        load_split("test", mnist_folder)


def test_missing_file_in_folder_names_it(mnist_folder):
    (mnist_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"):
        load_split("test", mnist_folder)


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_split_loads(tmp_path):
    images, labels = synthetic_digits(4)
    path = _npz(
        tmp_path / "mnist.npz", x_train=images, y_train=labels, x_test=images[:2], y_test=labels[:2]
    )
    assert len(read_npz_split(path, "train")) == 4
    assert len(load_split("test", path)) == 2


def test_npz_missing_keys_are_named(tmp_path):
    path = _npz(tmp_path / "mnist.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError, match="expected keys 'x_train' and 'y_train'"):
        read_npz_split(path, "train")


def test_npz_that_is_not_an_archive_is_rejected(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"not a readable .npz"):
        read_npz_split(path, "train")


def test_explicit_folder_wins_over_environment(mnist_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "elsewhere"))
    assert find_data(mnist_folder) == mnist_folder


def test_environment_folder_is_used_and_checked(mnist_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DIR", str(mnist_folder))
    assert find_data() == mnist_folder
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"MNIST_DIR .*missing: no such file or folder"):
        find_data()


def test_keras_cache_is_used_before_downloading(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "datasets" / "mnist.npz"
    cached.parent.mkdir()
    cached.write_bytes(b"placeholder")
    assert find_data() == cached


def test_offline_without_data_says_how_to_point_at_a_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match="pass --data DIR or set MNIST_DIR"):
        find_data(download=False)


@pytest.fixture
def served_file(tmp_path):
    """Serve one file over HTTP on the loopback interface; yields (url, payload)."""
    images, labels = synthetic_digits(3)
    payload_path = _npz(
        tmp_path / "served.npz", x_train=images, y_train=labels, x_test=images, y_test=labels
    )

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=str(tmp_path), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/served.npz", payload_path.read_bytes()
    server.shutdown()


def test_download_verifies_checksum_then_caches(served_file, tmp_path):
    url, payload = served_file
    dest = tmp_path / "cache" / "mnist.npz"
    download_mnist(dest, url=url, sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload
    assert len(read_npz_split(dest, "test")) == 3


def test_download_with_wrong_checksum_leaves_nothing(served_file, tmp_path):
    url, _ = served_file
    dest = tmp_path / "cache" / "mnist.npz"
    with pytest.raises(DataError, match="checksum mismatch"):
        download_mnist(dest, url=url, sha256="0" * 64)
    assert not dest.exists()
    assert not dest.parent.exists() or not any(dest.parent.iterdir())


@pytest.mark.mnist
def test_real_mnist_is_the_genuine_set(real_mnist):
    train, test = load_split("train", real_mnist), load_split("test", real_mnist)
    assert (len(train), len(test)) == (60000, 10000)
    # Label counts and pixel mean from the data set's own README.
    assert np.bincount(test.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert abs(train.images.mean() / 255 - 0.13066) < 1e-4


def test_streaming_an_idx_file_gives_the_same_images_in_chunks(tmp_path):
    images, _ = synthetic_digits(23)
    for compress in (False, True):
        path = write_idx(tmp_path / f"x{compress}-idx3-ubyte", images, compress=compress)
        chunks = list(iter_idx(path, batch_size=5))
        assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
        np.testing.assert_array_equal(np.concatenate(chunks), images)
        assert idx_shape(path) == (23, 28, 28)


@pytest.mark.parametrize(("cut", "message"), [(-100, "truncated"), (1, "trailing bytes")])
def test_streaming_detects_truncated_and_overlong_files(tmp_path, cut, message):
    data = idx_bytes(synthetic_digits(4)[0])
    data = data[:cut] if cut < 0 else data + b"x" * cut
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        list(iter_idx(path, batch_size=3))


def test_streamed_split_matches_the_loaded_split(mnist_folder, tmp_path):
    whole = load_split("test", mnist_folder)
    source, count, batches = stream_split("test", mnist_folder, batch_size=6)
    images, labels = zip(*batches, strict=True)
    assert (source, count) == (mnist_folder, 20)
    np.testing.assert_array_equal(np.concatenate(images), whole.images)
    np.testing.assert_array_equal(np.concatenate(labels), whole.labels)


def test_a_gzip_idx_header_claiming_more_than_deflate_can_hold_is_refused_unread(tmp_path):
    # 10 million 28x28 images (7.8 GB) in a file of a few dozen bytes: DEFLATE expands at most
    # 1032 to 1, so the header is refused from the file's size, before anything is inflated.
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">4B3I", 0, 0, 8, 3, 10_000_000, 28, 28)))
    with pytest.raises(DataError, match=r"gzip file expands to at most [\d,]+") as e:
        read_idx(path)
    assert f"{path.stat().st_size * 1032:,}" in str(e.value)
