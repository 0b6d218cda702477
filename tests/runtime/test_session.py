from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from runtime import Classifier, InputError, ModelError
from runtime.contract import metadata_for
from runtime.session import SessionSettings
from tests.conftest import linear_onnx, synthetic_digits


def test_predict_proba_returns_float32_rows_that_sum_to_one(tiny_model):
    images, _ = synthetic_digits(7)
    probs = Classifier(tiny_model).predict_proba(images)
    assert probs.shape == (7, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_every_accepted_layout_gives_the_same_answer(tiny_model):
    clf = Classifier(tiny_model)
    images, _ = synthetic_digits(3)
    expected = clf.predict_proba(images)
    for x in (images[..., None], images.reshape(3, 784), images.astype(np.float32) / 255):
        np.testing.assert_allclose(clf.predict_proba(x), expected, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(images[0]), expected[:1], atol=1e-6)


def test_large_inputs_run_in_batches_with_the_same_result(tiny_model):
    images, _ = synthetic_digits(50)
    whole = Classifier(tiny_model, batch_size=1000).predict_proba(images)
    chunked = Classifier(tiny_model, batch_size=7).predict_proba(images)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


def test_predict_is_argmax_of_probabilities(tiny_model):
    clf = Classifier(tiny_model)
    images, _ = synthetic_digits(5)
    np.testing.assert_array_equal(clf.predict(images), clf.predict_proba(images).argmax(1))


def test_empty_batch_gives_empty_result(tiny_model):
    assert Classifier(tiny_model).predict_proba(np.zeros((0, 28, 28), np.uint8)).shape == (0, 10)


def test_bad_input_array_is_an_input_error(tiny_model):
    with pytest.raises(InputError, match=r"found \(5, 5\)"):
        Classifier(tiny_model).predict(np.zeros((5, 5), np.uint8))


def test_sharing_one_classifier_between_threads_matches_serial_calls(tiny_model):
    clf = Classifier(tiny_model, threads=1)
    batches = [synthetic_digits(9, seed=s)[0] for s in range(16)]
    serial = [clf.predict_proba(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(clf.predict_proba, batches * 4))
    for i, got in enumerate(parallel):
        np.testing.assert_array_equal(got, serial[i % 16])


def test_uint8_and_nchw_models_are_fed_in_their_contract(tmp_path):
    images, _ = synthetic_digits(4)
    nhwc = Classifier(linear_onnx(tmp_path / "a.onnx", ("N", 28, 28, 1), seed=3))
    nchw = Classifier(linear_onnx(tmp_path / "b.onnx", ("N", 1, 28, 28), seed=3))
    np.testing.assert_allclose(nchw.predict_proba(images), nhwc.predict_proba(images), atol=1e-6)
    u8 = Classifier(linear_onnx(tmp_path / "c.onnx", ("N", 28, 28), "uint8"))
    assert u8.contract.dtype == np.uint8 and u8.contract.pixel_scale == 1.0
    assert u8.predict_proba(images).shape == (4, 10)


def test_model_without_metadata_is_usable_and_says_what_was_assumed(tmp_path):
    clf = Classifier(linear_onnx(tmp_path / "bare.onnx"))
    assert "pixels scaled to [0, 1]" in clf.contract.assumed
    assert any("NHWC" in a for a in clf.contract.assumed)


def test_model_with_metadata_assumes_nothing(tiny_model):
    assert Classifier(tiny_model).contract.assumed == ()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such model file"),
        (lambda p: _write(p, b""), "empty file"),
        (lambda p: _write(p, b"\x08\x01garbage" * 10), "expected an ONNX model"),
        (lambda p: linear_onnx(p, ("N", 3, 32, 32)), r"expected an MNIST image input.*3, 32, 32"),
        (
            lambda p: linear_onnx(p, metadata=metadata_for("NXYZ", 1.0, "probabilities")),
            "input_layout: expected one of",
        ),
    ],
    ids=["missing", "empty", "not-onnx", "other-contract", "bad-metadata"],
)
def test_bad_model_files_are_model_errors_naming_the_file(tmp_path, make, message):
    path = make(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=message) as err:
        Classifier(path)
    assert "m.onnx" in str(err.value)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_truncated_model_is_a_model_error(tiny_model):
    data = tiny_model.read_bytes()
    tiny_model.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"linear.onnx"):
        Classifier(tiny_model)


def test_zero_threads_or_batch_size_are_rejected(tiny_model):
    with pytest.raises(InputError, match="--threads"):
        Classifier(tiny_model, threads=0)
    with pytest.raises(InputError, match="batch_size"):
        Classifier(tiny_model, batch_size=0)


def test_bound_buffers_never_leak_between_calls(tiny_model):
    clf = Classifier(tiny_model)
    a, _ = synthetic_digits(3, seed=1)
    b, _ = synthetic_digits(3, seed=2)
    first = clf.predict_proba(a)
    kept = first.copy()
    clf.predict_proba(b)  # same shape: reuses the bound output buffer
    np.testing.assert_array_equal(first, kept)  # what the caller holds is its own copy
    for images in (b, a):  # each bound run reads the images it is given, not the last ones
        feed = {clf.contract.input_name: clf.contract.feed(images)}
        plain = clf.contract.probabilities(clf.session.run(None, feed)[0])
        np.testing.assert_allclose(clf.predict_proba(images), plain, rtol=1e-6)
    for n in range(1, 9):  # more shapes than bindings are kept: falls back to plain runs
        assert clf.predict_proba(b[:1].repeat(n, axis=0)).shape == (n, 10)


def test_split_batches_give_what_one_session_gives(tmp_path):
    path = linear_onnx(tmp_path / "m.onnx", metadata=metadata_for("NHWC", 1 / 255, "probabilities"))
    images, _ = synthetic_digits(700)
    serial = Classifier(path, threads=1).predict_proba(images)
    split = Classifier(path, settings=SessionSettings(threads=2, split_batches=True))
    assert split.split_threads == 2
    for batch in (images[:1], images[:255], images[:256], images[:300]):  # below, at, past the cut
        np.testing.assert_array_equal(split.predict_proba(batch), serial[: len(batch)])
    np.testing.assert_array_equal(split.predict_proba(images), serial)  # chunks of 256, each split


def test_split_classifier_opens_its_other_sessions_only_for_a_batch_that_splits(tmp_path):
    path = linear_onnx(tmp_path / "m.onnx")
    images, _ = synthetic_digits(300)
    clf = Classifier(path, settings=SessionSettings(threads=2, split_batches=True))
    clf.predict_proba(images[:1])  # what a one-image predict pays: one session
    assert len(clf._replicas) == 1
    clf.predict_proba(images)
    assert len(clf._replicas) == 2
    clf.close()
    with pytest.raises(ModelError, match="closed"):
        clf.predict_proba(images)


def test_split_batches_by_default_only_for_int8_models(tmp_path):
    def classifier(variant, split=None):
        meta = metadata_for("NHWC", 1 / 255, "probabilities", **variant)
        path = linear_onnx(tmp_path / f"{variant}{split}.onnx", metadata=meta)
        return Classifier(path, settings=SessionSettings(threads=2, split_batches=split))

    assert classifier({"variant": "int8"}).split_threads == 2
    assert classifier({}).split_threads == 1
    assert classifier({"variant": "int8"}, split=False).split_threads == 1
    assert classifier({}, split=True).split_threads == 2


def test_split_classifier_shared_between_threads_matches_serial_calls(tmp_path):
    path = linear_onnx(tmp_path / "m.onnx")
    images, _ = synthetic_digits(512, seed=1)
    clf = Classifier(path, settings=SessionSettings(threads=2, split_batches=True))
    expected = Classifier(path, threads=1).predict_proba(images)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: clf.predict_proba(images), range(24)))
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_a_bare_shipped_name_finds_the_shipped_model_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Classifier("mnist_edge.int8.onnx").metadata["variant"] == "int8"
    monkeypatch.setenv("MNIST_EDGE_MODEL", "mnist_edge.int8.onnx")
    assert Classifier().path.name == "mnist_edge.int8.onnx"
    with pytest.raises(ModelError, match=r"no_such\.onnx: no such model file"):
        Classifier("no_such.onnx")


def test_a_forked_child_classifies_with_the_parents_classifier(tmp_path):
    # The split pool's worker thread and onnxruntime's threads do not exist in a forked child:
    # without new ones there, the child hung forever on any batch split across threads.
    import multiprocessing
    import queue

    path = linear_onnx(tmp_path / "m.onnx", metadata=metadata_for("NHWC", 1 / 255, "probabilities"))
    clf = Classifier(path, settings=SessionSettings(threads=2, split_batches=True))
    images = np.random.default_rng(0).integers(0, 256, (512, 28, 28), np.uint8)
    expected = clf.predict_proba(images)  # the pool has run in the parent
    results = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=lambda: results.put(clf.predict_proba(images))
    )
    child.start()
    try:
        np.testing.assert_array_equal(results.get(timeout=30), expected)
    except queue.Empty:
        pytest.fail("the forked child did not answer within 30 s")
    finally:
        child.kill()
        child.join()
    clf.close()


def test_spinning_stops_after_each_run_only_when_asked():
    from runtime.session import _options

    asked = _options(SessionSettings(threads=2, spin_between_runs=False))
    assert asked.get_session_config_entry("session.force_spinning_stop") == "1"
    with pytest.raises(RuntimeError, match="force_spinning_stop"):  # onnxruntime's default
        _options(SessionSettings(threads=2)).get_session_config_entry("session.force_spinning_stop")
