"""Benchmark: are the models' probabilities honest, and what would temperature scaling change? One table.

The scorer reports each row's confidence (the top probability) and counts rows under 0.5 as
low-confidence. Label smoothing (0.1) trains the models to answer about 0.9 at most, so they are
under-confident on clean images. Temperature scaling (softmax(logits / T), one number fitted by
log-loss) would make the probabilities honest; this measures what that costs the low-confidence flag.

Models: ONNX files trained on the fit part only (a sweep trial's
outputs/runs/<run id>/onnx/model.onnx, docs/research/pareto.md). Data: the Pareto study's grouped holdout of the real Kaggle file, split
by source photo into two halves; T is fitted on one half and measured on the other, both ways. The
log-probabilities the model outputs stand in for its logits (softmax(log p / T) = softmax(z / T)).
Rows: T = 1 (as trained), T fitted on clean images, T fitted on clean plus every moderate shift of
the robustness suite; measured on the other half's clean images and on its shifted images (every
kind, pooled). ECE: expected calibration error of the top probability, 15 equal-width bins
(sign_mlops.sign_model.evaluate.calibration_error, logged by every run as test/calibration_error).

    sign-mlops sweep research/sweeps/pareto.yaml --train FIT.csv --test HOLDOUT.csv   # docs/research/pareto.md
    .venv/bin/python research/calibration.py /tmp/keep/bn_cnn-camera+hands-0.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table  # noqa: E402
from research.holdout import kept_model_paths, load_holdout  # noqa: E402  (the same holdout as the Pareto study)


def with_temperature(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    z = log_probs / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_temperature(log_probs: np.ndarray, true_index: np.ndarray) -> float:
    """The T that minimises the log-loss (searched over log T in [-3, 3])."""
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    labels = np.arange(log_probs.shape[1])
    result = minimize_scalar(lambda log_t: log_loss(true_index, with_temperature(log_probs, np.exp(log_t)), labels=labels),
                             bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def measured(probs: np.ndarray, true_index: np.ndarray) -> list[str]:
    from sklearn.metrics import log_loss

    from sign_mlops.contract.predictions import LOW_CONFIDENCE
    from sign_mlops.sign_model.evaluate import confidence_summary

    summary, right = confidence_summary(probs, true_index), probs.argmax(1) == true_index
    flagged = f"{summary['errors_flagged']:.0%}" if "errors_flagged" in summary else "-"
    return [f"{right.mean():.2%}", f"{log_loss(true_index, probs, labels=np.arange(probs.shape[1])):.3f}",
            f"{summary['calibration_error']:.3f}", f"{summary['mean_confidence']:.3f}",
            f"{summary['low_confidence']:.1%}", flagged, f"{(probs.max(1)[right] < LOW_CONFIDENCE).mean():.1%}"]


def main() -> None:
    models = kept_model_paths(__doc__)

    from sign_mlops.sign_model.export import onnx_predictor
    from sign_mlops.sign_model.robustness import GATE_SEVERITY, KINDS, perturb
    from sign_mlops.sign_model.split import near_copy_groups

    holdout = load_holdout()
    images, true_index, source = holdout.images, holdout.true_index, holdout.source
    photos = near_copy_groups(images, holdout.labels)
    half_of_photo = dict(zip(np.unique(photos), np.random.default_rng(0).integers(0, 2, len(np.unique(photos)))))
    half = np.array([half_of_photo[p] for p in photos])
    shifted_images = {kind: perturb(images, kind, GATE_SEVERITY) for kind in KINDS}
    rows = []
    for path in models:
        predict = onnx_predictor(path)
        clean = np.log(np.clip(predict(images), 1e-12, 1.0))
        shifted = np.stack([np.log(np.clip(predict(shifted_images[kind]), 1e-12, 1.0)) for kind in KINDS])
        for fit_half in (0, 1):
            fit, other = half == fit_half, half != fit_half
            fitted = {"as trained": 1.0,
                      "fitted on clean": fit_temperature(clean[fit], true_index[fit]),
                      "fitted on clean + shifted": fit_temperature(
                          np.concatenate([clean[fit], *shifted[:, fit]]), np.tile(true_index[fit], 1 + len(KINDS)))}
            for how, temperature in fitted.items():
                t = f"{temperature:.2f} ({how})"
                rows.append([path.stem, str(fit_half), t, "clean", *measured(with_temperature(clean[other], temperature),
                                                                              true_index[other])])
                rows.append([path.stem, str(fit_half), t, "shifted", *measured(
                    with_temperature(np.concatenate(shifted[:, other]), temperature), np.tile(true_index[other], len(KINDS)))])
    print_table(f"Temperature scaling, fitted on one half of the grouped holdout ({len(np.unique(photos))} source photos, "
                f"{len(images)} rows), measured on the other; {source}",
                ["model", "T fitted on half", "T", "measured on", "accuracy", "log-loss", "ECE", "mean confidence",
                 "rows < 0.5", "wrong rows < 0.5", "right rows < 0.5"], rows)


if __name__ == "__main__":
    main()
