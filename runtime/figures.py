"""Pictures of an evaluation: the confusion matrix and the most confident mistakes. Needs
matplotlib (the train extra), imported only here, only when a picture is asked for."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a device or in CI
import matplotlib.pyplot as plt
import numpy as np

from runtime.files import atomic_path


def plot_evaluation(result, labels, path: Path, title: str) -> None:
    """One PNG: the confusion matrix (counts, log-shaded) beside the most confident mistakes,
    each titled true -> read (confidence)."""
    confusion = np.array(result.confusion)
    fig = plt.figure(figsize=(13, 6), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1])
    ax = left.subplots()
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for (t, p), n in np.ndenumerate(confusion):
        if n:
            colour = "white" if t == p else "black"
            ax.text(p, t, str(n), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("read as")
    ax.set_ylabel("true digit")
    ax.set_title(f"{title}: {result.accuracy:.2%} of {result.count}, ECE {result.ece:.4f}")
    mistakes = result.mistakes
    side = max(int(np.ceil(np.sqrt(len(mistakes)))), 1)
    cells = np.atleast_1d(right.subplots(side, side)).ravel()
    for cell in cells:
        cell.axis("off")
    for cell, m in zip(cells, mistakes, strict=False):
        cell.imshow(_as_picture(m.image), cmap="gray_r")
        title = f"{labels[m.label]} -> {labels[m.predicted]} ({m.confidence:.3f})"
        cell.set_title(title, fontsize=8)
    right.suptitle("the most confident mistakes (true -> read)" if mistakes else "no mistakes")
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _as_picture(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float32).reshape(28, 28)
