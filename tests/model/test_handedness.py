"""Left-handed signers: the hand detector mirrors left hands before the classifier, or stays out."""

from __future__ import annotations

import numpy as np
import pytest

from sign_mlops.sign_model.data import SignDataset
from sign_mlops.sign_model.train_config import ConfigError, resolve_config


def _with_wrist(images: np.ndarray) -> np.ndarray:
    """Synthetic glyphs are nearly as often one way as the other; a bright wrist at the lower
    right makes every image unmistakably a "right hand", as the Kaggle photos are."""
    out = images.copy()
    out[:, 21:, 19:] = 250
    return out


def _half_mean_detector():
    """A fixed, hand-set detector: P(left) is high when the left half is brighter than the right."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(28, 28, 1))
    score = layers.Dense(1, activation="sigmoid", name="halves")(layers.Flatten()(inputs))
    detector = keras.Model(inputs, score)
    weights = np.zeros((28, 28), dtype=np.float32)
    weights[:, :14], weights[:, 14:] = 0.01, -0.01
    detector.get_layer("halves").set_weights([weights.reshape(-1, 1), np.zeros(1, dtype=np.float32)])
    return detector


def test_a_mirrored_image_gets_the_answer_of_the_image(tiny_training, synthetic_datasets, tmp_path):
    import keras

    from sign_mlops.sign_model import export
    from sign_mlops.sign_model.handedness import with_hand_detector

    images = _with_wrist(synthetic_datasets[1].images[:200]).astype(np.float32)
    model = with_hand_detector(_half_mean_detector(), tiny_training.model)
    as_given = model.predict(images[..., None], verbose=0)
    mirrored = model.predict(images[:, :, ::-1, None].copy(), verbose=0)
    np.testing.assert_allclose(mirrored, as_given, atol=1e-5)
    alone = tiny_training.model.predict(images[:, :, ::-1, None].copy(), verbose=0).argmax(1)
    assert (alone != as_given.argmax(1)).mean() > 0.3  # the classifier alone does not know left hands

    saved = tmp_path / "hands.keras"
    model.save(saved)
    np.testing.assert_allclose(keras.saving.load_model(saved).predict(images[..., None], verbose=0), as_given, atol=1e-6)
    onnx_path = export.keras_to_onnx(model, tmp_path / "hands.onnx", {})
    np.testing.assert_allclose(export.onnx_predictor(onnx_path)(images[:, :, ::-1]), as_given, atol=1e-4)


def test_the_detector_gives_an_image_and_its_mirror_opposite_answers(synthetic_datasets):
    """P(left | mirror image) = 1 - P(left | image) for any weights: the detector cannot lean to one hand."""
    from sign_mlops.sign_model.handedness import build_hand_detector

    images = synthetic_datasets[1].images[:64, :, :, None].astype(np.float32)
    detector = build_hand_detector(4)
    as_given = detector.predict(images, verbose=0)
    np.testing.assert_allclose(detector.predict(images[:, :, ::-1].copy(), verbose=0), 1 - as_given, atol=1e-5)


@pytest.fixture(scope="module")
def handed_training(synthetic_datasets):
    from sign_mlops.sign_model.train import train_model

    train = synthetic_datasets[0]
    dataset = SignDataset(_with_wrist(train.images), train.labels, "wrist", train.digest)
    config = resolve_config("smoke", {"epochs": 2, "hand_detector": 4, "hand_detector_epochs": 12})
    return train_model(dataset, config)


@pytest.mark.slow
def test_training_puts_a_detector_that_passes_its_check_in_front(handed_training, synthetic_datasets):
    hand = handed_training.hand
    assert hand.used and min(hand.right_accuracy, hand.left_accuracy) >= 0.99, hand.reason
    images = _with_wrist(synthetic_datasets[1].images[:300]).astype(np.float32)
    model = handed_training.model
    as_given = model.predict(images[..., None], verbose=0).argmax(1)
    mirrored = model.predict(images[:, :, ::-1, None].copy(), verbose=0).argmax(1)
    assert (as_given == mirrored).mean() > 0.97
    assert set(hand.metrics()) == {"hand/val_right_accuracy", "hand/val_left_accuracy", "hand/used", "hand/seconds"}


@pytest.mark.slow
def test_a_detector_that_cannot_tell_hands_apart_is_left_out(synthetic_datasets):
    """Images that are their own mirror image: no detector can pass, and the model must not change."""
    from sign_mlops.sign_model.train import train_model

    train = synthetic_datasets[0]
    symmetric = ((train.images.astype(np.float32) + train.images[:, :, ::-1]) / 2).round().astype(np.uint8)
    config = resolve_config("smoke", {"epochs": 1, "hand_detector": 4, "hand_detector_epochs": 1})
    result = train_model(SignDataset(symmetric, train.labels, "symmetric", train.digest), config)
    assert not result.hand.used and "NOT used" in result.hand.reason
    assert result.model.name == "tiny_cnn"


@pytest.mark.parametrize("overrides", [{"hand_detector": -1}, {"hand_detector": 65}, {"hand_detector_epochs": 0}])
def test_out_of_range_detector_settings_are_refused(overrides):
    with pytest.raises(ConfigError, match="hand_detector"):
        resolve_config("default", overrides)


def test_the_int8_model_still_mirrors_left_hands(tiny_training, synthetic_datasets, tmp_path):
    """INT8 is calibrated on training rows, which are all right hands: quantised with them, the
    switch never saw "left" and stayed shut (the default's INT8 read 18 % of left hands). The
    switch and the detector stay in float, so a mirrored image still gets the image's answer."""
    from sign_mlops.sign_model import export
    from sign_mlops.sign_model.handedness import with_hand_detector

    images = _with_wrist(synthetic_datasets[1].images[:200]).astype(np.float32)
    model = with_hand_detector(_half_mean_detector(), tiny_training.model)
    fp32 = export.keras_to_onnx(model, tmp_path / "hands.onnx", {})
    calibration = _with_wrist(synthetic_datasets[0].images[:256])  # right hands only, like the Kaggle rows
    int8 = export.onnx_predictor(export.quantize_int8(fp32, tmp_path / "hands.int8.onnx", calibration, {}))
    as_given, mirrored = int8(images), int8(images[:, :, ::-1].copy())
    np.testing.assert_allclose(mirrored, as_given, atol=1e-6)
    assert (as_given.argmax(1) == export.onnx_predictor(fp32)(images).argmax(1)).mean() > 0.9
