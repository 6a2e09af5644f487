"""Typed results passed between the pipeline's steps (read by attribute, never by string key).

Each is a small frozen dataclass; `RunRecord` bundles what registration needs and is saved as
`<run dir>/run_record.json`, so `sign-mlops register --from <run dir>` can finish a failed
registration without retraining.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


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
    teacher: str = ""  # the model it was distilled from ("" = trained on labels alone)


@dataclass(frozen=True)
class Evaluated:
    test_accuracy: float
    test_macro_f1: float
    test_errors: int
    test_rows: int
    confidence: dict[str, float] | None = None  # sign_model.evaluate.confidence_summary (None in older records)


@dataclass(frozen=True)
class Robustness:
    """The robustness suite's summary at the moderate severity (sign_model.robustness)."""

    mean: float
    worst: float
    worst_kind: str
    clean_accuracy: float
    rows: int
    table_path: str
    errors_flagged: float | None = None  # share of the wrong rows under the low-confidence threshold (moderate)


@dataclass(frozen=True)
class Parity:
    argmax_agreement: float
    max_abs_delta: float
    passed: bool


@dataclass(frozen=True)
class Int8:
    path: str
    accepted: bool
    reason: str
    accuracy: float
    speedup: float
    model_uri: str | None = None
    sha256: str | None = None
    robust_mean: float | None = None
    robust_worst: float | None = None


@dataclass(frozen=True)
class Exported:
    onnx_path: str
    onnx_sha256: str
    parity: Parity
    onnx_model_uri: str | None = None
    int8: Int8 | None = None


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
        path = Path(self.run_dir) / "run_record.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".run_record.json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)
        return path

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
                                     "int8": Int8(**exported["int8"]) if exported.get("int8") else None}),
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
