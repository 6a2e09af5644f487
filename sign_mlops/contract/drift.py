"""Reference profile of the training data and a drift check that can be believed; numpy only.

The profile travels inside the ONNX metadata (`reference_profile`, with a `version` key), so the
scorer compares any batch with the data the model was trained on. It holds, for four image
features that real shifts move -- mean intensity (darker/brighter, inverted), contrast (pixel
standard deviation), high-frequency energy (mean |Laplacian|: sensor noise, blur) and edge
asymmetry (the horizontal centroid of edges: a mirrored, left-handed signer moves it by ~0.9
standard deviations on the Kaggle data) -- the decile edges on the training images, overall
and (version 3) per letter; the class shares of the training labels; and the deciles of the
model's confidence on the test split.

Two questions, answered apart (docs/drift.md):
- **Input drift** (`report()`, the summary's `drift`): do the images look different from the
  training images? Version 3 compares each image with the training images *of its predicted
  letter* (its decile within that letter), so a batch of one letter, or of a few, is compared
  with like: every feature depends on the hand shape, and against all training images a clean
  single-letter batch of the Kaggle holdout was flagged every time. Only this sets `drift`.
- **Class mix** (`class_mix()`, the summary's `class_mix`): do the predicted letters come in
  the training labels' shares? Information, never a drift verdict: real batches rarely share
  the training mix (an independent check found every clean 1,000-row batch of unseen Kaggle
  images flagged on it, and three such verdicts in an hour start a retraining).

A batch drifts on a feature when BOTH hold:
- significance, with the batch size taken into account: a chi-square test of the batch's bin
  counts against the expected shares, p < ALPHA / number of tests (Bonferroni), run only when
  every bin expects at least MIN_EXPECTED rows (smaller batches say "too few rows");
- a shift that matters: PSI above max(PSI_FLOOR, 3 x (bins - 1) / rows + CLASS_SPREAD x the sum
  of the squared predicted-letter shares). Large clean batches of a real holdout differ from the
  training data by a sliver that a test of 10,000 rows calls significant; rows come in near-copy
  groups, so small batches vary more than the test assumes; and within one letter the features
  vary mostly between the few source photos (~25 per letter in the Kaggle file), so a batch of
  one letter needs a larger shift than a batch of all 24 (`benchmarks/drift.py` measures it).
Version 2 profiles (overall deciles only) and version 1 profiles (mean intensity and classes
only, PSI > 0.2) are still read; they compare every batch with all training images.
"""

from __future__ import annotations

import json
import math

import numpy as np

from sign_mlops.contract.labels import KAGGLE_LABELS, LETTERS

PROFILE_VERSION = 3
FEATURES = ("mean_intensity", "contrast", "high_frequency", "edge_asymmetry")
ALPHA = 0.01
MIN_EXPECTED = 5.0
PSI_FLOOR = 0.1
PSI_ALERT_V1 = 0.2
CLASS_MIN_ROWS = 20  # a letter with fewer training rows is compared with all training images
# How far a clean batch of ONE letter may lie from its reference (PSI): the largest measured on
# the Kaggle file, rounded up. Features (compared letter by letter): two disjoint halves of one
# letter's near-copy groups in the training part of a 60/40 grouped split (24 letters x 5
# halvings; 95th percentiles 0.51, 1.79, 0.52, 5.9). Confidence (compared with all letters, as
# the profile holds no per-letter confidences): one letter of the grouped holdout against all,
# for three models (median 0.44-0.7, largest 3.2-4.7). A batch's floor adds this times the sum
# of its squared letter shares: all of it for one letter, a 24th for an even mix.
CLASS_SPREAD = {"mean_intensity": 0.6, "contrast": 3.7, "high_frequency": 0.7, "edge_asymmetry": 7.6,
                "confidence": 5.0}
_QUANTILES = np.linspace(0, 1, 11)[1:-1]
_EPS = 1e-4
_COLUMN_WEIGHTS = ((np.arange(27) - 13.0) / 13.0).astype(np.float32)
_INDEX = np.full(max(KAGGLE_LABELS) + 1, -1)
_INDEX[list(KAGGLE_LABELS)] = np.arange(len(KAGGLE_LABELS))


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
    edges = np.unique(np.quantile(values, _QUANTILES))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {"edges": [round(float(e), 6) for e in edges], "shares": (counts / counts.sum()).round(6).tolist()}


def _class_deciles(values: np.ndarray, index: np.ndarray) -> dict:
    """Nine decile edges and ten shares per letter (output index); a letter with fewer than
    CLASS_MIN_ROWS rows gets the edges and shares of all rows. Edges are not made unique, so
    every letter has ten bins (a tied edge leaves a bin empty, and the check merges it)."""
    edges, shares = [], []
    for c in range(len(KAGGLE_LABELS)):
        own = values[index == c]
        ref = own if len(own) >= CLASS_MIN_ROWS else values
        e = np.quantile(ref, _QUANTILES).round(6)
        counts = np.bincount(np.searchsorted(e, ref, side="right"), minlength=len(e) + 1)
        edges.append(e.tolist())
        shares.append((counts / counts.sum()).round(6).tolist())
    return {"edges": edges, "shares": shares}


def class_index(labels: np.ndarray) -> np.ndarray:
    """Output index (0-23) per Kaggle label."""
    return _INDEX[np.asarray(labels, dtype=np.int64)]


def build_profile(images: np.ndarray, labels: np.ndarray, confidences: np.ndarray | None = None) -> dict:
    """The reference: feature deciles of the training images (overall and per letter), class
    shares, confidence deciles."""
    features = image_features(images)
    index = class_index(labels)
    class_counts = np.bincount(index, minlength=len(KAGGLE_LABELS)).astype(float)
    intensity = _deciles(features[:, 0])
    profile = {
        "version": PROFILE_VERSION,
        "rows": int(len(images)),
        "features": {name: {**_deciles(features[:, i]), "by_class": _class_deciles(features[:, i], index)}
                     for i, name in enumerate(FEATURES)},
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


class _Binned:
    """One quantity's bins: overall edges, or (version 3) edges per predicted letter."""

    def __init__(self, spec: dict) -> None:
        by_class = spec.get("by_class")
        self.class_edges = np.asarray(by_class["edges"], float) if by_class else None
        self.class_shares = np.asarray(by_class["shares"], float) if by_class else None
        self.edges = np.asarray(spec["edges"], float)
        self.shares = np.asarray(spec["shares"], float)
        bins = self.class_edges.shape[1] + 1 if self.class_edges is not None else len(self.edges) + 1
        self.counts = np.zeros(bins, dtype=np.int64)

    def add(self, values: np.ndarray, predicted_index: np.ndarray) -> None:
        if self.class_edges is not None:
            bins = (values[:, None] >= self.class_edges[predicted_index]).sum(axis=1)
        else:
            bins = np.searchsorted(self.edges, values, side="right")
        self.counts += np.bincount(bins, minlength=len(self.counts))

    def expected(self, class_counts: np.ndarray) -> np.ndarray:
        """Shares the bins would have if the batch were like the training images of its letters."""
        if self.class_shares is None:
            return self.shares
        return (class_counts / max(class_counts.sum(), 1)) @ self.class_shares


class DriftAccumulator:
    """Streaming, mergeable counts of a batch: feature bins, predicted classes, confidence bins."""

    def __init__(self, profile: dict) -> None:
        self.profile = profile
        self.version = int(profile.get("version", 1))
        if self.version >= 2:
            self.binned = [_Binned(profile["features"][name]) for name in FEATURES]
        else:
            self.binned = [_Binned({"edges": profile["mean_intensity_edges"],
                                    "shares": profile["mean_intensity_shares"]})]
        self.class_counts = np.zeros(len(KAGGLE_LABELS), dtype=np.int64)
        confidence = profile.get("confidence")
        self.confidence = _Binned(confidence) if confidence else None

    @property
    def feature_counts(self) -> list[np.ndarray]:
        return [b.counts for b in self.binned]

    def update(self, pixels: np.ndarray, predicted_index: np.ndarray, confidence: np.ndarray | None = None) -> None:
        predicted_index = np.asarray(predicted_index, dtype=np.int64)
        values = image_features(pixels) if self.version >= 2 else image_means(pixels)[:, None]
        for i, binned in enumerate(self.binned):
            binned.add(values[:, i], predicted_index)
        self.class_counts += np.bincount(predicted_index, minlength=len(KAGGLE_LABELS))
        if self.confidence is not None and confidence is not None:
            self.confidence.add(np.asarray(confidence, dtype=np.float64), predicted_index)

    def merge(self, other: "DriftAccumulator") -> None:
        self.load_state(other.state(), add=True)

    def state(self) -> dict:
        """Plain lists (JSON), so counts from other processes add up exactly."""
        return {"features": [c.tolist() for c in self.feature_counts], "classes": self.class_counts.tolist(),
                "confidence": None if self.confidence is None else self.confidence.counts.tolist()}

    def load_state(self, state: dict, add: bool = False) -> None:
        def value(old: np.ndarray, new: list[int]) -> np.ndarray:
            return old + np.asarray(new, np.int64) if add else np.asarray(new, np.int64)

        for binned, new in zip(self.binned, state["features"]):
            binned.counts = value(binned.counts, new)
        self.class_counts = value(self.class_counts, state["classes"])
        if self.confidence is not None and state.get("confidence") is not None:
            self.confidence.counts = value(self.confidence.counts, state["confidence"])

    def report(self) -> dict:
        """Input drift: do the images (and the model's confidence) look unlike the training data's?"""
        rows = int(self.binned[0].counts.sum())
        if self.version < 2:
            return self._report_v1(rows)
        concentration = float(np.sum((self.class_counts / max(rows, 1)) ** 2))
        checks = {name: (b, CLASS_SPREAD[name] if b.class_shares is not None else 0.0)
                  for name, b in zip(FEATURES, self.binned)}
        if self.confidence is not None:
            checks["confidence"] = (self.confidence, CLASS_SPREAD["confidence"])
        level = ALPHA / len(checks)
        tests = {name: _test(b.counts, b.expected(self.class_counts), level, spread * concentration)
                 for name, (b, spread) in checks.items()}
        drifted = [name for name, t in tests.items() if t.get("drift")]
        tested = [name for name, t in tests.items() if "p_value" in t]
        verdict = "drift" if drifted else ("no drift" if tested else "too few rows to tell")
        compared = ("training images of the same predicted letters" if self.version >= 3
                    else "all training images (profile version 2: retrain to compare letter by letter)")
        return {"version": self.version, "rows": rows, "verdict": verdict, "drift": bool(drifted),
                "drifted": drifted, "alpha": ALPHA, "compared_with": compared,
                "effective_letters": round(1 / concentration, 2) if rows else None, "tests": tests}

    def _report_v1(self, rows: int) -> dict:
        if rows == 0:
            return {"version": 1, "rows": 0, "verdict": "too few rows to tell", "drift": False, "drifted": []}
        intensity = psi(self.profile["mean_intensity_shares"], self.binned[0].counts)
        drifted = ["mean_intensity"] if intensity > PSI_ALERT_V1 else []
        return {"version": 1, "rows": rows, "verdict": "drift" if drifted else "no drift", "drift": bool(drifted),
                "drifted": drifted, "tests": {"mean_intensity": {"psi": round(intensity, 4)}}}

    def class_mix(self) -> dict:
        """The predicted letters' shares against the training labels': information only (a batch
        of one letter is not drift); never part of the drift verdict."""
        rows = int(self.class_counts.sum())
        reference = np.asarray(self.profile["class_shares"], float)
        test = _test(self.class_counts, reference, ALPHA, merge_to_expected=True)
        differs = bool(test.pop("drift", False))
        verdict = "differs from training" if differs else ("as in training" if "p_value" in test
                                                            else "too few rows to tell")
        shares = self.class_counts / max(rows, 1)
        return {"verdict": verdict, "differs": differs, "rows": rows, **test,
                "shares": {letter: round(float(s), 4) for letter, s in zip(LETTERS, shares)},
                "training_shares": {letter: round(float(s), 4) for letter, s in zip(LETTERS, reference)}}


def _merge_sparse(counts: np.ndarray, shares: np.ndarray, least: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge each bin expecting less than `least` of the rows into the next (the last into the
    one before): a coarser partition, so the test stays valid where a bin expects too few rows."""
    merged_counts: list[float] = []
    merged_shares: list[float] = []
    count = share = 0.0
    for c, s in zip(counts, shares):
        count, share = count + c, share + s
        if share >= least:
            merged_counts.append(count)
            merged_shares.append(share)
            count = share = 0.0
    if merged_shares:
        merged_counts[-1] += count
        merged_shares[-1] += share
    return np.asarray(merged_counts), np.asarray(merged_shares)


def _test(counts: np.ndarray, shares: np.ndarray, level: float, spread: float = 0.0,
          merge_to_expected: bool = False) -> dict:
    """Chi-square test and PSI of bin counts against expected shares; drift when both say so.
    Bins expecting under half an even share are merged (a letter's tied deciles); with
    `merge_to_expected`, also those expecting under MIN_EXPECTED rows (letters of a small batch)."""
    n = int(np.sum(counts))
    if n == 0:
        return {"skipped": "no rows"}
    least = 0.5 / len(shares)
    if merge_to_expected:
        least = max(least, MIN_EXPECTED / n)
    counts, shares_arr = _merge_sparse(np.asarray(counts, float), np.asarray(shares, float), least)
    if len(shares_arr) < 2:
        return {"skipped": f"fewer than {math.ceil(2 * MIN_EXPECTED)} rows" if merge_to_expected
                else "the reference has a single bin"}
    needed = int(math.ceil(MIN_EXPECTED / shares_arr.min() - 1e-9))
    if n < needed:
        return {"skipped": f"fewer than {needed} rows"}
    p_value = chi_square_p(counts, shares_arr)
    shift = psi(shares_arr, counts)
    floor = psi_floor(n, len(shares_arr), spread)
    return {"psi": round(shift, 4), "psi_floor": round(floor, 4), "p_value": float(f"{p_value:.3g}"),
            "drift": bool(p_value < level and shift > floor)}


def psi_floor(rows: int, bins: int, spread: float = 0.0) -> float:
    """PSI a batch must exceed: PSI_FLOOR, or three times what sampling noise alone gives a batch
    of this size (E[PSI] ~ (bins - 1) / rows) plus `spread` (what the batch's letters vary between
    source photos), whichever is larger. Rows of this data come in near-copy groups, so small
    batches vary more than independent rows would."""
    return max(PSI_FLOOR, 3 * (bins - 1) / max(rows, 1) + spread)


def profile_json(profile: dict) -> str:
    return json.dumps(profile, separators=(",", ":"))
