"""Distillation: learn from a teacher model's soft targets as well as from the labels.

The teacher is an exported ONNX model: usually today's champion, so a retrain pays no teacher
training. Its soft targets (probabilities softened at temperature T) are computed once, on the
clean training images, before training starts; each augmented copy of an image then learns with

    loss = (1 - w) x cross-entropy(label) + w x T^2 x KL(teacher at T || model at T)

(Hinton et al.'s distillation loss; w = distill_weight, T = distill_temperature). The softened
targets are matched by the model's outputs softened the same way, not by its outputs themselves:
simply mixing the soft targets into the labels would teach it to answer ~0.57 on clean images
and flag most rows in the scorer as low-confidence (measured with this loss: mean confidence
0.85-0.88 on the holdout against 0.90-0.93 without a teacher). No teacher pass runs during
training, and validation (model selection, early stopping) scores the labels alone (w = 0 on
validation rows), so the teacher never decides which epoch is kept.

Measured (README, "Distillation"): on the GPU screen `bn_cnn16_late` taught by a `bn_cnn`
gained 0.48 points of clean grouped-holdout accuracy over 15 paired runs, robustness unchanged;
but trained by the product on the CPU (`lite` taught by the default, 5 paired seeds) it gained
nothing clean (-0.07), lost ~0.5 points of robustness and answered less confidently. So no
preset sets a teacher; it is there for a stronger teacher than this data gave us.

The teacher setting (`TrainConfig.teacher`):
- "" (default): no teacher;
- "champion": the registered ONNX champion, when there is one (a first run trains on labels
  alone and says so: MLflow tag `distill_teacher`);
- anything else: a model the scorer accepts (an .onnx file, models:/<name>@<alias>,
  models:/<name>/<version>); refused before training when it cannot be loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sign_mlops.contract.labels import KAGGLE_LABELS, NUM_CLASSES

CHAMPION_TEACHER = "champion"


class TeacherError(ValueError):
    """The configured teacher cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class Teacher:
    """The teacher a run distils from: the file it resolved to, and what to call it."""

    path: str  # the ONNX file whose probabilities are the soft targets
    source: str  # for people and MLflow: "sign-mnist-onnx v3" or the file
    sha256: str


def load_teacher(spec: str, source: str, cache_dir: Path) -> Teacher:
    """Resolve a teacher like the scorer resolves --model; refuse one with other classes."""
    from sign_mlops.serving.model import ModelError, resolve

    try:
        model = resolve(spec, cache_dir)
    except ModelError as exc:
        raise TeacherError(f"teacher {spec!r}: {str(exc).rstrip('.')}; or set teacher: \"\" to train on labels "
                           "alone.") from None
    if list(model.labels) != list(KAGGLE_LABELS):
        raise TeacherError(f"teacher {spec!r}: its label map {model.labels} is not this project's {list(KAGGLE_LABELS)}; "
                           "use a model exported by 'sign-mlops train'.")
    return Teacher(str(model.path), source or str(model.path), model.sha256)


def teacher_probabilities(teacher: Teacher) -> Callable[[np.ndarray], np.ndarray]:
    """`probabilities(images (N, 28, 28) 0-255) -> (N, 24)` from the teacher's ONNX file."""
    from sign_mlops.sign_model.export import onnx_predictor

    return onnx_predictor(Path(teacher.path))


def soft_targets(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """A teacher's probabilities softened at `temperature` (1 = as they are): p^(1/T), renormalised."""
    if probabilities.ndim != 2 or probabilities.shape[1] != NUM_CLASSES:
        raise TeacherError(f"the teacher returned shape {probabilities.shape}; expected (rows, {NUM_CLASSES}).")
    logits = np.log(np.clip(probabilities.astype(np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def packed_targets(one_hot: np.ndarray, soft: np.ndarray | None, weight: float) -> np.ndarray:
    """Keras gets one target array: [label (24) | soft targets (24) | distillation weight (1)].
    Without soft targets (validation rows) the weight is 0 and the loss is the label's alone."""
    if soft is None:
        soft, weight = one_hot, 0.0
    column = np.full((len(one_hot), 1), weight, dtype=np.float32)
    return np.concatenate([one_hot, soft, column], axis=1).astype(np.float32)


def distillation_loss(label_smoothing: float, temperature: float):
    """The Keras loss over `packed_targets` rows and the model's probabilities."""
    import keras
    from keras import ops

    def distillation(y_true, y_pred):
        label, soft, weight = y_true[:, :NUM_CLASSES], y_true[:, NUM_CLASSES:-1], y_true[:, -1]
        cross_entropy = keras.losses.categorical_crossentropy(label, y_pred, label_smoothing=label_smoothing)
        # the model ends in a softmax: log p is its logits up to a constant, so this is softmax(logits / T)
        student = ops.log_softmax(ops.log(ops.clip(y_pred, 1e-7, 1.0)) / temperature, axis=-1)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-12, 1.0)) - student), axis=-1)
        return (1.0 - weight) * cross_entropy + weight * temperature ** 2 * kl

    return distillation


def label_accuracy():
    """Accuracy against the label part of `packed_targets` (Keras' "accuracy" would read all 49 columns)."""
    import keras

    def accuracy(y_true, y_pred):
        return keras.metrics.categorical_accuracy(y_true[:, :NUM_CLASSES], y_pred)

    return keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")
