"""Model, training config and training behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sign_mlops.sign_model.evaluate import evaluate_model, predict_probabilities
from sign_mlops.sign_model.model import ARCHITECTURES, build_model
from sign_mlops.sign_model.train import PRESETS, TrainConfig, save_training_outputs


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_rescales_inside_and_has_no_augmentation(name):
    import keras

    model = build_model(name, 0.1)
    rescaling = [layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)]
    assert rescaling and all(layer.scale == pytest.approx(1 / 255) for layer in rescaling)
    assert not [layer for layer in model.layers if type(layer).__name__.startswith("Random")]
    assert model.output_shape == (None, 24)


def test_config_checks_itself():
    with pytest.raises(ValueError, match="architecture"):
        TrainConfig(architecture="resnet9000")
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=0.9)
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epochz'\]"):
        TrainConfig.from_dict({"epochz": 3})
    assert TrainConfig.from_dict(PRESETS["seed"].to_dict()) == PRESETS["seed"]


def test_training_learns_far_above_chance(tiny_training, synthetic_datasets):
    evaluation = evaluate_model(tiny_training.model, synthetic_datasets[1])
    assert evaluation.overall["accuracy"] > 0.6  # chance is 1/24
    assert tiny_training.val_rows > 0 and tiny_training.train_rows + tiny_training.val_rows == len(synthetic_datasets[0])
    assert set(tiny_training.history) >= {"accuracy", "loss", "val_accuracy", "val_loss"}


def test_model_takes_raw_pixels_not_scaled_ones(tiny_training, synthetic_datasets):
    """The seed's bug: feeding pixels/255 to a model that rescales itself must look wrong."""
    test = synthetic_datasets[1]
    raw = evaluate_model(tiny_training.model, test).overall["accuracy"]
    scaled = (predict_probabilities(tiny_training.model, test.images / 255.0).argmax(1)
              == evaluate_model(tiny_training.model, test).true_index).mean()
    assert raw > scaled + 0.3


def test_one_pixel_shift_keeps_most_predictions(tiny_training, synthetic_datasets):
    images = synthetic_datasets[1].images
    base = predict_probabilities(tiny_training.model, images).argmax(1)
    shifted = predict_probabilities(tiny_training.model, np.roll(images, 1, axis=2)).argmax(1)
    assert (base == shifted).mean() > 0.85


def test_outputs_saved_with_the_whole_config(tiny_training, tmp_path):
    config = TrainConfig.from_dict({**PRESETS["smoke"].to_dict(), "epochs": 6})
    paths = save_training_outputs(tiny_training, config, tmp_path)
    assert json.loads(paths["config"].read_text()) == config.to_dict()
    assert paths["model"].stat().st_size > 0
    assert json.loads(paths["history"].read_text())["best_epoch"] == tiny_training.best_epoch


def test_the_lite_architecture_stays_within_its_multiply_add_budget(tmp_path):
    """`lite` is there for its cost: counted from the exported ONNX graph."""
    from sign_mlops.sign_model import export

    onnx_path = export.keras_to_onnx(build_model(PRESETS["lite"].architecture, 0.1), tmp_path / "m.onnx", {})
    assert 4_000_000 < export.onnx_macs(onnx_path) <= 6_000_000
