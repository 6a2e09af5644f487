"""The grouped validation split keeps near-copies on one side."""

from __future__ import annotations

import numpy as np

from sign_mlops.sign_model.split import grouped_split, near_copy_groups, near_twin_rate
from sign_mlops.sign_model.synthetic import generate_images


def _with_near_copies(n_sources: int = 240, copies: int = 5, seed: int = 0):
    """Source images plus small brightness/noise variants of each, as the Kaggle set was built."""
    rng = np.random.default_rng(seed)
    images, labels = generate_images(n_sources, seed)
    variants = []
    for k in range(copies):
        noisy = images.astype(float) * rng.uniform(0.9, 1.1) + rng.normal(0, 3, images.shape) + k
        variants.append(np.clip(noisy, 0, 255).astype(np.uint8))
    source_id = np.tile(np.arange(n_sources), copies + 1)
    return np.concatenate([images, *variants]), np.tile(labels, copies + 1), source_id


def test_planted_near_copies_never_straddle_the_split():
    images, labels, source = _with_near_copies()
    train_idx, val_idx = grouped_split(images, labels, fraction=0.2, seed=1)
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    assert len(train_idx) + len(val_idx) == len(labels)
    assert not set(source[train_idx]) & set(source[val_idx])
    assert 0.1 < len(val_idx) / len(labels) < 0.3
    assert set(labels[val_idx]) == set(labels)  # every class is validated


def test_near_copies_share_a_group():
    images, labels, source = _with_near_copies(60, 3)
    groups = near_copy_groups(images, labels)
    for s in range(60):
        assert len(set(groups[source == s])) == 1


def test_random_split_would_leak_but_grouped_does_not():
    images, labels, _ = _with_near_copies()
    rng = np.random.default_rng(0)
    random_val = rng.random(len(labels)) < 0.2
    leak = near_twin_rate(images[random_val], labels[random_val], images[~random_val], labels[~random_val], 0.99)
    train_idx, val_idx = grouped_split(images, labels, fraction=0.2, seed=0)
    grouped = near_twin_rate(images[val_idx], labels[val_idx], images[train_idx], labels[train_idx], 0.99)
    assert leak > 0.9 and grouped < 0.05
