"""Benchmark: what the training-time augmentation costs, each shift on the whole batch vs on the
images that drew it, one table.

`sign_model.augment` gives a share of the images one camera shift each (and some an occluder).
It used to compute every shift for the whole batch and keep it where drawn (`tf.where`); now each
shift runs on the images that drew it (`augment._on_images`). Both ways draw from the same
distributions. For the classifier's training stream (the default preset's shares) and the hand
detector's (`handedness.DETECTOR_SHIFTS`), both ways in the same process, alternating, best of
--repeats: seconds for one epoch of the stream alone (geometric + camera augmentation, batches of
128 over the training part), and one epoch of `lite`'s training (`model.fit`, bn_cnn16_late).
Data: the real Kaggle training file from ../shared (synthetic of the same size otherwise).

    .venv/bin/python benchmarks/augment_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table, real_or_synthetic_dataset  # noqa: E402


@contextmanager
def whole_batch():
    """The augmentation as it was: every shift computed for the whole batch, kept where drawn."""
    import tensorflow as tf

    from sign_model import augment

    original = augment._on_images
    augment._on_images = lambda x, selected, shift: tf.where(selected, shift(x), x)
    try:
        yield
    finally:
        augment._on_images = original


WAYS = {"whole batch (before)": whole_batch, "images that drew it (now)": nullcontext}


def epoch_seconds(make_stream) -> float:
    """Seconds to draw one epoch of a stream built inside the current way (the map traces it)."""
    stream = make_stream()
    sum(1 for _ in stream)  # trace and warm up
    started = time.perf_counter()
    sum(1 for _ in stream)
    return time.perf_counter() - started


def fit_seconds(dataset, config, train_idx, val_idx) -> float:
    """Seconds for one epoch of model.fit on `config`'s classifier (after a warm-up epoch)."""
    import keras

    from sign_model.model import build_model
    from sign_model.train import _datasets, to_indices

    train, _, _ = _datasets(dataset.images, to_indices(dataset.labels), train_idx, val_idx, config)
    model = build_model(config.architecture, config.dropout)
    model.compile(optimizer=keras.optimizers.AdamW(config.learning_rate), loss="categorical_crossentropy")
    model.fit(train, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sign_model.handedness import _mirrored_pairs
    from sign_model.quiet import quiet_tensorflow
    from sign_model.split import grouped_split
    from sign_model.train import _datasets, set_seeds, to_indices
    from sign_model.train_config import resolve_config

    quiet_tensorflow()
    dataset, source = real_or_synthetic_dataset()
    config = resolve_config("lite", {})  # the default preset's augmentation shares, bn_cnn16_late
    train_idx, val_idx = grouped_split(dataset.images, dataset.labels, config.val_fraction, 0)
    targets = to_indices(dataset.labels)
    cases = {
        "classifier stream, one epoch": lambda: epoch_seconds(
            lambda: _datasets(dataset.images, targets, train_idx, val_idx, config)[0]),
        "hand detector stream, one epoch": lambda: epoch_seconds(
            lambda: _mirrored_pairs(dataset.images[train_idx], config, 7)),
        "lite classifier, one epoch of model.fit": lambda: fit_seconds(dataset, config, train_idx, val_idx),
    }
    best = {(case, way): float("inf") for case in cases for way in WAYS}
    for _ in range(args.repeats):
        for case, run in cases.items():
            for way, context in WAYS.items():
                set_seeds(0)
                with context():
                    best[case, way] = min(best[case, way], run())
    rows = []
    for case in cases:
        before, now = (best[case, way] for way in WAYS)
        rows.append([case, f"{before:.2f}", f"{now:.2f}", f"{before / now:.2f}x"])
    print_table(f"Training-time augmentation, {source}, {len(train_idx):,} training rows, batches of "
                f"{config.batch_size}, best of {args.repeats}, seconds",
                ["what", *WAYS, "speed-up"], rows)


if __name__ == "__main__":
    main()
