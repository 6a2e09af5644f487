"""Two models on the user's own labelled file (`sign-mlops compare A B --data FILE`): accuracy,
per-letter accuracy, how often they agree, robustness on the file's images, and scorer speed.

A and B are what an operator says: `champion`, `challenger` (aliases of sign-mnist-onnx), `3` or
`v3` (a version), a `models:/...` URI or an `.onnx` file. The file is read once by the scorer's
own reader (bad rows are counted as rejected, exactly as `score` would); both models see the same
rows. Speed is the batch scorer end to end on the whole file, timed in alternating pairs (as the
INT8 gate does), so a burst of other work on the machine touches both models alike."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sign_mlops.contract.csvformat import file_digest
from sign_mlops.serving.model import LoadedModel
from sign_mlops.serving.reader import iter_chunks

ONNX_MODEL = "sign-mnist-onnx"
ROBUST_ROWS = 1500  # rows the shift suite runs on (as the INT8 gate): ~14 shifts x 3 severities each
_VERSION = re.compile(r"^v?(\d+)$")


class CompareError(ValueError):
    """The comparison cannot be made (unlabelled file, different label maps); says what to do."""


def model_uri(spec: str) -> str:
    """What the user named, as something the scorer resolves: `champion` -> the alias URI, `3`
    or `v3` -> the version URI, a models:/ URI or a file path as given."""
    if spec.startswith("models:/") or spec.endswith(".onnx") or "/" in spec or Path(spec).exists():
        return spec
    version = _VERSION.match(spec)
    if version:
        return f"models:/{ONNX_MODEL}/{version[1]}"
    return f"models:/{ONNX_MODEL}@{spec}"


@dataclass(frozen=True)
class LabelledRows:
    """The rows of the file the scorer accepts, with their labels; the rest counted as rejected."""

    path: str
    sha256: str
    pixels: np.ndarray  # (n, 784) float32
    labels: np.ndarray  # (n,) int64 Kaggle labels
    rows_in: int
    rejected: int


def read_labelled(path: Path) -> LabelledRows:
    """Every accepted row's pixels and label; refuses a file without a label column."""
    pixels, labels, rows_in, rejected = [], [], 0, 0
    for chunk in iter_chunks(path):
        if chunk.labels is None:
            raise CompareError(f"{path} has no 'label' column: compare needs labelled rows (the Kaggle format: "
                               "label, pixel1..pixel784); score it with 'sign-mlops score' instead.")
        pixels.append(chunk.pixels)
        labels.append(chunk.labels)
        rows_in += chunk.rows_in
        rejected += len(chunk.rejects)
    if not pixels or sum(len(p) for p in pixels) == 0:
        raise CompareError(f"{path}: no row could be scored ({rejected} rejected); "
                           "run 'sign-mlops score' on it to see each row's reason.")
    return LabelledRows(str(path), file_digest(path), np.concatenate(pixels), np.concatenate(labels),
                        rows_in, rejected)


@dataclass(frozen=True)
class ModelResult:
    """One model on the file."""

    spec: str  # what the user named
    name: str
    version: str
    path: str
    sha256: str
    accuracy: float
    per_class: dict[str, float]  # letter -> accuracy over rows of that true letter (letters present)
    robust_mean: float
    robust_worst: float
    robust_worst_kind: str
    rows_per_second: float  # the scorer end to end, median of the pairs
    unknown_labels: int  # rows whose label the model has no output for (counted wrong)

    @property
    def title(self) -> str:
        return f"{self.spec} ({self.name} v{self.version})" if self.version else self.spec


@dataclass(frozen=True)
class Comparison:
    data: str
    data_sha256: str
    rows: int  # rows both models scored
    rejected: int  # rows the scorer rejected (not compared)
    a: ModelResult
    b: ModelResult
    agreement: float  # share of rows with the same predicted letter
    both_right: int
    only_a_right: int
    only_b_right: int
    both_wrong: int
    speed_pairs: tuple[tuple[float, float], ...] = field(default=())  # (A rows/s, B rows/s) per pair

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: compare/a/*, compare/b/*, compare/agreement and friends."""
        values = {"compare/rows": float(self.rows), "compare/agreement": self.agreement,
                  "compare/only_a_right": float(self.only_a_right), "compare/only_b_right": float(self.only_b_right)}
        for side, result in (("a", self.a), ("b", self.b)):
            values.update({f"compare/{side}/accuracy": result.accuracy, f"compare/{side}/robust_mean": result.robust_mean,
                           f"compare/{side}/robust_worst": result.robust_worst,
                           f"compare/{side}/rows_per_s": result.rows_per_second})
            values.update({f"compare/{side}/class/{letter}": acc for letter, acc in result.per_class.items()})
        return values

    def to_dict(self) -> dict:
        return asdict(self)


def per_class_accuracy(letters: list[str], true_index: np.ndarray, right: np.ndarray) -> dict[str, float]:
    """Letter -> share right among rows of that true letter (letters present in the file only)."""
    known = true_index >= 0
    rows = np.bincount(true_index[known], minlength=len(letters))
    hits = np.bincount(true_index[known & right], minlength=len(letters))
    return {letter: round(float(h / n), 6) for letter, n, h in zip(letters, rows, hits) if n}


def _true_index(model: LoadedModel, labels: np.ndarray) -> np.ndarray:
    """Each label's output index in this model, -1 for a label it has no output for."""
    lookup = np.full(max([*model.labels, int(labels.max(initial=0))]) + 1, -1, dtype=np.int64)
    lookup[np.asarray(model.labels, dtype=np.int64)] = np.arange(len(model.labels))
    return lookup[labels]


def _images_predictor(model: LoadedModel) -> Callable[[np.ndarray], np.ndarray]:
    """images (N, 28, 28) 0-255 -> probabilities, as the robustness suite calls it."""
    def predict(images: np.ndarray) -> np.ndarray:
        return model.predict(np.asarray(images, dtype=np.float32).reshape(-1, 784))

    return predict


def compare(a: LoadedModel, b: LoadedModel, specs: tuple[str, str], data: Path, out_dir: Path,
            speed_pairs: int = 3, robust_rows: int = ROBUST_ROWS) -> Comparison:
    """Score both models on the same accepted rows of `data`; `out_dir` holds the scorer's
    outputs while speed is timed."""
    from sign_mlops.sign_model.robustness import robustness_report
    from sign_mlops.sign_model.speed import measure_speed_pairs, scorer_timer

    if a.labels != b.labels:
        raise CompareError(f"{specs[0]} and {specs[1]} predict different letter sets ({len(a.labels)} vs "
                           f"{len(b.labels)} labels); compare models trained on the same label map.")
    rows = read_labelled(data)
    true_index = _true_index(a, rows.labels)
    images = rows.pixels.reshape(-1, 28, 28)
    predicted, results = [], []
    for spec, model in zip(specs, (a, b)):
        probs = np.concatenate([model.predict(rows.pixels[i:i + 4096]) for i in range(0, len(rows.pixels), 4096)])
        pred = probs.argmax(1)
        right = pred == true_index
        robust = robustness_report(_images_predictor(model), images, true_index.clip(min=0), max_rows=robust_rows)
        predicted.append((pred, right))
        described = model.describe()
        results.append(dict(spec=spec, name=described["name"], version=described["version"], path=str(model.path),
                            sha256=model.sha256, accuracy=float(right.mean()),
                            per_class=per_class_accuracy(model.letters, true_index, right),
                            robust_mean=robust.mean, robust_worst=robust.worst, robust_worst_kind=robust.worst_kind,
                            unknown_labels=int((true_index < 0).sum())))
    pairs = measure_speed_pairs(scorer_timer(a.path, data, out_dir / "a"), scorer_timer(b.path, data, out_dir / "b"),
                                speed_pairs)
    speeds = (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs))
    (pred_a, right_a), (pred_b, right_b) = predicted
    return Comparison(
        data=rows.path, data_sha256=rows.sha256, rows=len(true_index), rejected=rows.rejected,
        a=ModelResult(**results[0], rows_per_second=float(speeds[0])),
        b=ModelResult(**results[1], rows_per_second=float(speeds[1])),
        agreement=float((pred_a == pred_b).mean()), both_right=int((right_a & right_b).sum()),
        only_a_right=int((right_a & ~right_b).sum()), only_b_right=int((~right_a & right_b).sum()),
        both_wrong=int((~right_a & ~right_b).sum()), speed_pairs=pairs)


def plot_comparison(comparison: Comparison, path: Path) -> Path:
    """Per-letter accuracy of both models side by side, headline numbers in the title (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    letters = sorted(set(comparison.a.per_class) | set(comparison.b.per_class))
    x = np.arange(len(letters))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(letters) + 2), 4.4))
    for offset, result in ((-0.2, comparison.a), (0.2, comparison.b)):
        ax.bar(x + offset, [100 * result.per_class.get(letter, np.nan) for letter in letters], width=0.4,
               label=f"{result.title}: {100 * result.accuracy:.2f} %, robust {100 * result.robust_mean:.1f} %, "
                     f"{result.rows_per_second:,.0f} rows/s")
    ax.set_xticks(x, letters)
    ax.set_ylabel("accuracy per true letter (%)")
    low = min([*comparison.a.per_class.values(), *comparison.b.per_class.values(), 1.0])
    ax.set_ylim(max(0.0, 100 * low - 5), 100.5)
    ax.set_title(f"{Path(comparison.data).name}: {comparison.rows:,} rows, agreement {100 * comparison.agreement:.2f} %",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    from sign_mlops.contract.files import atomic_output

    with atomic_output(path, binary=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
