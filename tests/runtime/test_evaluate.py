"""`evaluate`: calibration error, the threshold table and the most confident mistakes, each
against a computation of its own from the model's probabilities."""

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from runtime.cli import app
from runtime.evaluate import BINS, THRESHOLDS, evaluate, evaluate_batches


class TableModel:
    """Stands in for a Classifier: answers each call with the next rows of a fixed table."""

    def __init__(self, probs: np.ndarray):
        self.probs, self.served = probs.astype(np.float32), 0
        self.contract = type("Contract", (), {"labels": tuple("0123456789")})

    def predict_proba(self, images):
        rows = self.probs[self.served : self.served + len(images)]
        self.served += len(images)
        return rows

    def finite(self, probs):
        return probs


@pytest.fixture
def scored():
    """300 digits read with confidences from 0.1 to 1.0, right more often when surer."""
    rng = np.random.default_rng(7)
    n = 300
    confidence = np.concatenate([rng.uniform(0.1, 1.0, n - 60), np.full(60, 0.99995)])
    predicted = rng.integers(0, 10, n)
    probs = np.full((n, 10), 0.0)
    probs[np.arange(n), predicted] = confidence
    probs[np.arange(n), (predicted + 1) % 10] += 1 - confidence  # the runner-up takes the rest
    right = rng.uniform(0, 1, n) < confidence**2
    labels = np.where(right, predicted, (predicted + 1) % 10)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    probs = probs.astype(np.float32).astype(np.float64)  # as the model gives them
    return TableModel(probs), images, labels, probs


def test_calibration_error_is_the_weighted_gap_between_accuracy_and_confidence(scored):
    clf, images, labels, probs = scored
    confidence, right = probs.max(1), probs.argmax(1) == labels
    expected = 0.0
    for b in range(BINS):  # bins (b/15, (b+1)/15], confidence 1.0 in the last
        low, high = b / BINS, (b + 1) / BINS
        inside = (confidence >= low) & ((confidence < high) | (b == BINS - 1))
        if inside.any():
            gap = abs(right[inside].mean() - confidence[inside].mean())
            expected += inside.mean() * gap
    assert expected > 0.01  # the case is not trivial
    assert evaluate(clf, images, labels).ece == pytest.approx(expected, abs=2e-6)


def test_each_threshold_keeps_the_sure_digits_and_says_how_right_they_are(scored):
    clf, images, labels, probs = scored
    confidence, right = probs.max(1), probs.argmax(1) == labels
    table = evaluate(clf, images, labels).thresholds
    assert [t.confidence for t in table] == list(THRESHOLDS)
    for row in table:
        sure = confidence >= row.confidence
        assert row.kept == pytest.approx(sure.mean(), abs=1e-6)
        assert row.accuracy == pytest.approx(right[sure].mean() if sure.any() else 1.0, abs=1e-6)
    assert table[0].kept > table[-1].kept  # thresholds do bite here


def test_the_most_confident_mistakes_come_first_with_their_images(scored):
    clf, images, labels, probs = scored
    predicted, confidence = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(predicted != labels)
    expected = sorted(wrong, key=lambda i: (-round(confidence[i], 6), i))[:5]
    mistakes = evaluate_batches(clf, [(images, labels)], keep_mistakes=5).mistakes
    assert [m.index for m in mistakes] == expected
    for m in mistakes:
        assert (m.label, m.predicted) == (labels[m.index], predicted[m.index])
        np.testing.assert_array_equal(m.image, images[m.index])


def test_streamed_batches_give_what_one_batch_gives(scored):
    clf, images, labels, probs = scored
    whole = evaluate(clf, images, labels)
    chunks = [(images[i : i + 70], labels[i : i + 70]) for i in range(0, 300, 70)]
    streamed = evaluate_batches(TableModel(probs), chunks)
    assert streamed.to_dict() == whole.to_dict()


def test_evaluate_plot_draws_a_png_and_says_so(tiny_model, mnist_folder, tmp_path):
    out = tmp_path / "eval.png"
    args = ["evaluate", "--model", tiny_model, "--data", mnist_folder, "--plot", out]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout.splitlines()[-1] == f"wrote {out}"
    assert "calibration error (ECE)" in result.stdout


def test_evaluate_plot_without_matplotlib_is_one_line_before_any_work(tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "runtime.figures", raising=False)
    result = CliRunner().invoke(
        app, ["evaluate", "--model", str(tiny_model), "--data", "/nonexistent", "--plot", "x.png"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --plot: needs matplotlib, found it not installed "
        "(pip install 'mnist-edge[train]', or pip install matplotlib)"
    ]
