"""The predictions file: one schema for the evaluation step's test_predictions.csv and the
scorer's <name>.predictions.csv (numpy only; the scorer's light install imports it).

    row            file line where the input row starts (header = line 1)
    <pass-through> the scorer's extra input columns, unchanged (renamed input_<name> on a clash)
    true_label     Kaggle label, when the input is labelled
    true_letter    its letter, when labelled
    pred_label     predicted Kaggle label (0-24 without 9)
    pred_letter    predicted letter (A-Y without J)
    confidence     probability of the prediction
    correct        pred_label == true_label, when labelled
    second_letter, second_prob, third_letter, third_prob   the runners-up
"""

from __future__ import annotations

import numpy as np

RUNNERS_UP = ("second", "third")
LOW_CONFIDENCE = 0.5  # a row whose confidence is under this counts as low-confidence (scorer summary, evaluation)


def prediction_columns(labelled: bool) -> list[str]:
    """Every column after `row` and the pass-through columns, in file order."""
    truth = ["true_label", "true_letter"] if labelled else []
    check = ["correct"] if labelled else []
    ranks = [f"{rank}_{what}" for rank in RUNNERS_UP for what in ("letter", "prob")]
    return [*truth, "pred_label", "pred_letter", "confidence", *check, *ranks]


def prediction_values(probs: np.ndarray, labels: list[int] | np.ndarray, letters: list[str] | np.ndarray,
                      true_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The columns of `prediction_columns` for a block of class probabilities."""
    labels, letters = np.asarray(labels), np.asarray(letters)
    top = np.argsort(-probs, axis=1)[:, : 1 + len(RUNNERS_UP)]
    top_p = np.take_along_axis(probs, top, axis=1)
    values: dict[str, np.ndarray] = {}
    if true_labels is not None:
        values["true_label"] = true_labels
        letter_of = dict(zip(labels.tolist(), letters.tolist()))
        values["true_letter"] = np.array([letter_of.get(int(t), "") for t in true_labels], dtype=object)
    values["pred_label"] = labels[top[:, 0]]
    values["pred_letter"] = letters[top[:, 0]]
    values["confidence"] = top_p[:, 0]
    if true_labels is not None:
        values["correct"] = values["pred_label"] == true_labels
    for k, rank in enumerate(RUNNERS_UP, start=1):
        values[f"{rank}_letter"] = letters[top[:, k]]
        values[f"{rank}_prob"] = top_p[:, k]
    return values


def errors_flagged(probs: np.ndarray, true_index: np.ndarray) -> float | None:
    """Share of the wrong rows whose confidence is under LOW_CONFIDENCE: what a user who checks
    the flagged rows would catch. None when nothing is wrong."""
    wrong = probs.argmax(axis=1) != true_index
    return float((probs.max(axis=1)[wrong] < LOW_CONFIDENCE).mean()) if wrong.any() else None
