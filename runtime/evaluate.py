"""Accuracy of an exported model on labelled images, with the runtime alone: how often it is
right, how well its confidence says so (calibration), and what a confidence threshold buys."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from runtime.session import Classifier

# Thresholds a user might set with `read --min-confidence`: what each keeps, and how right.
THRESHOLDS = (0.5, 0.9, 0.99, 0.999, 0.9999)
BINS = 15  # equal-width confidence bins for the expected calibration error (Guo et al. 2017)


@dataclass(frozen=True)
class Threshold:
    confidence: float  # digits read at this confidence or above are kept
    kept: float  # share of all digits
    accuracy: float  # among those kept (1.0 when none is)


@dataclass(frozen=True)
class Mistake:
    index: int  # in the data, from 0
    label: int
    predicted: int
    confidence: float
    image: np.ndarray = field(repr=False, compare=False)  # as fed, for a picture of it


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    count: int
    correct: int
    per_class_accuracy: list[float]  # index = digit
    confusion: list[list[int]]  # [true][predicted]
    ece: float  # expected calibration error: mean |accuracy - confidence| over the bins
    thresholds: list[Threshold]
    mistakes: list[Mistake]  # the most confident ones, most confident first

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mistakes"] = [
            {k: v for k, v in asdict(m).items() if k != "image"} for m in self.mistakes
        ]
        return out


def evaluate(clf: Classifier, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Score `clf` on `images` (any accepted layout) against integer `labels`."""
    return evaluate_batches(clf, [(images, labels)])


def evaluate_batches(
    clf: Classifier,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    limit: int | None = None,
    keep_mistakes: int = 16,
) -> Evaluation:
    """Score `clf` batch by batch (the first `limit` images, if given): memory is bounded by
    one batch, not the data set."""
    n = len(clf.contract.labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    tally = Tally()
    worst: list[tuple[float, int, Mistake]] = []  # a min-heap of the most confident mistakes
    seen = 0
    for images, labels in batches:
        if limit is not None:
            images, labels = images[: limit - seen], labels[: limit - seen]
        probs = clf.finite(clf.predict_proba(images))
        predicted = probs.argmax(axis=1)
        confidence = probs.max(axis=1)
        labels = labels.astype(np.int64)
        np.add.at(confusion, (labels, predicted), 1)
        tally.add(confidence, predicted == labels)
        for i in np.flatnonzero(predicted != labels):
            mistake = Mistake(seen + int(i), int(labels[i]), int(predicted[i]),
                              round(float(confidence[i]), 6), images[i].copy())  # fmt: skip
            heapq.heappush(worst, (mistake.confidence, mistake.index, mistake))
            if len(worst) > keep_mistakes:
                heapq.heappop(worst)
        seen += len(labels)
        if limit is not None and seen >= limit:
            break
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    count = int(confusion.sum())
    correct = int(confusion.trace())
    return Evaluation(
        accuracy=correct / max(count, 1),
        count=count,
        correct=correct,
        per_class_accuracy=[round(float(a), 6) for a in per_class],
        confusion=confusion.tolist(),
        ece=round(tally.ece(), 6),
        thresholds=tally.thresholds(),
        mistakes=[m for _, _, m in sorted(worst, key=lambda w: (-w[0], w[1]))],
    )


class Tally:
    """Counts, streamed, from which calibration and the threshold table follow."""

    def __init__(self) -> None:
        self.bin_count = np.zeros(BINS, np.int64)
        self.bin_right = np.zeros(BINS, np.int64)
        self.bin_confidence = np.zeros(BINS, np.float64)
        self.kept = np.zeros(len(THRESHOLDS), np.int64)
        self.kept_right = np.zeros(len(THRESHOLDS), np.int64)
        self.total = 0

    def add(self, confidence: np.ndarray, right: np.ndarray) -> None:
        bins = np.minimum((confidence * BINS).astype(np.int64), BINS - 1)
        np.add.at(self.bin_count, bins, 1)
        np.add.at(self.bin_right, bins, right.astype(np.int64))
        np.add.at(self.bin_confidence, bins, confidence.astype(np.float64))
        for j, t in enumerate(THRESHOLDS):
            sure = confidence >= t
            self.kept[j] += int(sure.sum())
            self.kept_right[j] += int((sure & right).sum())
        self.total += len(confidence)

    def ece(self) -> float:
        used = self.bin_count > 0
        gap = np.abs(self.bin_right[used] - self.bin_confidence[used])  # both summed per bin
        return float(gap.sum() / max(self.total, 1))

    def thresholds(self) -> list[Threshold]:
        return [
            Threshold(
                t,
                round(float(k / max(self.total, 1)), 6),
                round(float(r / k), 6) if k else 1.0,
            )
            for t, k, r in zip(THRESHOLDS, self.kept, self.kept_right, strict=True)
        ]
