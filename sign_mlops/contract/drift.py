"""Reference profile of the training data and a drift check that can be believed; numpy only.

The profile travels inside the ONNX metadata (`reference_profile`, with a `version` key), so the
scorer compares any batch with the data the model was trained on. Version 2 profiles hold, for
four image features that real shifts move -- mean intensity (darker/brighter, inverted),
contrast (pixel standard deviation), high-frequency energy (mean |Laplacian|: sensor noise,
blur) and edge asymmetry (the horizontal centroid of edges: a mirrored, left-handed signer
moves it by ~0.9 standard deviations on the Kaggle data) -- the decile edges on the training
images, plus the class shares and the deciles of the model's confidence on the test split.

A batch drifts on a feature when BOTH hold:
- significance, with the batch size taken into account: a chi-square test of the batch's bin
  counts against the reference shares, p < ALPHA / number of tests (Bonferroni), run only when
  every bin expects at least MIN_EXPECTED rows (smaller batches say "too few rows");
- a shift that matters: PSI above max(PSI_FLOOR, 3 x (bins - 1) / rows). Large clean batches of
  a real holdout differ from the training data by a sliver that a test of 10,000 rows calls
  significant, and rows come in near-copy groups, so small batches vary more than the test
  assumes; the floor keeps both from raising alarms (`benchmarks/drift.py` measures the rates).
Version 1 profiles (mean intensity and classes only, PSI > 0.2) are still read.
"""

from __future__ import annotations

import json
import math

import numpy as np

from sign_mlops.contract.labels import KAGGLE_LABELS

PROFILE_VERSION = 2
FEATURES = ("mean_intensity", "contrast", "high_frequency", "edge_asymmetry")
ALPHA = 0.01
MIN_EXPECTED = 5.0
PSI_FLOOR = 0.1
PSI_ALERT_V1 = 0.2
_EPS = 1e-4
_COLUMN_WEIGHTS = ((np.arange(27) - 13.0) / 13.0).astype(np.float32)


def image_features(pixels: np.ndarray) -> np.ndarray:
    """(N, 4) float32: mean intensity, contrast, high-frequency energy, edge asymmetry."""
    n = len(pixels)
    if n == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    x = np.asarray(pixels, dtype=np.float32).reshape(n, 28, 28)
    laplacian = np.abs(4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    column_edges = np.abs(np.diff(x, axis=2)).sum(axis=1)  # (N, 27) horizontal gradient per column
    asymmetry = (column_edges * _COLUMN_WEIGHTS).sum(axis=1) / (column_edges.sum(axis=1) + 1e-6)
    return np.stack([x.mean(axis=(1, 2)), x.std(axis=(1, 2)), laplacian.mean(axis=(1, 2)), asymmetry], axis=1)


def image_means(pixels: np.ndarray) -> np.ndarray:
    """Mean intensity per image for (N, 784) or (N, 28, 28) pixels."""
    if len(pixels) == 0:
        return np.zeros(0)
    return pixels.reshape(len(pixels), -1).mean(axis=1)


def _deciles(values: np.ndarray) -> dict:
    edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {"edges": [round(float(e), 6) for e in edges], "shares": (counts / counts.sum()).round(6).tolist()}


def build_profile(images: np.ndarray, labels: np.ndarray, confidences: np.ndarray | None = None) -> dict:
    """The reference: feature deciles of the training images, class shares, confidence deciles."""
    features = image_features(images)
    class_counts = np.array([(labels == label).sum() for label in KAGGLE_LABELS], dtype=float)
    intensity = _deciles(features[:, 0])
    profile = {
        "version": PROFILE_VERSION,
        "rows": int(len(images)),
        "features": {name: _deciles(features[:, i]) for i, name in enumerate(FEATURES)},
        "class_shares": (class_counts / max(class_counts.sum(), 1)).round(6).tolist(),
        # version-1 keys, so scorers of earlier releases still read a new model's profile
        "mean_intensity_edges": intensity["edges"],
        "mean_intensity_shares": intensity["shares"],
    }
    if confidences is not None and len(confidences):
        profile["confidence"] = _deciles(np.asarray(confidences, dtype=np.float64))
    return profile


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two share (or count) vectors."""
    e = np.clip(np.asarray(expected, float), _EPS, None)
    a = np.clip(np.asarray(actual, float), _EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def chi_square_p(counts: np.ndarray, shares: np.ndarray) -> float:
    """p-value of Pearson's chi-square test of counts against expected shares
    (Wilson-Hilferty approximation of the chi-square tail; no SciPy in the scorer)."""
    counts = np.asarray(counts, float)
    expected = np.asarray(shares, float) / np.sum(shares) * counts.sum()
    statistic = float(np.sum((counts - expected) ** 2 / np.maximum(expected, 1e-12)))
    k = len(counts) - 1
    z = ((statistic / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


class DriftAccumulator:
    """Streaming, mergeable counts of a batch: feature bins, predicted classes, confidence bins."""

    def __init__(self, profile: dict) -> None:
        self.profile = profile
        self.version = int(profile.get("version", 1))
        if self.version >= 2:
            self.edges = [np.asarray(profile["features"][name]["edges"]) for name in FEATURES]
        else:
            self.edges = [np.asarray(profile["mean_intensity_edges"])]
        self.feature_counts = [np.zeros(len(e) + 1, dtype=np.int64) for e in self.edges]
        self.class_counts = np.zeros(len(KAGGLE_LABELS), dtype=np.int64)
        confidence = profile.get("confidence")
        self.confidence_edges = np.asarray(confidence["edges"]) if confidence else None
        self.confidence_counts = np.zeros(len(confidence["edges"]) + 1, dtype=np.int64) if confidence else None

    def update(self, pixels: np.ndarray, predicted_index: np.ndarray, confidence: np.ndarray | None = None) -> None:
        values = image_features(pixels) if self.version >= 2 else image_means(pixels)[:, None]
        for i, edges in enumerate(self.edges):
            bins = np.searchsorted(edges, values[:, i], side="right")
            self.feature_counts[i] += np.bincount(bins, minlength=len(edges) + 1)
        self.class_counts += np.bincount(predicted_index, minlength=len(KAGGLE_LABELS))
        if self.confidence_edges is not None and self.confidence_counts is not None and confidence is not None:
            bins = np.searchsorted(self.confidence_edges, confidence, side="right")
            self.confidence_counts += np.bincount(bins, minlength=len(self.confidence_edges) + 1)

    def merge(self, other: "DriftAccumulator") -> None:
        self.load_state(other.state(), add=True)

    def state(self) -> dict:
        """Plain lists (JSON), so counts from other processes add up exactly."""
        return {"features": [c.tolist() for c in self.feature_counts], "classes": self.class_counts.tolist(),
                "confidence": None if self.confidence_counts is None else self.confidence_counts.tolist()}

    def load_state(self, state: dict, add: bool = False) -> None:
        base = (lambda old, new: old + np.asarray(new, np.int64)) if add else (lambda old, new: np.asarray(new, np.int64))
        self.feature_counts = [base(old, new) for old, new in zip(self.feature_counts, state["features"])]
        self.class_counts = base(self.class_counts, state["classes"])
        if self.confidence_counts is not None and state.get("confidence") is not None:
            self.confidence_counts = base(self.confidence_counts, state["confidence"])

    def report(self) -> dict:
        rows = int(self.feature_counts[0].sum())
        if self.version < 2:
            return self._report_v1(rows)
        checks = {name: (counts, self.profile["features"][name]["shares"])
                  for name, counts in zip(FEATURES, self.feature_counts)}
        checks["predicted_class"] = (self.class_counts, self.profile["class_shares"])
        if self.confidence_counts is not None:
            checks["confidence"] = (self.confidence_counts, self.profile["confidence"]["shares"])
        level = ALPHA / len(checks)
        tests = {name: _test(counts, shares, level) for name, (counts, shares) in checks.items()}
        drifted = [name for name, t in tests.items() if t.get("drift")]
        tested = [name for name, t in tests.items() if "p_value" in t]
        verdict = "drift" if drifted else ("no drift" if tested else "too few rows to tell")
        return {"version": 2, "rows": rows, "verdict": verdict, "drift": bool(drifted), "drifted": drifted,
                "alpha": ALPHA, "tests": tests}

    def _report_v1(self, rows: int) -> dict:
        if rows == 0:
            return {"version": 1, "rows": 0, "verdict": "too few rows to tell", "drift": False, "drifted": []}
        intensity = psi(self.profile["mean_intensity_shares"], self.feature_counts[0])
        classes = psi(self.profile["class_shares"], self.class_counts)
        drifted = [n for n, v in (("mean_intensity", intensity), ("predicted_class", classes)) if v > PSI_ALERT_V1]
        return {"version": 1, "rows": rows, "verdict": "drift" if drifted else "no drift", "drift": bool(drifted),
                "drifted": drifted, "tests": {"mean_intensity": {"psi": round(intensity, 4)},
                                              "predicted_class": {"psi": round(classes, 4)}}}


def _test(counts: np.ndarray, shares: list[float], level: float) -> dict:
    n = int(np.sum(counts))
    shares_arr = np.asarray(shares, float)
    needed = int(math.ceil(MIN_EXPECTED / max(shares_arr.min(), 1e-9)))
    if n < needed:
        return {"skipped": f"fewer than {needed} rows"}
    p_value = chi_square_p(counts, shares_arr)
    shift = psi(shares_arr, counts)
    floor = psi_floor(n, len(shares_arr))
    return {"psi": round(shift, 4), "psi_floor": round(floor, 4), "p_value": float(f"{p_value:.3g}"),
            "drift": bool(p_value < level and shift > floor)}


def psi_floor(rows: int, bins: int) -> float:
    """PSI a batch must exceed: PSI_FLOOR, or three times what sampling noise alone gives a batch
    of this size (E[PSI] ~ (bins - 1) / rows), whichever is larger. Rows of this data come in
    near-copy groups, so small batches vary more than independent rows would."""
    return max(PSI_FLOOR, 3 * (bins - 1) / max(rows, 1))


def profile_json(profile: dict) -> str:
    return json.dumps(profile, separators=(",", ":"))
