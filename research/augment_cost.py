"""Benchmark: what the training-time augmentation costs, each shift on the whole batch vs on the
images that drew it, one table.

`sign_mlops.sign_model.augment` gives a share of the images one camera shift each (and some an occluder).
It used to compute every shift for the whole batch and keep it where drawn (`tf.where`); now each
shift runs on the images that drew it (`augment._on_images`). Both ways draw from the same
distributions. For the classifier's training stream (the default preset's shares) and the hand
detector's (`handedness.DETECTOR_SHIFTS`), both ways in the same process, alternating, best of
--repeats: seconds for one epoch of the stream alone (geometric + camera augmentation, batches of
128 over the training part), and one epoch of training (`model.fit`) of `lite`'s classifier, the
default's classifier and `lite`'s hand detector.
Data: the real Kaggle training file from ../shared (synthetic of the same size otherwise).

    .venv/bin/python research/augment_cost.py [--repeats 3]
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

    from sign_mlops.sign_model import augment

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


def fit_seconds(make_model, make_stream, loss: str) -> float:
    """Seconds for one epoch of model.fit on a stream built inside the current way (after a
    warm-up epoch)."""
    import keras

    model, stream = make_model(), make_stream()
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss)
    model.fit(stream, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(stream, epochs=1, verbose=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sign_mlops.sign_model.handedness import _mirrored_pairs, build_hand_detector
    from sign_mlops.sign_model.model import build_model
    from sign_mlops.sign_model.quiet import quiet_tensorflow
    from sign_mlops.sign_model.split import grouped_split
    from sign_mlops.sign_model.train import _datasets, set_seeds, to_indices
    from sign_mlops.sign_model.train_config import resolve_config

    quiet_tensorflow()
    dataset, source = real_or_synthetic_dataset()
    default, lite = resolve_config("default", {}), resolve_config("lite", {})  # the same augmentation shares
    train_idx, val_idx = grouped_split(dataset.images, dataset.labels, default.val_fraction, 0)
    targets = to_indices(dataset.labels)

    def classifier_stream(config):
        return lambda: _datasets(dataset.images, targets, train_idx, val_idx, config)[0]

    def detector_stream():
        return _mirrored_pairs(dataset.images[train_idx], lite, 7)

    def classifier(config):
        return lambda: build_model(config.architecture, config.dropout)

    cases = {
        "classifier stream, one epoch": lambda: epoch_seconds(classifier_stream(default)),
        "hand detector stream, one epoch": lambda: epoch_seconds(detector_stream),
        "`lite` classifier (bn_cnn16_late), one epoch of model.fit": lambda: fit_seconds(
            classifier(lite), classifier_stream(lite), "categorical_crossentropy"),
        "default classifier (bn_cnn), one epoch of model.fit": lambda: fit_seconds(
            classifier(default), classifier_stream(default), "categorical_crossentropy"),
        "`lite` hand detector (width 4), one epoch of model.fit": lambda: fit_seconds(
            lambda: build_hand_detector(lite.hand_detector), detector_stream, "binary_crossentropy"),
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
                f"{default.batch_size}, best of {args.repeats}, seconds",
                ["what", *WAYS, "speed-up"], rows)


if __name__ == "__main__":
    main()
