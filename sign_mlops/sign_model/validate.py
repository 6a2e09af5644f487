"""The validation gate: a JSON-serialisable report of errors (stop the pipeline) and warnings.

pandera checks the schema (exact columns in order, integer dtypes, no missing values); value
checks over 784 pixel columns are vectorised numpy (pandera's per-column checks are slow there).
Every finding names the file and the lines concerned (line 1 is the header).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from sign_mlops.contract.files import write_json_atomically
from sign_mlops.contract.labels import INDEX_OF_LABEL, KAGGLE_LABELS, letter_of
from sign_mlops.sign_model.data import KAGGLE_HEADER, PIXEL_COLUMNS, DataFormatError, file_digest, read_table
from sign_mlops.sign_model.split import near_twin_rate

MAX_LINES_LISTED = 50


@dataclass
class Finding:
    check: str
    file: str
    message: str
    lines: list[int] = field(default_factory=list)


@dataclass
class ValidationReport:
    files: dict[str, dict] = field(default_factory=dict)
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {"passed": self.passed, **asdict(self)}

    def write(self, path: Path) -> Path:
        return write_json_atomically(self.to_dict(), path)

    def summary(self) -> str:
        """One message naming every error (used to stop a flow)."""
        if self.passed:
            return "validation passed"
        return "validation failed: " + "; ".join(f"[{e.check}] {e.message}" for e in self.errors)


@dataclass(frozen=True)
class Thresholds:
    min_train_rows: int = 240
    min_test_rows: int = 24
    imbalance_ratio: float = 2.0  # warn when the largest class is > this x the smallest


def kaggle_schema() -> pa.DataFrameSchema:
    """Exact Kaggle columns in order, int64, no missing values."""
    columns = {name: pa.Column("int64", nullable=False) for name in KAGGLE_HEADER}
    return pa.DataFrameSchema(columns, strict=True, ordered=True)


def _lines(index: pd.Index | np.ndarray) -> list[int]:
    return [int(v) for v in list(index)[:MAX_LINES_LISTED]]


def _where(lines: list[int], total: int) -> str:
    more = f" and {total - len(lines)} more" if total > len(lines) else ""
    return f"lines {lines[:10]}{more}" if total > 1 else f"line {lines[0]}"


def check_schema(frame: pd.DataFrame, name: str) -> list[Finding]:
    """pandera schema check, collected lazily into findings."""
    try:
        kaggle_schema().validate(frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    findings = []
    for (check, column), group in cases.groupby(["check", "column"], dropna=False, sort=False):
        rows = group["index"].dropna()
        lines = _lines(rows.astype(int)) if len(rows) else []
        where = f" ({_where(lines, len(rows))})" if lines else ""
        value = group["failure_case"].iloc[0]
        findings.append(Finding("schema", name, f"{name}: column {column!s}: {check} failed, e.g. {value!r}{where}", lines))
    return findings


def numeric_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Kaggle columns as numbers; non-numeric cells become NaN (already reported by the schema)."""
    present = [c for c in KAGGLE_HEADER if c in frame.columns]
    block = frame[present]
    if all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes):
        return block
    return block.apply(pd.to_numeric, errors="coerce")


def check_values(values: pd.DataFrame, name: str) -> list[Finding]:
    """Pixels are integers 0-255; labels are Kaggle labels (vectorised)."""
    findings = []
    pixel_cols = [c for c in PIXEL_COLUMNS if c in values.columns]
    pixels = values[pixel_cols].to_numpy(dtype=np.float64)
    bad = np.isfinite(pixels) & ((pixels < 0) | (pixels > 255) | (pixels != np.round(pixels)))
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        row, col = np.argwhere(bad)[0]
        lines = _lines(values.index[rows])
        findings.append(Finding("pixel_range", name,
                                f"{name}: {len(rows)} rows have pixels outside integers 0-255, e.g. "
                                f"{pixel_cols[col]}={pixels[row, col]:g} ({_where(lines, len(rows))})", lines))
    if "label" in values.columns:
        labels = values["label"].to_numpy(dtype=np.float64)
        bad_label = np.isfinite(labels) & ~np.isin(labels, list(INDEX_OF_LABEL))
        if bad_label.any():
            rows = np.flatnonzero(bad_label)
            lines = _lines(values.index[rows])
            findings.append(Finding("label_set", name,
                                    f"{name}: {len(rows)} rows have labels outside 0-24 without 9 (J) and 25 (Z), "
                                    f"e.g. {labels[rows[0]]:g} ({_where(lines, len(rows))})", lines))
    return findings


def _row_hashes(values: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(values, index=False)


def check_duplicates(values: pd.DataFrame, name: str) -> list[Finding]:
    """Exact duplicate rows within one file (the later copies are listed)."""
    dup = _row_hashes(values).duplicated().to_numpy()
    if not dup.any():
        return []
    lines = _lines(values.index[dup])
    return [Finding("duplicates", name, f"{name}: {int(dup.sum())} exact duplicate rows ({_where(lines, int(dup.sum()))}); "
                    "remove them so they do not weigh twice.", lines)]


def check_overlap(train: pd.DataFrame, test: pd.DataFrame, test_name: str) -> list[Finding]:
    """Exact rows of the test file that also appear in the training file."""
    shared = _row_hashes(test).isin(set(_row_hashes(train))).to_numpy()
    if not shared.any():
        return []
    lines = _lines(test.index[shared])
    return [Finding("train_test_overlap", test_name,
                    f"{test_name}: {int(shared.sum())} rows also appear in the training file "
                    f"({_where(lines, int(shared.sum()))}); a test row seen in training inflates accuracy.", lines)]


def class_counts(values: pd.DataFrame) -> dict[str, int]:
    counts = values["label"].value_counts()
    return {letter_of(label): int(counts.get(label, 0)) for label in KAGGLE_LABELS}


def check_classes(counts: dict[str, int], name: str, thresholds: Thresholds) -> tuple[list[Finding], list[Finding]]:
    """All 24 classes present (error for training); imbalance is a warning."""
    errors, warnings = [], []
    missing = [letter for letter, n in counts.items() if n == 0]
    if missing:
        errors.append(Finding("missing_classes", name, f"{name}: no rows for letters {missing}; training needs all 24 classes."))
    present = [n for n in counts.values() if n > 0]
    if present and max(present) > thresholds.imbalance_ratio * min(present):
        warnings.append(Finding("class_balance", name,
                                f"{name}: class sizes range {min(present)}-{max(present)} "
                                f"(> {thresholds.imbalance_ratio}x); consider class weights."))
    return errors, warnings


def _load(path: Path, name: str, report: ValidationReport) -> pd.DataFrame | None:
    try:
        frame = read_table(path, check_header=False)
    except DataFormatError as exc:
        report.errors.append(Finding("format", name, str(exc)))
        return None
    report.files[name] = {"path": str(path), "sha256": file_digest(path), "rows": len(frame)}
    return frame


def _images(values: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    clean = values.dropna()
    pixels = clean[list(PIXEL_COLUMNS)].to_numpy(dtype=np.float64).clip(0, 255)
    return pixels.astype(np.uint8).reshape(-1, 28, 28), clean["label"].to_numpy()


def validate_files(train_path: Path, test_path: Path | None = None,
                   thresholds: Thresholds = Thresholds()) -> ValidationReport:
    """Validate a training file and, optionally, a test file; never raises on bad data."""
    report = ValidationReport()
    frames: dict[str, pd.DataFrame] = {}
    for name, path, floor in (("train", train_path, thresholds.min_train_rows),
                              ("test", test_path, thresholds.min_test_rows)):
        if path is None:
            continue
        frame = _load(Path(path), str(path), report)
        if frame is None:
            continue
        report.files[str(path)]["role"] = name
        _check_one(frame, str(path), name, floor, thresholds, report)
        if set(KAGGLE_HEADER) <= set(frame.columns):
            frames[name] = numeric_values(frame)
    if "train" in frames and "test" in frames:
        report.errors += check_overlap(frames["train"], frames["test"], str(test_path))
    _near_duplicate_stats(frames, report)
    return report


def _check_one(frame: pd.DataFrame, name: str, role: str, floor: int, thresholds: Thresholds,
               report: ValidationReport) -> None:
    report.errors += check_schema(frame, name)
    if not set(KAGGLE_HEADER) <= set(frame.columns):
        return
    values = numeric_values(frame)
    report.errors += check_values(values, name)
    report.errors += check_duplicates(values, name)
    if len(frame) < floor:
        report.errors.append(Finding("row_count", name, f"{name}: {len(frame)} rows, fewer than the floor of {floor} for a {role} file."))
    counts = class_counts(values)
    report.files[name]["class_counts"] = counts
    errors, warnings = check_classes(counts, name, thresholds)
    report.errors += errors if role == "train" else []
    report.warnings += warnings + (errors if role != "train" else [])


def _near_duplicate_stats(frames: dict[str, pd.DataFrame], report: ValidationReport) -> None:
    """Reported, not failed on: near-copies are how this data set was built."""
    if "train" not in frames:
        return
    images, labels = _images(frames["train"])
    report.stats["train_near_duplicate_rate"] = round(near_twin_rate(images, labels, images, labels, same_set=True), 4)
    if "test" in frames:
        test_images, test_labels = _images(frames["test"])
        rate = near_twin_rate(test_images, test_labels, images, labels)
        report.stats["test_rows_with_train_near_twin"] = round(rate, 4)
        if rate > 0.05:
            report.warnings.append(Finding("near_twins", "test",
                                           f"{rate:.1%} of test rows have a near-twin (corr >= 0.99) in training; "
                                           "test accuracy may overstate generalisation."))
