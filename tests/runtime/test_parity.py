"""The parity gate's limits (runtime/parity.py), each at the stated limit and one past it, on
probabilities built by hand: which images differ, and how, is chosen, not computed."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.parity import INT8_LIMITS, compare

N = 1000  # at INT8's limits: 2 disagreements (99.8%) and 1 image of accuracy (0.1%) allowed


def one_hot(labels: np.ndarray, weight: float = 0.9) -> np.ndarray:
    p = np.full((len(labels), 10), (1 - weight) / 9, np.float32)
    p[np.arange(len(labels)), labels] = weight
    return p


LABELS = np.arange(N) % 10
REFERENCE = one_hot(LABELS)  # right on every image


def candidate_reading(wrong: int, fixed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, candidate): the candidate wrong on the first `wrong` images the reference
    reads right, and right on `fixed` images the reference reads wrong."""
    labels = LABELS.copy()
    labels[N - fixed :] = (labels[N - fixed :] + 1) % 10  # the reference is wrong on these
    read = LABELS.copy()
    read[:wrong] = (read[:wrong] + 1) % 10
    read[N - fixed :] = labels[N - fixed :]
    return labels, one_hot(read)


@pytest.mark.parametrize(
    "wrong, fixed, passes",
    [
        (0, 0, True),
        (1, 0, True),  # 0.1 points of accuracy: the limit
        (2, 0, False),  # 0.2 points: one past it, with agreement (99.8%) still at its limit
        (1, 1, True),  # two disagreements, no accuracy lost
        (2, 1, False),  # three disagreements: agreement one past its limit
    ],
)
def test_int8_gate_holds_accuracy_and_agreement_at_their_stated_limits(wrong, fixed, passes):
    labels, candidate = candidate_reading(wrong, fixed)
    report = compare(REFERENCE, candidate, labels, **INT8_LIMITS)
    assert report.passed is passes, report.failures()
    assert report.agreement == 1 - (wrong + fixed) / N


def test_an_accuracy_drop_past_the_limit_is_named_with_its_figures():
    labels, candidate = candidate_reading(2)
    (failure,) = compare(REFERENCE, candidate, labels, **INT8_LIMITS).failures()
    assert failure == "accuracy dropped 0.20% (100.00% -> 99.80%) > 0.10%"


@pytest.mark.parametrize("diff, passes", [(1e-5, True), (1.1e-5, False)])
def test_fp32_gate_allows_the_stated_probability_difference_and_no_more(diff, passes):
    candidate = REFERENCE.astype(np.float64)
    candidate[7, LABELS[7]] -= diff
    report = compare(REFERENCE, candidate, LABELS)
    assert report.passed is passes, report.failures()
