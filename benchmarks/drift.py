"""Benchmark: how often the drift check cries wolf, and how often it catches a real shift.

    python benchmarks/drift.py [--batches 200]

Reference profile: the training part of a grouped split (near-copy groups kept apart, 60/40) of
the Kaggle training file from ../shared (synthetic data of the same size otherwise). Clean
batches: random rows of the held-out part, 100 / 1,000 / 10,000 rows. Shifted batches: the same
rows after sensor noise, darkening, contrast loss, mirroring (a left-handed signer) and
inversion, 1,000 rows. The predicted-class test uses the true labels (a perfect classifier);
the confidence test needs a model and is left out here. Goals (issue 15): false alarms <= 5 %
at every size, detection >= 95 % at 1,000 rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import REAL_TRAIN, print_table  # noqa: E402

SHIFTS = {
    "sensor noise (sigma 8)": lambda x, rng: np.clip(x + rng.normal(0, 8, x.shape), 0, 255),
    "sensor noise (sigma 20)": lambda x, rng: np.clip(x + rng.normal(0, 20, x.shape), 0, 255),
    "darker (x0.7)": lambda x, rng: x * 0.7,
    "contrast halved": lambda x, rng: (x - x.mean(axis=(1, 2), keepdims=True)) * 0.5 + x.mean(axis=(1, 2), keepdims=True),
    "mirrored (left hand)": lambda x, rng: x[:, :, ::-1],
    "inverted": lambda x, rng: 255 - x,
}


def load() -> tuple[np.ndarray, np.ndarray, str]:
    from sign_mlops.sign_model.data import load_dataset

    if REAL_TRAIN.exists():
        data = load_dataset(REAL_TRAIN)
        return data.images, data.labels, "Kaggle training file (27,455 rows)"
    from sign_mlops.sign_model.synthetic import generate_images

    images, labels = generate_images(27455, seed=0)
    return images, labels, "synthetic data (27,455 rows; ../shared not present)"


def alarm_rate(profile: dict, images: np.ndarray, labels: np.ndarray, size: int, batches: int,
               rng: np.random.Generator) -> tuple[float, float]:
    """Share of batches flagged, and seconds per batch for the drift check."""
    from sign_mlops.contract.drift import DriftAccumulator
    from sign_mlops.contract.labels import INDEX_OF_LABEL

    index = np.array([INDEX_OF_LABEL[int(label)] for label in labels])
    flagged, seconds = 0, 0.0
    for _ in range(batches):
        rows = rng.choice(len(images), size=size, replace=size > len(images))
        start = time.perf_counter()
        acc = DriftAccumulator(profile)
        acc.update(images[rows].reshape(size, -1), index[rows])
        flagged += acc.report()["drift"]
        seconds += time.perf_counter() - start
    return flagged / batches, seconds / batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    from sign_mlops.contract.drift import build_profile
    from sign_mlops.sign_model.split import grouped_split

    images, labels, described = load()
    train_idx, held_idx = grouped_split(images, labels, 0.4, seed=0)
    profile = build_profile(images[train_idx], labels[train_idx])
    held, held_labels = images[held_idx].astype(np.float32), labels[held_idx]
    rng = np.random.default_rng(0)
    rows = []
    for size in (100, 1000, 10000):
        rate, seconds = alarm_rate(profile, held, held_labels, size, args.batches if size < 10000 else args.batches // 4, rng)
        rows.append(["clean", f"{size:,}", f"{rate:.1%}", "false alarms <= 5 %", f"{seconds * 1000:.1f}"])
    for name, shift in SHIFTS.items():
        shifted = shift(held, rng).astype(np.float32)
        rate, seconds = alarm_rate(profile, shifted, held_labels, 1000, args.batches, rng)
        rows.append([name, "1,000", f"{rate:.1%}", "detected >= 95 %", f"{seconds * 1000:.1f}"])
    v1 = {k: profile[k] for k in ("rows", "mean_intensity_edges", "mean_intensity_shares", "class_shares")}
    for name, batch_images, size in (("clean", held, 100), ("clean", held, 1000),
                                     ("inverted", (255 - held).astype(np.float32), 1000)):
        rate, seconds = alarm_rate(v1, batch_images, held_labels, size, args.batches, rng)
        rows.append([f"{name} -- previous check (PSI > 0.2)", f"{size:,}", f"{rate:.1%}", "baseline", f"{seconds * 1000:.1f}"])
    print_table(f"Drift check on {described}: reference = training part of a 60/40 grouped split "
                f"({len(train_idx):,} rows), batches drawn from the held-out part ({len(held_idx):,} rows)",
                ["batch", "rows", "flagged", "goal", "ms per batch"], rows)


if __name__ == "__main__":
    main()
