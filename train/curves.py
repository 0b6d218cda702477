"""Learning curves of a training run: loss, accuracy and learning rate per epoch, as a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt

from runtime.files import atomic_path


def plot_history(history: dict[str, list[float]], path: Path, title: str) -> None:
    """Three panels side by side, one point per epoch; keys missing from `history` are skipped."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    for ax, key, label in zip(
        axes,
        ("loss", "accuracy", "learning_rate"),
        ("training loss", "training accuracy (augmented images)", "learning rate"),
        strict=True,
    ):
        values = history.get(key, [])
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if history.get("loss"):
        axes[0].set_yscale("log")
    fig.suptitle(title)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
