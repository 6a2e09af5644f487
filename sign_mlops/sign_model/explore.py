"""Exploration pictures (headless matplotlib): a sample grid and class-count bar charts."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sign_mlops.contract.labels import KAGGLE_LABELS, LETTERS, letter_of  # noqa: E402
from sign_mlops.sign_model.data import SignDataset  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Save a figure as PNG and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_samples(dataset: SignDataset, path: Path, n: int = 32, seed: int = 0) -> Path:
    """A grid of random samples titled with their letters."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)
    cols = 8
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), picks):
        ax.imshow(dataset.images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(letter_of(int(dataset.labels[i])), fontsize=10)
    fig.suptitle(f"Random samples from {Path(dataset.source).name}")
    return save_figure(fig, path)


def plot_class_counts(dataset: SignDataset, path: Path, title: str) -> Path:
    """Bar chart of rows per letter."""
    counts = [int((dataset.labels == label).sum()) for label in KAGGLE_LABELS]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(LETTERS, counts, color="#4C72B0")
    ax.set_xlabel("letter")
    ax.set_ylabel("rows")
    ax.set_title(title)
    return save_figure(fig, path)


def explore(train: SignDataset, test: SignDataset | None, out_dir: Path) -> list[Path]:
    """All exploration pictures for a train (and optional test) split."""
    paths = [plot_samples(train, out_dir / "samples_train.png"),
             plot_class_counts(train, out_dir / "class_counts_train.png", f"Training rows per letter (n={len(train)})")]
    if test is not None:
        paths.append(plot_class_counts(test, out_dir / "class_counts_test.png", f"Test rows per letter (n={len(test)})"))
    return paths
