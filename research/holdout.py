"""The grouped holdout the research studies share, and helpers to read models kept from a sweep.

The Pareto study is now a product sweep (research/sweeps/pareto.yaml, docs/research/pareto.md):
split the real Kaggle file with `sign-mlops data split --fraction 0.2 --seed 20261126` (the same
split as `holdout_split` below) and each trial's ONNX file is outputs/runs/<child run id>/onnx/model.onnx,
which the other studies take as their model arguments (`kept_model_paths`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOLDOUT_SEED = 20261126  # `sign-mlops data split --fraction 0.2 --seed 20261126` gives the same split


def wrong_photos(predicted: np.ndarray, true: np.ndarray, groups: np.ndarray) -> tuple[str, ...]:
    """Near-copy groups (one source photo each) of which the model gets more than half wrong, as
    "<true letter>-><letter it reads most often> (<rows>)": whether a recipe fixes the same photos
    or trades them for others shows here, where a count hides it."""
    from sign_mlops.contract.labels import LETTERS

    ids, inverse = np.unique(groups, return_inverse=True)
    right = predicted == true
    wrong = np.bincount(inverse, weights=~right) > np.bincount(inverse) / 2
    photos = []
    for group in np.flatnonzero(wrong):
        rows = inverse == group
        misread = np.bincount(predicted[rows & ~right]).argmax()
        photos.append(f"{LETTERS[true[rows][0]]}->{LETTERS[misread]} ({int(rows.sum())})")
    return tuple(sorted(photos))


def holdout_split(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sign_mlops.sign_model.split import grouped_split

    return grouped_split(images, labels, fraction=0.2, seed=HOLDOUT_SEED)


@dataclass
class Holdout:
    """The study's grouped holdout of the real (or synthetic) file, for benchmarks that score kept models."""

    images: np.ndarray
    labels: np.ndarray  # Kaggle labels
    source: str

    @property
    def true_index(self) -> np.ndarray:
        """Class indices, as the models' outputs are ordered."""
        from sign_mlops.sign_model.train import to_indices

        return to_indices(self.labels)


def kept_model_paths(doc: str) -> list[Path]:
    """The ONNX files named on the command line: models trained on the fit part only (a sweep's trials)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX files trained on the fit part only")
    return parser.parse_args().models


def load_holdout() -> Holdout:
    from benchmarks.common import real_or_synthetic_dataset
    from sign_mlops.sign_model.quiet import quiet_tensorflow

    quiet_tensorflow()
    full, source = real_or_synthetic_dataset()
    _, holdout = holdout_split(full.images, full.labels)
    return Holdout(full.images[holdout], full.labels[holdout], source)
