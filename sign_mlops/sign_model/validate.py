"""The validation gate: a JSON-serialisable report of errors (stop the pipeline) and warnings.

The header is checked by the shared format rules (`sign_mlops.contract.csvformat`); pandera checks
the schema (integer dtypes, no missing values), and the cells of a failing column are then judged
as written in the file; value checks over 784 pixel columns are vectorised numpy (pandera's
per-column checks are slow there). Every finding names the file and the lines concerned (line 1
is the header) in the project's words, never pandera's; quoted values are cut to MAX_SHOWN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from sign_mlops.contract.csvformat import (
    CELL_OK,
    CELL_PROBLEM,
    NUM_PIXELS,
    check_kaggle_header,
    judge_cells,
    open_binary,
    read_header,
)
from sign_mlops.contract.files import write_json_atomically
from sign_mlops.contract.labels import INDEX_OF_LABEL, KAGGLE_LABELS, letter_of
from sign_mlops.sign_model.data import KAGGLE_HEADER, PIXEL_COLUMNS, DataFormatError, file_digest, read_table
from sign_mlops.sign_model.split import near_twin_rate

MAX_LINES_LISTED = 50
MAX_SHOWN = 60  # characters of a quoted value or column name in a message


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


def _shown(value: object) -> str:
    """A value quoted for a message, cut to MAX_SHOWN characters (a 1 MB cell is not echoed whole)."""
    text = str(value)
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1] + "…")


def _display_names(columns: list[str]) -> list[str]:
    """Column names cut to MAX_SHOWN characters for messages (unless cutting would make two equal)."""
    cut = [c if len(c) <= MAX_SHOWN else c[:MAX_SHOWN - 1] + "…" for c in columns]
    return cut if len(set(cut)) == len(set(columns)) else columns


def check_header(columns: list[str], name: str) -> list[Finding]:
    """Exactly 'label,pixel1,...,pixel784' in that order (the shared format rules of csvformat)."""
    present = set(columns)
    missing = [c for c in PIXEL_COLUMNS if c not in present]
    if 0 < len(missing) < NUM_PIXELS:  # csvformat words this for a few lost columns; say how many are here
        hint = ("was a column deleted?" if len(missing) < NUM_PIXELS // 2
                else "is this a Kaggle Sign Language MNIST file?")
        return [Finding("header", name, f"{name} line 1: expected {NUM_PIXELS} pixel columns (pixel1..pixel{NUM_PIXELS}), "
                        f"found {NUM_PIXELS - len(missing)} ({len(missing)} missing, e.g. {', '.join(missing[:3])}); "
                        f"{hint}", [1])]
    try:
        check_kaggle_header(_display_names(columns), Path(name))
    except DataFormatError as exc:
        return [Finding("header", name, str(exc), [1])]
    return []


def check_schema(frame: pd.DataFrame, name: str) -> list[Finding]:
    """pandera's schema (int64, no missing values) on the Kaggle columns; each failing cell is
    then judged as written in the file and reported with its line, column and value."""
    try:
        kaggle_schema().validate(frame[list(KAGGLE_HEADER)], lazy=True)
        return []
    except pa.errors.SchemaErrors as exc:
        failing = [c for c in KAGGLE_HEADER if c in set(exc.failure_cases["column"].dropna().astype(str))]
    if not failing:  # a table-wide failure names no column
        return [Finding("schema", name, f"{name}: the table does not match the Kaggle schema; run with --debug "
                        "or open the file to check it is a Kaggle Sign Language MNIST CSV.")]
    text = _cells_as_written(Path(name), [int(frame.columns.get_loc(c)) for c in failing], failing)
    _, verdict = judge_cells(text.to_numpy())
    findings = [_cell_finding(text, verdict == kind, kind, name) for kind in CELL_PROBLEM if (verdict == kind).any()]
    unexplained = [c for i, c in enumerate(failing) if (verdict[:, i] == CELL_OK).all()]
    if unexplained:  # e.g. integers too long for int64: written as digits, yet not storable
        column = unexplained[0]
        findings.append(Finding("schema", name, f"{name} column {column}: values are not storable as integers, e.g. "
                                f"{_shown(text[column].iloc[0])}; expected integers 0-255 (label: 0-24 without 9)."))
    return findings


def _cells_as_written(path: Path, positions: list[int], names: list[str]) -> pd.DataFrame:
    """The columns at these positions, every cell as the text written in the file (index = file line)."""
    with open_binary(path) as fh:
        text = pd.read_csv(fh, engine="c", usecols=positions, dtype=str, na_filter=False, skip_blank_lines=False,
                           encoding="utf-8-sig")
    text = text.iloc[:, np.argsort(np.argsort(positions))]  # usecols keeps the file's order; put them in ours
    text.columns = pd.Index(names)
    text.index = pd.RangeIndex(2, len(text) + 2, name="line")
    return text


def _cell_finding(text: pd.DataFrame, bad: np.ndarray, kind: int, name: str) -> Finding:
    """One finding per kind of bad cell: how many rows, the first cell (line, column, value), the lines."""
    rows = np.flatnonzero(bad.any(axis=1))
    row, col = np.argwhere(bad)[0]
    lines = _lines(text.index[rows])
    first = f"line {text.index[row]} column {text.columns[col]}: {CELL_PROBLEM[kind]} {_shown(text.iat[row, col])}"
    if len(rows) == 1:
        return Finding("schema", name, f"{name} {first}; expected an integer 0-255 (label: 0-24 without 9) written as "
                       "plain digits. Fix or remove that row.", lines)
    return Finding("schema", name, f"{name}: {len(rows)} rows have a {CELL_PROBLEM[kind]}, e.g. {first} "
                   f"({_where(lines, len(rows))}); expected integers 0-255 (label: 0-24 without 9) written as plain "
                   "digits. Fix or remove those rows.", lines)


def numeric_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Kaggle columns as numbers; non-numeric cells become NaN (already reported by the schema)."""
    present = [c for c in KAGGLE_HEADER if c in frame.columns]
    block = frame[present]
    if all(pd.api.types.is_numeric_dtype(t) for t in block.dtypes):
        return block
    return block.apply(pd.to_numeric, errors="coerce")


def check_values(values: pd.DataFrame, name: str) -> list[Finding]:
    """Pixels are 0-255; labels are Kaggle labels (vectorised; check_schema reports non-integers)."""
    findings = []
    pixel_cols = [c for c in PIXEL_COLUMNS if c in values.columns]
    pixels = values[pixel_cols].to_numpy(dtype=np.float64)
    bad = np.isfinite(pixels) & ((pixels < 0) | (pixels > 255))
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
    stripped = [str(c).strip() for c in frame.columns]  # ' pixel1' is pixel1 (csvformat strips names too)
    if len(set(stripped)) == len(stripped):
        frame.columns = pd.Index(stripped)
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
    report.errors += check_header(read_header(Path(name)), name)
    if not set(KAGGLE_HEADER) <= set(frame.columns):
        return
    report.errors += check_schema(frame, name)
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
