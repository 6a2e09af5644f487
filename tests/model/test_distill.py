"""Distillation: the teacher's soft targets reach the training targets (and only those), and a
teacher that cannot be used is refused with a message that says what to do."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from sign_model.distill import (TeacherError, distillation_loss, load_teacher, packed_targets, soft_targets,
                                teacher_probabilities)
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


def test_targets_carry_the_teacher_on_training_rows_only():
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[[3, 7]]
    soft = np.full((2, NUM_CLASSES), 1 / NUM_CLASSES, dtype=np.float32)
    train = packed_targets(one_hot, soft, 0.5)
    assert train.shape == (2, 2 * NUM_CLASSES + 1) and (train[:, -1] == 0.5).all()
    np.testing.assert_array_equal(train[:, :NUM_CLASSES], one_hot)
    np.testing.assert_array_equal(train[:, NUM_CLASSES:-1], soft)
    assert (packed_targets(one_hot, None, 0.5)[:, -1] == 0).all()  # validation: the labels alone


def test_the_loss_is_the_labels_at_weight_0_and_adds_only_disagreement_with_the_teacher():
    import keras

    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(NUM_CLASSES), size=8).astype(np.float32)
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, 8)]
    loss = distillation_loss(0.05, 4.0)
    plain = keras.losses.categorical_crossentropy(one_hot, probs, label_smoothing=0.05)
    np.testing.assert_allclose(loss(packed_targets(one_hot, None, 0.0), probs), plain, rtol=1e-5)
    agreeing = soft_targets(probs, 4.0)  # a teacher that already says what the model says
    np.testing.assert_allclose(loss(packed_targets(one_hot, agreeing, 0.5), probs), 0.5 * np.asarray(plain), rtol=1e-4)
    disagreeing = soft_targets(probs[::-1].copy(), 4.0)
    assert (np.asarray(loss(packed_targets(one_hot, disagreeing, 0.5), probs)) > 0.5 * np.asarray(plain)).all()


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


def test_a_distilled_model_saves_and_loads_like_any_other(synthetic_datasets, onnx_model_path, tmp_path):
    import keras

    train = synthetic_datasets[0]
    config = TrainConfig.from_dict({**PRESETS["smoke"].to_dict(), "epochs": 1, "teacher": str(onnx_model_path)})
    result = train_model(train, config, teacher=teacher_probabilities(load_teacher(str(onnx_model_path), "", tmp_path)))
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    result.model.save(tmp_path / "m.keras")
    images = train.images[:16, ..., None].astype(np.float32)
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict(images, verbose=0),
                               result.model.predict(images, verbose=0), atol=1e-6)


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
