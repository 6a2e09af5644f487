"""The synthetic generator: deterministic, Kaggle format, passes validation."""

from __future__ import annotations

import numpy as np

from sign_mlops.contract.labels import KAGGLE_LABELS
from sign_mlops.sign_model.data import KAGGLE_HEADER, load_dataset
from sign_mlops.sign_model.synthetic import generate_images, synthesize_split
from sign_mlops.sign_model.validate import validate_files


def test_same_seed_same_bytes(tmp_path):
    a = synthesize_split(tmp_path / "a", 240, 48, seed=3)
    b = synthesize_split(tmp_path / "b", 240, 48, seed=3)
    c = synthesize_split(tmp_path / "c", 240, 48, seed=4)
    assert a[0].read_bytes() == b[0].read_bytes() and a[1].read_bytes() == b[1].read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()


def test_kaggle_format_exactly(tmp_path):
    train, _ = synthesize_split(tmp_path, 48, 24, seed=0)
    raw = train.read_bytes()
    header, first = raw.split(b"\r\n")[:2]
    assert header.decode().split(",") == list(KAGGLE_HEADER)
    assert raw.count(b"\r\n") == 49 and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(cell.isdigit() for cell in first.decode().split(","))
    ds = load_dataset(train)
    assert set(ds.labels.tolist()) == set(KAGGLE_LABELS)


def test_output_passes_validation(synthetic_files):
    report = validate_files(*synthetic_files)
    assert report.passed, report.summary()
    assert report.stats["test_rows_with_train_near_twin"] < 0.05


def test_classes_are_distinct_on_average():
    images, labels = generate_images(2400, seed=0)
    means = np.stack([images[labels == lab].mean(axis=0) for lab in KAGGLE_LABELS]).reshape(24, -1)
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(24, dtype=bool)].min() > 10  # no two classes share the same mean image
