"""The robustness suite: how the model holds up on images the way real cameras and hands make them.

A named, parameterised set of shifts, each at three severities (mild, moderate, strong), applied
to a labelled split with a fixed seed per shift, so two runs (or two models) see the very same
perturbed images. Every shift returns whole 0-255 pixels, as a CSV would carry them.

    kind            mild / moderate / strong          what it stands for
    gaussian_noise  sigma 8 / 16 / 28 (0-255 scale)   a cheap or dark-room sensor
    salt_pepper     2 % / 5 % / 10 % of pixels        dead pixels, transmission errors
    blur            Gaussian sigma 0.7 / 1.0 / 1.5 px  focus, motion
    jpeg            quality 50 / 25 / 10              re-encoded uploads
    darker          x0.75 / x0.55 / x0.35             under-exposure
    brighter        25 / 40 / 55 % towards white      over-exposure
    contrast        x0.7 / x0.5 / x0.3 around mean    haze, flat light
    gamma           1.4 / 1.8 / 2.5 (either way)      camera tone curves
    rotation        10 / 15 / 25 degrees (either way) a tilted hand
    translation     2 / 3 / 5 px                      off-centre crops
    zoom            10 / 15 / 25 % in or out          distance to the camera
    mirror          50 % / 100 % / 100 % + noise 8    a left-handed signer
    occlusion       6 / 9 / 12 px square patch        a sleeve, another hand, a sticker
    background      25 / 40 / 60 % textured border    a different room

`robustness_report` scores a model (any `predict(images) -> probabilities`) on every cell and
summarises the moderate severity (mean over kinds and the worst kind): the numbers the
promotion gate compares. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sign_mlops.contract.predictions import errors_flagged

SEVERITIES = ("mild", "moderate", "strong")
GATE_SEVERITY = "moderate"

# kind -> parameter per severity (see the module docstring for units)
SUITE: dict[str, tuple[float, float, float]] = {
    "gaussian_noise": (8.0, 16.0, 28.0),
    "salt_pepper": (0.02, 0.05, 0.10),
    "blur": (0.7, 1.0, 1.5),
    "jpeg": (50, 25, 10),
    "darker": (0.75, 0.55, 0.35),
    "brighter": (0.25, 0.40, 0.55),
    "contrast": (0.7, 0.5, 0.3),
    "gamma": (1.4, 1.8, 2.5),
    "rotation": (10.0, 15.0, 25.0),
    "translation": (2.0, 3.0, 5.0),
    "zoom": (0.10, 0.15, 0.25),
    "mirror": (0.5, 1.0, 2.0),  # fraction mirrored; 2.0 = all mirrored plus sensor noise sigma 8
    "occlusion": (6, 9, 12),
    "background": (0.25, 0.40, 0.60),
}
KINDS = tuple(SUITE)


def _rng(kind: str, severity: str, seed: int) -> np.random.Generator:
    """One stream per (kind, severity, seed): stable across runs, processes and models."""
    return np.random.default_rng([seed, zlib.crc32(f"{kind}/{severity}".encode())])


def _to_pixels(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, sigma, x.shape)


def _salt_pepper(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(x.shape) < fraction
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, np.where(salt, 255.0, 0.0), x)


def _blur(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest")


def _jpeg(x: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    out = np.empty_like(x)
    for i, image in enumerate(_to_pixels(x)):
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float64)
    return out


def _darker(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    return x * factor


def _brighter(x: np.ndarray, towards_white: float, rng: np.random.Generator) -> np.ndarray:
    return x + towards_white * (255.0 - x)


def _contrast(x: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2), keepdims=True)
    return mean + factor * (x - mean)


def _gamma(x: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    exponent = np.where(rng.random(len(x)) < 0.5, gamma, 1.0 / gamma)[:, None, None]
    return 255.0 * (x / 255.0) ** exponent


def _affine(x: np.ndarray, angle_deg: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Rotate by angle, scale about the centre and shift (pixels), nearest edge fill, per image."""
    from scipy.ndimage import affine_transform

    out = np.empty_like(x)
    centre = np.array([13.5, 13.5])
    for i in range(len(x)):
        a = np.deg2rad(angle_deg[i])
        rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / scale[i]
        offset = centre - rotation @ (centre + shift[i])
        out[i] = affine_transform(x[i], rotation, offset=offset, order=1, mode="nearest")
    return out


def _signs(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _rotation(x: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    return _affine(x, degrees * _signs(n, rng), np.ones(n), np.zeros((n, 2)))


def _translation(x: np.ndarray, pixels: float, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    angle = rng.uniform(0, 2 * np.pi, n)
    shift = pixels * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    return _affine(x, np.zeros(n), np.ones(n), shift)


def _zoom(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    return _affine(x, np.zeros(n), 1.0 + amount * _signs(n, rng), np.zeros((n, 2)))


def _mirror(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(len(x)) < min(fraction, 1.0)
    out = np.where(flip[:, None, None], x[:, :, ::-1], x)
    return _gaussian_noise(out, 8.0, rng) if fraction > 1.0 else out


def _occlusion(x: np.ndarray, side: float, rng: np.random.Generator) -> np.ndarray:
    side = int(side)
    n = len(x)
    top = rng.integers(4, 28 - 4 - side + 1, n)
    left = rng.integers(4, 28 - 4 - side + 1, n)
    fill = rng.uniform(0, 255, n)
    rows, cols = np.arange(28)[None, :, None], np.arange(28)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
              & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))
    return np.where(inside, fill[:, None, None], x)


def _background(x: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Blend a smooth random texture in, weighted towards the border (the hand stays central)."""
    from scipy.ndimage import zoom

    n = len(x)
    coarse = rng.uniform(0, 255, (n, 4, 4))
    texture = zoom(coarse, (1, 7, 7), order=1, mode="nearest")[:, :28, :28]
    yy, xx = np.mgrid[0:28, 0:28]
    radius = np.hypot(yy - 13.5, xx - 13.5) / (13.5 * np.sqrt(2))
    weight = strength * np.clip((radius - 0.25) / 0.5, 0, 1)[None]
    return (1 - weight) * x + weight * texture


SHIFTS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise, "salt_pepper": _salt_pepper, "blur": _blur, "jpeg": _jpeg,
    "darker": _darker, "brighter": _brighter, "contrast": _contrast, "gamma": _gamma,
    "rotation": _rotation, "translation": _translation, "zoom": _zoom, "mirror": _mirror,
    "occlusion": _occlusion, "background": _background,
}


def perturb(images: np.ndarray, kind: str, severity: str, seed: int = 0) -> np.ndarray:
    """The images (N, 28, 28) under one shift, as whole 0-255 pixels (uint8)."""
    if kind not in SUITE:
        raise ValueError(f"unknown shift {kind!r}; choose one of {list(KINDS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; choose one of {list(SEVERITIES)}")
    x = np.asarray(images, dtype=np.float64).reshape(-1, 28, 28)
    param = SUITE[kind][SEVERITIES.index(severity)]
    return _to_pixels(SHIFTS[kind](x, param, _rng(kind, severity, seed)))


@dataclass(frozen=True)
class RobustnessReport:
    """Accuracy per (kind, severity) on the same rows, plus the clean accuracy of those rows."""

    rows: int
    seed: int
    clean_accuracy: float
    accuracy: dict[str, dict[str, float]]  # kind -> severity -> accuracy
    errors_flagged: float | None = None  # at the gate's severity: share of wrong rows under the low-confidence threshold

    def at(self, severity: str = GATE_SEVERITY) -> dict[str, float]:
        return {kind: by_severity[severity] for kind, by_severity in self.accuracy.items()}

    @property
    def mean(self) -> float:
        """Mean accuracy over kinds at the gate's (moderate) severity."""
        return float(np.mean(list(self.at().values())))

    @property
    def worst_kind(self) -> str:
        moderate = self.at()
        return min(moderate, key=moderate.__getitem__)

    @property
    def worst(self) -> float:
        return self.at()[self.worst_kind]

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: robust/<kind>/<severity>, robust/clean, robust/mean, robust/worst."""
        flat = {f"robust/{kind}/{severity}": value
                for kind, by_severity in self.accuracy.items() for severity, value in by_severity.items()}
        flat.update({"robust/clean": self.clean_accuracy, "robust/mean": self.mean, "robust/worst": self.worst})
        if self.errors_flagged is not None:
            flat["robust/errors_flagged"] = self.errors_flagged
        return flat

    def table_rows(self) -> list[dict[str, object]]:
        return [{"kind": kind, **{s: round(v, 6) for s, v in by_severity.items()}}
                for kind, by_severity in self.accuracy.items()]

    def to_dict(self) -> dict:
        return {"rows": self.rows, "seed": self.seed, "clean_accuracy": self.clean_accuracy,
                "severity_for_gate": GATE_SEVERITY, "mean": self.mean, "worst": self.worst,
                "worst_kind": self.worst_kind, "errors_flagged": self.errors_flagged, "accuracy": self.accuracy}


def stress_rows(n: int, limit: int, seed: int) -> np.ndarray:
    """Which rows the suite uses: all of them, or a fixed random `limit` of them."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def robustness_report(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, true_index: np.ndarray,
                      seed: int = 0, max_rows: int = 3000, kinds: tuple[str, ...] = KINDS) -> RobustnessReport:
    """Score `predict` (images (N, 28, 28) uint8 -> probabilities (N, 24)) on every shift."""
    chosen = stress_rows(len(images), max_rows, seed)
    x, y = np.asarray(images)[chosen].reshape(-1, 28, 28), np.asarray(true_index)[chosen]
    if len(x) == 0:
        raise ValueError("the robustness suite needs at least one labelled row")

    def accuracy(probs: np.ndarray) -> float:
        return float((probs.argmax(axis=1) == y).mean())

    scored = {kind: {severity: np.asarray(predict(perturb(x, kind, severity, seed))) for severity in SEVERITIES}
              for kind in kinds}
    table = {kind: {severity: accuracy(probs) for severity, probs in by_severity.items()}
             for kind, by_severity in scored.items()}
    at_gate = np.concatenate([by_severity[GATE_SEVERITY] for by_severity in scored.values()])
    return RobustnessReport(len(x), seed, accuracy(np.asarray(predict(x.astype(np.uint8)))), table,
                            errors_flagged(at_gate, np.tile(y, len(scored))))


def plot_heatmap(report: RobustnessReport, title: str = "Robustness: accuracy under shift"):
    """A kinds x severities heat map with the accuracy in each cell (a matplotlib Figure)."""
    from sign_mlops.sign_model.explore import plt

    kinds = list(report.accuracy)
    values = np.array([[report.accuracy[k][s] for s in SEVERITIES] for k in kinds])
    fig, ax = plt.subplots(figsize=(5.2, 0.38 * len(kinds) + 1.4))
    ax.imshow(values, cmap="RdYlGn", vmin=0.5, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(SEVERITIES)), SEVERITIES)
    ax.set_yticks(range(len(kinds)), kinds)
    for i in range(len(kinds)):
        for j in range(len(SEVERITIES)):
            ax.text(j, i, f"{100 * values[i, j]:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"{title}\nclean {100 * report.clean_accuracy:.2f} %, {report.rows} rows; "
                 f"moderate mean {100 * report.mean:.2f} %, worst {report.worst_kind} {100 * report.worst:.2f} %",
                 fontsize=9)
    fig.tight_layout()
    return fig


def write_table(report: RobustnessReport, path: Path) -> Path:
    """The table as CSV: kind, mild, moderate, strong."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["kind", *SEVERITIES])
        writer.writeheader()
        writer.writerows(report.table_rows())
    return path
