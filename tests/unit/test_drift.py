"""The drift check: quiet on clean batches (of every letter, or of one), loud on real shifts,
aware of the batch size, the class mix reported apart, and still reading the profiles of older
models."""

from __future__ import annotations

import numpy as np
import pytest

from sign_mlops.contract.drift import DriftAccumulator, build_profile, chi_square_p, image_features
from sign_mlops.contract.labels import INDEX_OF_LABEL, letter_of
from tests.conftest import REAL_TRAIN


@pytest.fixture(scope="module")
def reference(synthetic_datasets):
    train, test = synthetic_datasets
    return build_profile(train.images, train.labels), test


@pytest.fixture(scope="module")
def unseen():
    """Unshifted synthetic rows the profile has not seen: ~167 of each letter."""
    from sign_mlops.sign_model.synthetic import generate_images

    return generate_images(4000, 11)


def _accumulate(profile: dict, images: np.ndarray, labels: np.ndarray) -> DriftAccumulator:
    acc = DriftAccumulator(profile)
    acc.update(images.reshape(len(images), -1).astype(np.float32), np.array([INDEX_OF_LABEL[int(x)] for x in labels]))
    return acc


def _check(profile: dict, images: np.ndarray, labels: np.ndarray) -> dict:
    return _accumulate(profile, images, labels).report()


def _version_2(profile: dict) -> dict:
    """The profile of a model exported before the per-letter deciles (version 2)."""
    features = {name: {k: v for k, v in spec.items() if k != "by_class"} for name, spec in profile["features"].items()}
    return {**profile, "version": 2, "features": features}


@pytest.mark.parametrize("label", [0, 5, 11, 20])
def test_a_single_letter_batch_is_not_drift_but_its_class_mix_differs(reference, unseen, label):
    """Issue: ordinary batches raised the drift event (and, three in an hour, a retraining)
    because their letters did not come in the training labels' shares. Before the fix a batch of
    one letter drifted on predicted_class and, against all training images, on image features."""
    profile, _ = reference
    images, labels = unseen
    acc = _accumulate(profile, images[labels == label], labels[labels == label])
    report = acc.report()
    assert report["verdict"] == "no drift" and report["drift"] is False and report["drifted"] == []
    assert "predicted_class" not in report["tests"] and report["effective_letters"] == 1.0
    mix = acc.class_mix()
    assert mix["verdict"] == "differs from training" and mix["differs"] is True
    assert mix["shares"][letter_of(label)] == 1.0 and mix["psi"] > mix["psi_floor"]


@pytest.mark.parametrize("label", [0, 11])
def test_a_brighter_single_letter_batch_is_still_drift(reference, unseen, label):
    profile, _ = reference
    images, labels = unseen
    bright = np.clip(images[labels == label].astype(np.float32) + 60, 0, 255)
    report = _check(profile, bright, labels[labels == label])
    assert report["drift"] is True and "mean_intensity" in report["drifted"]


def test_an_even_batch_has_the_training_class_mix(reference):
    profile, test = reference
    mix = _accumulate(profile, test.images, test.labels).class_mix()
    assert mix["verdict"] == "as in training" and mix["differs"] is False
    assert sum(mix["shares"].values()) == pytest.approx(1.0, abs=1e-3)


def test_a_small_batch_class_mix_merges_letters_rather_than_giving_up(reference, unseen):
    profile, _ = reference
    images, labels = unseen
    rows = np.flatnonzero(labels == 3)[:40]  # 40 rows: under 5 expected per letter
    assert _accumulate(profile, images[rows], labels[rows]).class_mix()["differs"] is True
    assert _accumulate(profile, images[:5], labels[:5]).class_mix()["verdict"] == "too few rows to tell"


@pytest.mark.parametrize("version", [1, 2])
def test_older_profiles_leave_the_class_mix_out_of_the_verdict(reference, unseen, version):
    profile, _ = reference
    old = _version_2(profile) if version == 2 else {
        k: profile[k] for k in ("rows", "mean_intensity_edges", "mean_intensity_shares", "class_shares")}
    images, labels = unseen
    acc = _accumulate(old, images[labels == 7], labels[labels == 7])
    assert "predicted_class" not in acc.report()["tests"] and "predicted_class" not in acc.report()["drifted"]
    assert acc.class_mix()["differs"] is True


def test_clean_batch_is_not_flagged(reference):
    profile, test = reference
    report = _check(profile, test.images, test.labels)
    assert report["verdict"] == "no drift" and report["drifted"] == []


@pytest.mark.parametrize("shift", ["inverted", "darker", "noise", "contrast"])
def test_real_shifts_are_flagged(reference, shift):
    profile, test = reference
    x = test.images.astype(np.float32)
    shifted = {"inverted": 255 - x, "darker": x * 0.6, "contrast": (x - x.mean()) * 0.4 + x.mean(),
               "noise": np.clip(x + np.random.default_rng(0).normal(0, 25, x.shape), 0, 255)}[shift]
    report = _check(profile, shifted, test.labels)
    assert report["drift"] and report["verdict"] == "drift"


def test_a_tiny_batch_says_it_cannot_tell(reference):
    profile, test = reference
    report = _check(profile, test.images[:20], test.labels[:20])
    assert report["verdict"] == "too few rows to tell" and not report["drift"]


def test_counts_merge_exactly(reference):
    profile, test = reference
    whole = DriftAccumulator(profile)
    parts = [DriftAccumulator(profile), DriftAccumulator(profile)]
    pixels = test.images.reshape(len(test), -1).astype(np.float32)
    index = np.array([INDEX_OF_LABEL[int(x)] for x in test.labels])
    whole.update(pixels, index)
    parts[0].update(pixels[:200], index[:200])
    parts[1].update(pixels[200:], index[200:])
    parts[0].merge(parts[1])
    assert parts[0].state() == whole.state() and parts[0].report() == whole.report()
    assert parts[0].class_mix() == whole.class_mix()


def test_version_1_profiles_of_older_models_still_work(reference):
    profile, test = reference
    old = {k: profile[k] for k in ("rows", "mean_intensity_edges", "mean_intensity_shares", "class_shares")}
    report = _check(old, test.images, test.labels)
    assert report["version"] == 1 and "mean_intensity" in report["tests"]
    assert _check(old, test.images.astype(np.float32) * 0.5, test.labels)["drift"]
    v2 = _version_2(profile)
    assert _check(v2, test.images, test.labels)["verdict"] == "no drift"
    assert _check(v2, test.images.astype(np.float32) * 0.5, test.labels)["drift"]


def test_chi_square_tail_matches_known_values():
    shares = np.full(10, 0.1)
    assert chi_square_p(np.full(10, 100.0), shares) > 0.99  # exactly as expected
    a = (21.666 * 100 / 2) ** 0.5  # statistic 2 a^2 / 100 = 21.666, the 1 % point of chi2 with 9 df
    counts = np.array([100 + a, 100 - a] + [100.0] * 8)
    assert chi_square_p(counts, shares) == pytest.approx(0.01, rel=0.1)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_TRAIN.exists(), reason="needs ../shared/data/sign-mnist-real")
def test_a_mirrored_batch_of_real_hands_is_flagged():
    from sign_mlops.sign_model.data import load_dataset

    data = load_dataset(REAL_TRAIN)
    rng = np.random.default_rng(1)
    ref = rng.choice(len(data), 15000, replace=False)
    rest = np.setdiff1d(np.arange(len(data)), ref)[:1000]
    profile = build_profile(data.images[ref], data.labels[ref])
    assert not _check(profile, data.images[rest], data.labels[rest])["drift"]
    mirrored = _check(profile, data.images[rest][:, :, ::-1], data.labels[rest])
    assert mirrored["drift"] and "edge_asymmetry" in mirrored["drifted"]
    assert image_features(data.images[:5]).shape == (5, 4)
