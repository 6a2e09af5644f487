"""The drift check: quiet on clean batches, loud on real shifts, aware of the batch size, and
still reading the version-1 profiles of older models."""

from __future__ import annotations

import numpy as np
import pytest

from sign_mlops.contract.drift import DriftAccumulator, build_profile, chi_square_p, image_features
from sign_mlops.contract.labels import INDEX_OF_LABEL
from tests.conftest import REAL_TRAIN


@pytest.fixture(scope="module")
def reference(synthetic_datasets):
    train, test = synthetic_datasets
    return build_profile(train.images, train.labels), test


def _check(profile: dict, images: np.ndarray, labels: np.ndarray) -> dict:
    acc = DriftAccumulator(profile)
    acc.update(images.reshape(len(images), -1).astype(np.float32), np.array([INDEX_OF_LABEL[int(x)] for x in labels]))
    return acc.report()


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


def test_version_1_profiles_of_older_models_still_work(reference):
    profile, test = reference
    old = {k: profile[k] for k in ("rows", "mean_intensity_edges", "mean_intensity_shares", "class_shares")}
    report = _check(old, test.images, test.labels)
    assert report["version"] == 1 and "mean_intensity" in report["tests"]
    assert _check(old, test.images.astype(np.float32) * 0.5, test.labels)["drift"]


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


def test_the_documented_automation_is_a_valid_prefect_automation():
    import uuid
    from pathlib import Path

    import yaml
    from prefect.events.schemas.automations import AutomationCore

    text = (Path(__file__).resolve().parents[2] / "docker" / "retrain-on-drift.yaml").read_text()
    automation = AutomationCore.model_validate(yaml.safe_load(text.replace("DEPLOYMENT_ID", str(uuid.uuid4()))))
    assert automation.trigger.expect == {"sign-mlops.drift.detected"}
