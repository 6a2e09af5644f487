"""The robustness suite: deterministic, graded shifts, and a report that tells fragile from robust."""

from __future__ import annotations

import numpy as np
import pytest

from sign_mlops.sign_model import robustness
from sign_mlops.sign_model.robustness import KINDS, SEVERITIES, perturb, robustness_report
from sign_mlops.sign_model.train import to_indices


@pytest.fixture(scope="module")
def images(synthetic_datasets):
    return synthetic_datasets[1].images[:200]


@pytest.mark.parametrize("kind", KINDS)
def test_each_shift_is_seeded_whole_pixels_and_grows_with_severity(images, kind):
    changes = []
    for severity in SEVERITIES:
        shifted = perturb(images, kind, severity, seed=3)
        assert shifted.dtype == np.uint8 and shifted.shape == images.shape
        assert np.array_equal(shifted, perturb(images, kind, severity, seed=3))  # same seed, same images
        changes.append(np.abs(shifted.astype(float) - images).mean())
    assert 0 < changes[0] < changes[1] < changes[2], f"{kind}: {changes}"


def test_mirror_is_a_left_handed_signer(images):
    assert np.array_equal(perturb(images, "mirror", "moderate"), images[:, :, ::-1])


def test_unknown_shift_or_severity_names_the_choices(images):
    with pytest.raises(ValueError, match="choose one of"):
        perturb(images, "rain", "mild")
    with pytest.raises(ValueError, match="mild"):
        perturb(images, "blur", "extreme")


def _memorising_model(clean: np.ndarray, labels: np.ndarray):
    """Right on every clean image it has seen, lost (class 0) on anything else: the fragile extreme."""
    known = {image.tobytes(): label for image, label in zip(clean, labels)}

    def predict(batch: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(batch), 24))
        probs[np.arange(len(batch)), [known.get(image.tobytes(), 0) for image in batch]] = 1.0
        return probs

    return predict


def test_report_separates_clean_accuracy_from_robustness(synthetic_datasets):
    test = synthetic_datasets[1]
    true_index = to_indices(test.labels)
    report = robustness_report(_memorising_model(test.images, true_index), test.images, true_index, max_rows=300)
    assert report.rows == 300 and report.clean_accuracy == 1.0
    assert report.mean < 0.5 and report.worst < 0.2 and report.worst_kind in KINDS
    metrics = report.metrics()
    assert len(metrics) == len(KINDS) * len(SEVERITIES) + 4
    assert metrics["robust/mean"] == report.mean and metrics["robust/worst"] == report.worst
    assert metrics["robust/mirror/moderate"] == report.accuracy["mirror"]["moderate"]
    assert metrics["robust/errors_flagged"] == 0.0  # sure of every wrong answer: the low-confidence flag catches none


def test_report_says_how_many_errors_under_shift_the_low_confidence_flag_catches(synthetic_datasets):
    """A model that hesitates on what it has not seen: every error under shift is under 0.5."""
    test = synthetic_datasets[1]
    true_index = to_indices(test.labels)
    sure = _memorising_model(test.images, true_index)

    def hesitant(batch: np.ndarray) -> np.ndarray:
        probs = sure(batch)
        unsure = probs.max(axis=1) == probs[:, 0]  # the memorising model's "lost" answer
        probs[unsure] = np.where(np.arange(24) == 0, 0.3, 0.7 / 23)
        return probs

    report = robustness_report(hesitant, test.images, true_index, max_rows=300)
    assert report.errors_flagged == 1.0 and report.to_dict()["errors_flagged"] == 1.0
    assert report.metrics()["robust/errors_flagged"] == 1.0


def test_report_is_deterministic_and_draws_a_heatmap(synthetic_datasets, tmp_path):
    test = synthetic_datasets[1]
    true_index = to_indices(test.labels)

    def brightness_model(batch):  # a toy that depends on the pixels
        probs = np.zeros((len(batch), 24))
        probs[np.arange(len(batch)), (batch.reshape(len(batch), -1).mean(1) // 11).astype(int) % 24] = 1
        return probs

    first = robustness_report(brightness_model, test.images, true_index, max_rows=100, seed=1)
    again = robustness_report(brightness_model, test.images, true_index, max_rows=100, seed=1)
    assert first == again
    figure = robustness.plot_heatmap(first)
    assert len(figure.axes[0].texts) == len(KINDS) * len(SEVERITIES)
    table = robustness.write_table(first, tmp_path / "robustness.csv").read_text().splitlines()
    assert table[0] == "kind,mild,moderate,strong" and len(table) == 1 + len(KINDS)
