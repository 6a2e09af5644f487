"""Evaluation metrics and pictures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sign_mlops.sign_model.evaluate import confusion_matrix, evaluate_model, save_evaluation_outputs, summarize


def test_summary_of_known_predictions():
    true = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2])
    matrix = confusion_matrix(true, pred)
    assert matrix.shape == (24, 24) and matrix[0, 1] == 1 and matrix[1, 1] == 2 and matrix.sum() == 5
    overall, per_class = summarize(true, pred)
    assert overall["accuracy"] == 0.8 and overall["errors"] == 1
    assert per_class["A"]["recall"] == 0.5 and per_class["B"]["precision"] == 2 / 3
    assert per_class["C"]["f1"] == 1.0 and per_class["A"]["correct"] == 1 and per_class["A"]["incorrect"] == 1
    assert per_class["D"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "correct": 0, "incorrect": 0}
    # macro-F1 averages only classes present in the data
    assert overall["macro_f1"] == np.mean([2 / 3, 0.8, 1.0])


def test_pictures_and_predictions_are_written(tiny_training, synthetic_datasets, tmp_path):
    test = synthetic_datasets[1]
    evaluation = evaluate_model(tiny_training.model, test)
    outputs = save_evaluation_outputs(evaluation, test, tiny_training.history, tmp_path)
    for key in ("training_curves", "per_class_counts", "misclassified", "confusion_matrix"):
        assert outputs[key].read_bytes()[:4] == b"\x89PNG" and outputs[key].stat().st_size > 5000
    predictions = pd.read_csv(outputs["predictions"])
    assert len(predictions) == len(test)
    assert predictions["correct"].mean() == evaluation.overall["accuracy"]


def test_exploration_pictures(synthetic_datasets, tmp_path):
    from sign_mlops.sign_model.explore import explore

    paths = explore(*synthetic_datasets, tmp_path)
    assert len(paths) == 3 and all(p.stat().st_size > 5000 for p in paths)


def test_scorer_and_evaluation_write_one_predictions_schema(tiny_training, synthetic_datasets, synthetic_files,
                                                              onnx_model_path, tmp_path):
    from sign_mlops.serving.model import load_onnx
    from sign_mlops.serving.scorer import score_file

    test = synthetic_datasets[1]
    evaluation = evaluate_model(tiny_training.model, test)
    evaluated = pd.read_csv(save_evaluation_outputs(evaluation, test, tiny_training.history, tmp_path / "e")["predictions"])
    scored = pd.read_csv(score_file(synthetic_files[1], load_onnx(onnx_model_path), tmp_path / "s").outputs["predictions"])
    assert list(scored.columns) == list(evaluated.columns)
    assert list(evaluated.columns) == ["row", "true_label", "true_letter", "pred_label", "pred_letter", "confidence",
                                       "correct", "second_letter", "second_prob", "third_letter", "third_prob"]
    assert (scored["true_letter"] == evaluated["true_letter"]).all() and scored["row"].tolist() == evaluated["row"].tolist()
    assert not (scored["second_letter"] == scored["pred_letter"]).any()


def test_the_confidence_the_scorer_would_report_is_measured():
    """Each run records how far its confidence is from its accuracy and how many of its errors the
    scorer's low-confidence flag (< 0.5) would catch, so runs can be compared on that too."""
    from sign_mlops.sign_model.evaluate import confidence_summary

    def rows(top: float, predicted: int, n: int) -> np.ndarray:
        p = np.full((n, 24), (1 - top) / 23)
        p[:, predicted] = top
        return p

    # 8 rows at 0.9, all right; 2 rows at 0.4, one right, one wrong
    probabilities = np.vstack([rows(0.9, 0, 8), rows(0.4, 1, 2)])
    true_index = np.array([0] * 8 + [1, 2])
    summary = confidence_summary(probabilities, true_index)
    assert summary["mean_confidence"] == pytest.approx(0.8)
    assert summary["low_confidence"] == pytest.approx(0.2)
    assert summary["errors_flagged"] == 1.0
    # bin 0.9: confidence 0.9, accuracy 1.0 (weight 0.8); bin 0.4: confidence 0.4, accuracy 0.5 (weight 0.2)
    assert summary["calibration_error"] == pytest.approx(0.8 * 0.1 + 0.2 * 0.1)
    everything_right = confidence_summary(rows(0.9, 0, 4), np.zeros(4, dtype=int))
    assert "errors_flagged" not in everything_right and everything_right["calibration_error"] == pytest.approx(0.1)


def test_the_result_table_says_what_the_confidence_flag_would_catch():
    from sign_mlops.sign_model.results import confidence_row

    row = dict(confidence_row({"mean_confidence": 0.874, "low_confidence": 0.092, "errors_flagged": 0.67,
                               "calibration_error": 0.088}))
    assert row["test confidence"] == ("mean 0.874; 9.2% of rows under the scorer's low-confidence threshold, "
                                      "67% of the errors among them; calibration error 0.088")
    assert confidence_row(None) == []  # a run recorded before confidence was measured
