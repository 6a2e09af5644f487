"""Evaluation metrics and pictures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sign_model.evaluate import confusion_matrix, evaluate_model, save_evaluation_outputs, summarize


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
    from sign_model.explore import explore

    paths = explore(*synthetic_datasets, tmp_path)
    assert len(paths) == 3 and all(p.stat().st_size > 5000 for p in paths)


def test_scorer_and_evaluation_write_one_predictions_schema(tiny_training, synthetic_datasets, synthetic_files,
                                                              onnx_model_path, tmp_path):
    from serving.model import load_onnx
    from serving.scorer import score_file

    test = synthetic_datasets[1]
    evaluation = evaluate_model(tiny_training.model, test)
    evaluated = pd.read_csv(save_evaluation_outputs(evaluation, test, tiny_training.history, tmp_path / "e")["predictions"])
    scored = pd.read_csv(score_file(synthetic_files[1], load_onnx(onnx_model_path), tmp_path / "s")["outputs"]["predictions"])
    assert list(scored.columns) == list(evaluated.columns)
    assert list(evaluated.columns) == ["row", "true_label", "true_letter", "pred_label", "pred_letter", "confidence",
                                       "correct", "second_letter", "second_prob", "third_letter", "third_prob"]
    assert (scored["true_letter"] == evaluated["true_letter"]).all() and scored["row"].tolist() == evaluated["row"].tolist()
    assert not (scored["second_letter"] == scored["pred_letter"]).any()
