"""Accuracy of an exported model on labelled images, with the runtime alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from runtime.session import Classifier


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    count: int
    correct: int
    per_class_accuracy: list[float]  # index = digit
    confusion: list[list[int]]  # [true][predicted]

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(clf: Classifier, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Score `clf` on `images` (any accepted layout) against integer `labels`."""
    return evaluate_batches(clf, [(images, labels)])


def evaluate_batches(
    clf: Classifier, batches: Iterable[tuple[np.ndarray, np.ndarray]], limit: int | None = None
) -> Evaluation:
    """Score `clf` batch by batch (the first `limit` images, if given): memory is bounded by
    one batch, not the data set."""
    n = len(clf.contract.labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    seen = 0
    for images, labels in batches:
        if limit is not None:
            images, labels = images[: limit - seen], labels[: limit - seen]
        predicted = clf.finite(clf.predict_proba(images)).argmax(axis=1)
        np.add.at(confusion, (labels.astype(np.int64), predicted), 1)
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
    )
