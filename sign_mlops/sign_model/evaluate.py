"""Evaluation on the test split with the model's own preprocessing (raw 0-255 pixels in).

Returns {"overall": ..., "per_class": ...} and draws the seed notebook's analysis pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sign_mlops.contract.labels import KAGGLE_LABELS, LETTERS, NUM_CLASSES
from sign_mlops.contract.predictions import LOW_CONFIDENCE, errors_flagged, prediction_columns, prediction_values
from sign_mlops.sign_model.data import SignDataset
from sign_mlops.sign_model.explore import plt, save_figure
from sign_mlops.sign_model.train import to_indices


@dataclass
class Evaluation:
    overall: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion: np.ndarray  # (24, 24) rows = true index, cols = predicted index
    probabilities: np.ndarray  # (N, 24)
    true_index: np.ndarray
    pred_index: np.ndarray
    confidence: dict[str, float]  # confidence_summary, also in `overall`

    def metrics(self) -> dict[str, float]:
        """MLflow metric names: test/accuracy, test/macro_f1, ..., test/f1/A, ..."""
        flat = {f"test/{k}": v for k, v in self.overall.items()}
        flat.update({f"test/f1/{letter}": m["f1"] for letter, m in self.per_class.items()})
        return flat


def predict_probabilities(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities for raw uint8/float images (N, 28, 28)."""
    x = images[..., None].astype(np.float32)
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def confusion_matrix(true_index: np.ndarray, pred_index: np.ndarray) -> np.ndarray:
    """(24, 24) counts, rows = true class, columns = predicted (scikit-learn's)."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(true_index, pred_index, labels=np.arange(NUM_CLASSES))


def summarize(true_index: np.ndarray, pred_index: np.ndarray) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Overall accuracy and macro-F1 (over the classes present), per-class precision/recall/F1
    (scikit-learn's; a class never predicted has precision 0)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    classes = np.arange(NUM_CLASSES)
    precision, recall, f1, support = precision_recall_fscore_support(true_index, pred_index, labels=classes,
                                                                     zero_division=0)
    present = np.unique(true_index)
    _, _, macro_f1, _ = precision_recall_fscore_support(true_index, pred_index, labels=present, average="macro",
                                                        zero_division=0)
    correct = np.bincount(true_index[true_index == pred_index], minlength=NUM_CLASSES)
    total = len(true_index)
    overall = {"accuracy": float(accuracy_score(true_index, pred_index)) if total else 0.0,
               "macro_f1": float(macro_f1), "errors": float(total - correct.sum()), "rows": float(total)}
    per_class = {letter: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i]), "correct": int(correct[i]), "incorrect": int(support[i] - correct[i])}
                 for i, letter in enumerate(LETTERS)}
    return overall, per_class


CALIBRATION_BINS = 15


def calibration_error(probabilities: np.ndarray, true_index: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error of the top probability: over equal-width confidence bins, the
    row-weighted gap between the mean confidence and the accuracy (0 = the confidence is the
    chance of being right; label smoothing makes our models answer lower than that)."""
    confidence, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == true_index
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum((which == b).mean() * abs(confidence[which == b].mean() - right[which == b].mean())
                     for b in np.unique(which)))


def confidence_summary(probabilities: np.ndarray, true_index: np.ndarray) -> dict[str, float]:
    """What the scorer's confidence column and low-confidence count would say on this split:
    mean_confidence, low_confidence (share of rows under the scorer's threshold), errors_flagged
    (share of the wrong rows that are under it; absent when nothing is wrong) and calibration_error."""
    if not len(true_index):
        return {}
    confidence = probabilities.max(axis=1)
    summary = {"mean_confidence": float(confidence.mean()), "low_confidence": float((confidence < LOW_CONFIDENCE).mean()),
               "calibration_error": calibration_error(probabilities, true_index)}
    flagged = errors_flagged(probabilities, true_index)
    if flagged is not None:
        summary["errors_flagged"] = flagged
    return summary


def evaluate_model(model, dataset: SignDataset) -> Evaluation:
    """Score the model on a labelled split."""
    probabilities = predict_probabilities(model, dataset.images)
    true_index = to_indices(dataset.labels)
    pred_index = probabilities.argmax(axis=1)
    confusion = confusion_matrix(true_index, pred_index)
    overall, per_class = summarize(true_index, pred_index)
    confidence = confidence_summary(probabilities, true_index)
    overall.update(confidence)
    return Evaluation(overall, per_class, confusion, probabilities, true_index, pred_index, confidence)


def predictions_frame(evaluation: Evaluation, dataset: SignDataset) -> pd.DataFrame:
    """One row per test image, in the scorer's predictions schema (sign_mlops.contract.predictions)."""
    values = prediction_values(evaluation.probabilities, list(KAGGLE_LABELS), list(LETTERS), dataset.labels)
    frame = pd.DataFrame({"row": np.arange(2, len(dataset) + 2), **values},
                         columns=["row", *prediction_columns(labelled=True)])
    return frame.round({"confidence": 6, "second_prob": 6, "third_prob": 6})


def plot_training_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Accuracy and loss per epoch, training vs (grouped) validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("accuracy", "loss")):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", label=f"train {key}")
        ax.plot(epochs, history[f"val_{key}"], "s-", label=f"validation {key} (grouped split)")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    return save_figure(fig, path)


def plot_per_class_counts(evaluation: Evaluation, path: Path) -> Path:
    """Correct and incorrect predictions per true letter (stacked bars)."""
    correct = [m["correct"] for m in evaluation.per_class.values()]
    wrong = [m["incorrect"] for m in evaluation.per_class.values()]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(LETTERS, correct, label="correct", color="#55A868")
    ax.bar(LETTERS, wrong, bottom=correct, label="incorrect", color="#C44E52")
    ax.set_title("Test predictions per true letter")
    ax.legend()
    return save_figure(fig, path)


def plot_misclassified(evaluation: Evaluation, dataset: SignDataset, path: Path, limit: int = 32) -> Path:
    """Gallery of misclassified images titled true->predicted letter."""
    wrong = np.flatnonzero(evaluation.true_index != evaluation.pred_index)[:limit]
    cols = 8
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), wrong):
        ax.imshow(dataset.images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{LETTERS[evaluation.true_index[i]]}->{LETTERS[evaluation.pred_index[i]]}", fontsize=9)
    total = int((evaluation.true_index != evaluation.pred_index).sum())
    fig.suptitle(f"Misclassified: showing {len(wrong)} of {total}")
    return save_figure(fig, path)


def plot_confusion(evaluation: Evaluation, path: Path) -> Path:
    """Confusion matrix heat map with counts."""
    matrix = evaluation.confusion
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    ax.set_xticks(range(NUM_CLASSES), LETTERS)
    ax.set_yticks(range(NUM_CLASSES), LETTERS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, j in zip(*np.nonzero(matrix)):
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                color="white" if i == j else "black")
    ax.set_title("Confusion matrix (test split)")
    return save_figure(fig, path)


def save_evaluation_outputs(evaluation: Evaluation, dataset: SignDataset, history: dict[str, list[float]],
                            out_dir: Path) -> dict[str, Path]:
    """All evaluation pictures and the predictions CSV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = out_dir / "test_predictions.csv"
    predictions_frame(evaluation, dataset).to_csv(predictions, index=False)
    return {
        "training_curves": plot_training_curves(history, out_dir / "training_curves.png"),
        "per_class_counts": plot_per_class_counts(evaluation, out_dir / "per_class_counts.png"),
        "misclassified": plot_misclassified(evaluation, dataset, out_dir / "misclassified.png"),
        "confusion_matrix": plot_confusion(evaluation, out_dir / "confusion_matrix.png"),
        "predictions": predictions,
    }
