"""Distillation: learn from a teacher model's soft targets as well as from the labels.

The teacher is an exported ONNX model: usually today's champion, so a retrain pays no teacher
training. Its soft targets are computed once, on the clean training images, before training
starts; each augmented copy of an image then learns

    target = (1 - distill_weight) x the label + distill_weight x the teacher's probabilities at
             distill_temperature

with the ordinary (label-smoothed) cross-entropy. No teacher pass runs during training, the loss
and the saved model are the same as without a teacher, and validation (model selection, early
stopping) still scores against the labels only, so the teacher never decides which epoch is kept.

Measured (README, "Distillation"): on the GPU screen the 5.5 M-MAC `bn_cnn16_late` taught by a
`bn_cnn` gains 0.4-0.8 points of clean grouped-holdout accuracy over 3-9 runs, robustness
unchanged; the CPU Pareto study checks it with the product's own training.

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

from sign_model.labels import KAGGLE_LABELS, NUM_CLASSES

CHAMPION_TEACHER = "champion"


class TeacherError(ValueError):
    """The configured teacher cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class Teacher:
    """The teacher a run distils from: what the user asked for and the file it resolved to."""

    spec: str  # the config value: "champion", a path or a models:/ URI
    path: str  # the ONNX file whose probabilities are the soft targets
    source: str  # for people and MLflow: "sign-mnist-onnx v3" or the file
    sha256: str


def load_teacher(spec: str, source: str, cache_dir: Path) -> Teacher:
    """Resolve a teacher like the scorer resolves --model; refuse one with other classes."""
    from serving.model import ModelError, resolve

    try:
        model = resolve(spec, cache_dir)
    except ModelError as exc:
        raise TeacherError(f"teacher {spec!r}: {exc} (or set teacher: \"\" to train on labels alone)") from None
    if list(model.labels) != list(KAGGLE_LABELS):
        raise TeacherError(f"teacher {spec!r}: its label map {model.labels} is not this project's {list(KAGGLE_LABELS)}; "
                           "use a model exported by 'sign-mlops train'.")
    return Teacher(spec, str(model.path), source or str(model.path), model.sha256)


def teacher_probabilities(teacher: Teacher) -> Callable[[np.ndarray], np.ndarray]:
    """`probabilities(images (N, 28, 28) 0-255) -> (N, 24)` from the teacher's ONNX file."""
    from sign_model.export import onnx_predictor

    return onnx_predictor(Path(teacher.path))


def soft_targets(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """A teacher's probabilities softened at `temperature` (1 = as they are): p^(1/T), renormalised."""
    if probabilities.ndim != 2 or probabilities.shape[1] != NUM_CLASSES:
        raise TeacherError(f"the teacher returned shape {probabilities.shape}; expected (rows, {NUM_CLASSES}).")
    logits = np.log(np.clip(probabilities.astype(np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def mixed_targets(one_hot: np.ndarray, soft: np.ndarray, weight: float) -> np.ndarray:
    """The training target: (1 - weight) x the label + weight x the teacher's soft targets."""
    return ((1.0 - weight) * one_hot + weight * soft).astype(np.float32)
