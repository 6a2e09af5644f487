"""Typed results passed between the pipeline's steps (read by attribute, never by string key).

Each is a small frozen dataclass; `RunRecord` bundles what registration needs and is saved as
`<run dir>/run_record.json`, so `sign-mlops register --from <run dir>` can finish a failed
registration without retraining.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sign_mlops.contract.files import write_json_atomically


@dataclass(frozen=True)
class DataFiles:
    """The inputs of one pipeline run: paths plus their sha256, computed once and passed on."""

    train: str
    test: str
    synthetic: bool
    train_sha256: str
    test_sha256: str


@dataclass(frozen=True)
class Validated:
    passed: bool
    report: str
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Trained:
    model_path: str
    history_path: str
    keras_model_uri: str
    val_accuracy: float
    train_seconds: float
    hand_detector: str = ""  # what the left-hand detector's check found ("" = none trained)


@dataclass(frozen=True)
class Evaluated:
    test_accuracy: float
    test_macro_f1: float
    test_errors: int
    test_rows: int
    confidence: dict[str, float] | None = None  # sign_mlops.sign_model.evaluate.confidence_summary (None in older records)


@dataclass(frozen=True)
class Robustness:
    """The robustness suite's summary at the moderate severity (sign_mlops.sign_model.robustness)."""

    mean: float
    worst: float
    worst_kind: str
    clean_accuracy: float
    rows: int
    table_path: str
    errors_flagged: float | None = None  # share of the wrong rows under the low-confidence threshold (moderate)


@dataclass(frozen=True)
class Parity:
    """Keras against onnxruntime on the same rows (sign_mlops.sign_model.export.compare)."""

    argmax_agreement: float
    max_abs_delta: float
    passed: bool
    rows: int = 0

    def metrics(self, prefix: str = "parity") -> dict[str, float]:
        return {f"{prefix}/argmax_agreement": self.argmax_agreement, f"{prefix}/max_abs_delta": self.max_abs_delta,
                f"{prefix}/passed": float(self.passed)}


@dataclass(frozen=True)
class Int8Report:
    """INT8 next to fp32 (sign_mlops.sign_model.export.judge_int8): the gate's facts and decision;
    the export step adds where the file is and, when accepted, its MLflow model and sha256.

    Speed comes from alternating pairs of whole-file scorer runs (export.judge_speedup):
    `speedup` is the median of the pairs' INT8/fp32 ratios, `speedup_low`/`speedup_high` the
    smallest/largest ratio once the worst/best pair is dropped (the decision needs
    `speedup_low` >= min_speedup), `fp32_rows_per_s`/`int8_rows_per_s` each model's median run.
    Records from before the pairs have none (`speed_pairs` empty, bounds None)."""

    fp32_accuracy: float
    int8_accuracy: float
    accuracy_loss_points: float
    argmax_agreement: float
    fp32_robust_mean: float
    int8_robust_mean: float
    fp32_robust_worst: float
    int8_robust_worst: float
    fp32_rows_per_s: float
    int8_rows_per_s: float
    speedup: float
    accepted: bool
    reason: str
    speed_basis: str = ""
    path: str = ""
    model_uri: str | None = None
    sha256: str | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    speed_pairs: tuple[tuple[float, float], ...] = ()  # (fp32 rows/s, int8 rows/s) per pair, in the order measured

    def __post_init__(self) -> None:  # run_record.json gives lists back
        object.__setattr__(self, "speed_pairs", tuple((float(a), float(b)) for a, b in self.speed_pairs))

    def metrics(self) -> dict[str, float]:
        facts = ("fp32_accuracy", "int8_accuracy", "accuracy_loss_points", "argmax_agreement", "fp32_robust_mean",
                 "int8_robust_mean", "fp32_robust_worst", "int8_robust_worst", "fp32_rows_per_s", "int8_rows_per_s",
                 "speedup", "accepted")
        values = {f"int8/{name}": float(getattr(self, name)) for name in facts}
        if self.speedup_low is not None and self.speedup_high is not None:
            values.update({"int8/speedup_low": self.speedup_low, "int8/speedup_high": self.speedup_high})
        if self.speed_pairs:
            ratios = [b / a for a, b in self.speed_pairs]
            values.update({"int8/speed_pairs": float(len(ratios)), "int8/speedup_min": min(ratios),
                           "int8/speedup_max": max(ratios)})
        return values

    def pair_metrics(self) -> list[dict[str, float]]:
        """One dict per measured pair, in order (logged with the pair's index as the MLflow step)."""
        return [{"int8/pair_fp32_rows_per_s": a, "int8/pair_int8_rows_per_s": b, "int8/pair_speedup": b / a}
                for a, b in self.speed_pairs]


@dataclass(frozen=True)
class Exported:
    onnx_path: str
    onnx_sha256: str
    parity: Parity
    onnx_model_uri: str | None = None
    int8: Int8Report | None = None


@dataclass(frozen=True)
class Registered:
    keras_version: str
    onnx_version: str
    int8_version: str | None = None


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    version: str
    champion_before: str | None
    reasons: tuple[str, ...]
    champion_uri: str
    int8_champion_uri: str | None = None  # when the champion has an INT8 variant (registered only when it pays)


@dataclass(frozen=True)
class RunRecord:
    """What registration needs from a finished training run."""

    run_id: str
    run_dir: str
    files: DataFiles
    trained: Trained
    evaluated: Evaluated
    exported: Exported
    robustness: Robustness | None = None

    def save(self) -> Path:
        return write_json_atomically(asdict(self), Path(self.run_dir) / "run_record.json")

    @classmethod
    def load(cls, run_dir: Path) -> "RunRecord":
        """Read <run dir>/run_record.json; ValueError with what to do when it is missing or broken."""
        path = Path(run_dir) / "run_record.json"
        try:
            raw = json.loads(path.read_text())
            exported = raw["exported"]
            return cls(
                run_id=raw["run_id"], run_dir=raw["run_dir"], files=DataFiles(**raw["files"]),
                trained=Trained(**raw["trained"]), evaluated=Evaluated(**raw["evaluated"]),
                exported=Exported(**{**exported, "parity": Parity(**exported["parity"]),
                                     "int8": Int8Report(**exported["int8"]) if exported.get("int8") else None}),
                robustness=Robustness(**raw["robustness"]) if raw.get("robustness") else None,
            )
        except FileNotFoundError:
            raise ValueError(f"{path} not found; pass the folder of a run that got as far as the export step "
                             "(outputs/runs/<run id>).") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a readable run record ({exc}).") from None


@dataclass(frozen=True)
class TrainingResult:
    """What the training flow returns."""

    skipped: bool
    reason: str
    data: DataFiles
    run_id: str = ""
    run_dir: str = ""
    trained: Trained | None = None
    evaluated: Evaluated | None = None
    robustness: Robustness | None = None
    exported: Exported | None = None
    registered: Registered | None = None
    promotion: Promotion | None = None
    run_name: str = ""  # the same name in MLflow and in Prefect


def confidence_row(confidence: dict[str, float] | None) -> list[tuple[str, str]]:
    """What the scorer's confidence would say on the test split (none for records that predate it)."""
    if not confidence:
        return []
    caught = (f", {confidence['errors_flagged']:.0%} of the errors among them" if "errors_flagged" in confidence
              else "")
    return [("test confidence", f"mean {confidence['mean_confidence']:.3f}; {confidence['low_confidence']:.1%} of rows "
                                f"under the scorer's low-confidence threshold{caught}; calibration error "
                                f"{confidence['calibration_error']:.3f}")]


def result_rows(result: TrainingResult) -> list[tuple[str, str]]:
    """The facts of a finished training run, as (name, value): the console table and the
    Prefect markdown artifact both show these."""
    evaluated, trained, exported = result.evaluated, result.trained, result.exported
    registered, promotion = result.registered, result.promotion
    if result.skipped or evaluated is None or trained is None or exported is None or registered is None \
            or promotion is None:
        raise ValueError(f"result_rows needs a finished training run, not a skipped one ({result.reason}).")
    rows = [("data", f"{result.data.train}{' (SYNTHETIC)' if result.data.synthetic else ''}, "
                     f"sha256 {result.data.train_sha256[:12]}"),
            ("test accuracy", f"{evaluated.test_accuracy:.4%} ({evaluated.test_errors} errors / {evaluated.test_rows})"),
            ("test macro-F1", f"{evaluated.test_macro_f1:.4f}"),
            *confidence_row(evaluated.confidence),
            ("grouped validation accuracy", f"{trained.val_accuracy:.4%}"),
            ("training seconds", f"{trained.train_seconds:.0f}")]
    if trained.hand_detector:
        rows.append(("left-hand detector", trained.hand_detector))
    if result.robustness is not None:
        rb = result.robustness
        flagged = (f"; {rb.errors_flagged:.0%} of its errors under the low-confidence threshold"
                   if rb.errors_flagged is not None else "")
        rows.append(("robustness (moderate shifts)",
                     f"mean {rb.mean:.2%}, worst {rb.worst_kind} {rb.worst:.2%} on {rb.rows} test rows{flagged}"))
    rows.append(("ONNX parity", f"argmax {exported.parity.argmax_agreement:.2%}, max |dp| {exported.parity.max_abs_delta:.1e}"))
    if exported.int8 is not None:
        i8 = exported.int8
        rows.append(("INT8", f"{'registered' if i8.accepted else 'refused'}: {i8.reason}"))
    rows += [("registered", f"keras v{registered.keras_version}, onnx v{registered.onnx_version}"
                            + (f", int8 v{registered.int8_version}" if registered.int8_version else "")),
             ("promotion", ("PROMOTED" if promotion.promoted else "not promoted") + f" v{promotion.version}"),
             ("champion", promotion.champion_uri)]
    if promotion.int8_champion_uri:
        rows.append(("champion, INT8", f"{promotion.int8_champion_uri} (the champion in INT8: faster on the scorer, "
                                           "within the gate's accuracy and robustness bounds)"))
    rows.append(("outputs", result.run_dir))
    return rows
