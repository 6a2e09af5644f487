"""Reference profile of the training data and drift statistics (PSI); numpy only.

The profile travels inside the ONNX metadata, so the scorer can compare any batch with the
data the model was trained on: PSI of per-image mean intensity (decile bins of the training
data) and of the predicted-class distribution (against the training label distribution).
"""

from __future__ import annotations

import json

import numpy as np

from sign_model.labels import KAGGLE_LABELS

PSI_ALERT = 0.2  # common rule of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant shift
_EPS = 1e-4


def image_means(pixels: np.ndarray) -> np.ndarray:
    """Mean intensity per image for (N, 784) or (N, 28, 28) pixels."""
    if len(pixels) == 0:
        return np.zeros(0)
    return pixels.reshape(len(pixels), -1).mean(axis=1)


def build_profile(images: np.ndarray, labels: np.ndarray) -> dict:
    """Decile edges and shares of per-image mean intensity, and class shares."""
    means = image_means(images)
    edges = np.unique(np.quantile(means, np.linspace(0, 1, 11)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, means, side="right"), minlength=len(edges) + 1)
    class_counts = np.array([(labels == label).sum() for label in KAGGLE_LABELS], dtype=float)
    return {
        "rows": int(len(images)),
        "mean_intensity_edges": [round(float(e), 4) for e in edges],
        "mean_intensity_shares": (counts / counts.sum()).round(6).tolist(),
        "class_shares": (class_counts / max(class_counts.sum(), 1)).round(6).tolist(),
    }


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two share vectors."""
    e = np.clip(np.asarray(expected, float), _EPS, None)
    a = np.clip(np.asarray(actual, float), _EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


class DriftAccumulator:
    """Streaming counts for a batch: mean-intensity bins and predicted classes."""

    def __init__(self, profile: dict) -> None:
        self.profile = profile
        self.edges = np.asarray(profile["mean_intensity_edges"])
        self.intensity_counts = np.zeros(len(self.edges) + 1, dtype=np.int64)
        self.class_counts = np.zeros(len(KAGGLE_LABELS), dtype=np.int64)

    def update(self, pixels: np.ndarray, predicted_index: np.ndarray) -> None:
        bins = np.searchsorted(self.edges, image_means(pixels), side="right")
        self.intensity_counts += np.bincount(bins, minlength=len(self.edges) + 1)
        self.class_counts += np.bincount(predicted_index, minlength=len(KAGGLE_LABELS))

    def merge(self, other: "DriftAccumulator") -> None:
        self.intensity_counts += other.intensity_counts
        self.class_counts += other.class_counts

    def report(self, threshold: float = PSI_ALERT) -> dict:
        if self.intensity_counts.sum() == 0:
            return {"rows": 0, "psi_mean_intensity": None, "psi_predicted_class": None, "drift": False,
                    "threshold": threshold}
        intensity = psi(self.profile["mean_intensity_shares"], self.intensity_counts)
        classes = psi(self.profile["class_shares"], self.class_counts)
        return {"rows": int(self.intensity_counts.sum()), "psi_mean_intensity": round(intensity, 4),
                "psi_predicted_class": round(classes, 4), "threshold": threshold,
                "drift": bool(intensity > threshold or classes > threshold)}


def profile_json(profile: dict) -> str:
    return json.dumps(profile, separators=(",", ":"))
