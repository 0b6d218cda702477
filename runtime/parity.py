"""Compare a model's probabilities with a reference's on the same images."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from runtime.errors import ModelError

AGREEMENT_MIN = 1.0  # fp32 export: every top-1 label must match the reference
MAX_ABS_DIFF = 1e-5  # fp32 export: largest allowed probability difference
INT8_AGREEMENT_MIN = 0.998  # INT8 variant: top-1 agreement with its fp32 source
INT8_ACCURACY_DROP_MAX = 0.001  # INT8 variant: at most 0.1 percentage points of test accuracy
INT8_MAX_ABS_DIFF = 1.0  # INT8 variant: reported, not limiting (near-ties legitimately swing)
ROW_TOLERANCE = 0.01  # reported: the share of rows whose every probability is this close


@dataclass(frozen=True)
class ParityReport:
    count: int
    agreement: float  # fraction of images with the same top-1 label
    max_abs_diff: float  # largest |p_candidate - p_reference| over all images and classes
    reference_accuracy: float
    candidate_accuracy: float
    agreement_min: float
    max_abs_diff_allowed: float
    disagreements: list[int]  # indices of images whose top-1 labels differ (first 20)
    accuracy_drop_max: float | None = None  # None: accuracy may differ (not checked)
    rows_within: float = 1.0  # share of rows with max |p_candidate - p_reference| <= ROW_TOLERANCE

    @property
    def passed(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def failures(self) -> list[str]:
        """Every check that failed, each with its figure and its tolerance."""
        failed = []
        if self.agreement < self.agreement_min:
            failed.append(
                f"top-1 agreement {self.agreement:.4%} < {self.agreement_min:.4%} "
                f"({round((1 - self.agreement) * self.count)} images differ, "
                f"first: {self.disagreements[:5]})"
            )
        if self.max_abs_diff > self.max_abs_diff_allowed:
            diff, allowed = self.max_abs_diff, self.max_abs_diff_allowed
            failed.append(f"max probability difference {diff:.3g} > {allowed:g}")
        drop = self.reference_accuracy - self.candidate_accuracy
        if self.accuracy_drop_max is not None and drop > self.accuracy_drop_max + 1e-12:
            failed.append(
                f"accuracy dropped {drop:.2%} ({self.reference_accuracy:.2%} -> "
                f"{self.candidate_accuracy:.2%}) > {self.accuracy_drop_max:.2%}"
            )
        return failed


INT8_LIMITS = {
    "agreement_min": INT8_AGREEMENT_MIN,
    "max_abs_diff_allowed": INT8_MAX_ABS_DIFF,
    "accuracy_drop_max": INT8_ACCURACY_DROP_MAX,
}


def models_parity(
    reference, candidate, images: np.ndarray, labels: np.ndarray, int8: bool | None = None
) -> ParityReport:
    """Parity of two runtime `Classifier`s on the same images.

    `int8` None: INT8 tolerances when either model is an INT8 variant, fp32 ones otherwise.
    """
    if int8 is None:
        int8 = reference.contract.int8 or candidate.contract.int8
    limits = INT8_LIMITS if int8 else {}
    ref, cand = (m.finite(m.predict_proba(images)) for m in (reference, candidate))
    return compare(ref, cand, labels, **limits)


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray,
    agreement_min: float = AGREEMENT_MIN,
    max_abs_diff_allowed: float = MAX_ABS_DIFF,
    accuracy_drop_max: float | None = None,
) -> ParityReport:
    """Parity of `candidate` (N, 10) probabilities against `reference` (N, 10) on `labels`."""
    if reference.shape != candidate.shape:
        raise ModelError(
            f"expected probabilities of the same shape, found reference {reference.shape}, "
            f"candidate {candidate.shape}"
        )
    ref_top, cand_top = reference.argmax(axis=1), candidate.argmax(axis=1)
    differ = np.flatnonzero(ref_top != cand_top)
    n = max(len(labels), 1)
    row_diff = np.abs(reference.astype(np.float64) - candidate).max(axis=1, initial=0.0)
    return ParityReport(
        count=len(labels),
        agreement=1 - len(differ) / n,
        max_abs_diff=float(row_diff.max(initial=0.0)),
        reference_accuracy=float((ref_top == labels).sum() / n),
        candidate_accuracy=float((cand_top == labels).sum() / n),
        agreement_min=agreement_min,
        max_abs_diff_allowed=max_abs_diff_allowed,
        disagreements=differ[:20].tolist(),
        accuracy_drop_max=accuracy_drop_max,
        rows_within=float((row_diff <= ROW_TOLERANCE).sum() / n),
    )
