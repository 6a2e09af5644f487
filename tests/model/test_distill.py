"""Distillation: the teacher's soft targets reach the training targets (and only those), and a
teacher that cannot be used is refused with a message that says what to do."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from sign_model.distill import TeacherError, load_teacher, mixed_targets, soft_targets, teacher_probabilities
from sign_model.labels import NUM_CLASSES
from sign_model.train import PRESETS, TrainConfig, to_indices, train_model
from sign_model.train_config import ConfigError, resolve_config


def test_soft_targets_soften_without_changing_the_teachers_answer():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(NUM_CLASSES, 0.3), size=50).astype(np.float32)
    np.testing.assert_allclose(soft_targets(probs, 1.0), probs, atol=1e-5)
    soft = soft_targets(probs, 4.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert (soft.argmax(axis=1) == probs.argmax(axis=1)).all()
    assert (soft.max(axis=1) < probs.max(axis=1)).all()  # softer: the top class gives up probability
    with pytest.raises(TeacherError, match=r"expected \(rows, 24\)"):
        soft_targets(probs[:, :10], 4.0)


def test_mixed_targets_keep_the_label_on_top_at_half_weight():
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[[3, 7]]
    wrong_teacher = np.eye(NUM_CLASSES, dtype=np.float32)[[0, 0]]
    mixed = mixed_targets(one_hot, wrong_teacher, 0.5)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)
    np.testing.assert_allclose(mixed_targets(one_hot, wrong_teacher, 0.0), one_hot)
    assert mixed[0, 3] == 0.5 and mixed[0, 0] == 0.5


def test_a_teacher_teaches_the_training_rows_and_validation_still_scores_labels(synthetic_datasets):
    """A teacher that always says 'class 0' at weight 0.9 must pull the model there; it is asked
    about the training rows only, and validation accuracy is still measured against the labels."""
    train = synthetic_datasets[0]
    asked: list[int] = []

    def lying_teacher(images: np.ndarray) -> np.ndarray:
        asked.append(len(images))
        return np.tile(np.eye(NUM_CLASSES, dtype=np.float32)[0], (len(images), 1))

    config = TrainConfig.from_dict({**PRESETS["smoke"].to_dict(), "epochs": 3, "distill_weight": 0.9,
                                    "distill_temperature": 1.0, "teacher": "test"})
    result = train_model(train, config, teacher=lying_teacher)
    assert asked == [result.train_rows]
    predicted = result.model.predict(train.images[..., None].astype(np.float32), verbose=0).argmax(axis=1)
    assert (predicted == 0).mean() > 0.9
    share_of_class_0 = (to_indices(train.labels) == 0).mean()
    assert result.val_accuracy < share_of_class_0 + 0.1  # judged by the labels, not by the teacher


def test_an_exported_model_can_teach(onnx_model_path, synthetic_datasets, tmp_path):
    teacher = load_teacher(str(onnx_model_path), "", tmp_path)
    assert teacher.source == str(onnx_model_path) and len(teacher.sha256) == 64
    probs = teacher_probabilities(teacher)(synthetic_datasets[0].images[:40])
    assert probs.shape == (40, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_unusable_teachers_are_refused_with_what_to_do(onnx_model_path, tmp_path):
    with pytest.raises(TeacherError, match=r"teacher '.*nope.onnx'.*not found.*teacher: \"\""):
        load_teacher(str(tmp_path / "nope.onnx"), "", tmp_path)
    other = onnx.load(str(onnx_model_path))
    for prop in other.metadata_props:  # same 24 outputs, the first two labels swapped
        if prop.key == "label_map":
            records = json.loads(prop.value)
            records[0]["label"], records[1]["label"] = records[1]["label"], records[0]["label"]
            prop.value = json.dumps(records)
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(TeacherError, match="label map"):
        load_teacher(str(tmp_path / "other.onnx"), "", tmp_path)


@pytest.mark.parametrize("overrides, message", [
    ({"distill_weight": 1.0}, "distill_weight"), ({"distill_temperature": 0.0}, "distill_temperature"),
    ({"teacher": " champion"}, "teacher"),
])
def test_out_of_range_distillation_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("default", overrides)
