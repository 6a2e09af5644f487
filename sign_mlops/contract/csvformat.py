"""The Kaggle CSV format rules, written once for both readers (training's strict loader in
`sign_mlops.sign_model.data` and the scorer's row-tolerant reader in `sign_mlops.serving.reader`).

Header: `label,pixel1,...,pixel784` (training: exactly that; scoring: the pixel columns in any
order, `label` optional, other columns pass through). Cells: pixels are integers 0-255 and
labels are Kaggle labels (0-24 without 9), written as plain integers -- never `True`, `1.0` or
`1e1`. Files: `.csv` or `.csv.gz` (by magic bytes), UTF-8, optional BOM, CRLF or LF, RFC 4180
quoting. Only numpy and pandas are needed here (the scorer's light install imports this).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import stat
import zlib
from collections import Counter
from pathlib import Path
from typing import IO, cast

import numpy as np
import pandas as pd

from sign_mlops.contract.labels import INDEX_OF_LABEL

IMAGE_SIDE = 28
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE
PIXEL_COLUMNS: tuple[str, ...] = tuple(f"pixel{i}" for i in range(1, NUM_PIXELS + 1))
KAGGLE_HEADER: tuple[str, ...] = ("label", *PIXEL_COLUMNS)
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
MAX_HEADER_BYTES = 64 << 20  # a header of 100,000 long column names still fits

# Cell verdicts, in the order a row's first problem is reported.
CELL_OK, CELL_MISSING, CELL_NOT_INTEGER, CELL_NOT_NUMBER = 0, 1, 2, 3
CELL_PROBLEM = {CELL_MISSING: "missing value", CELL_NOT_INTEGER: "non-integer value", CELL_NOT_NUMBER: "non-numeric value"}
_MISSING_WORDS = ("", "nan", "na", "n/a", "null", "none")


class DataFormatError(ValueError):
    """A file does not follow the Kaggle CSV format; the message says where and what to do."""


def file_digest(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """sha256 of the file's bytes (as stored, compressed or not)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def check_regular_file(path: Path) -> None:
    """A readable regular file, or a DataFormatError that says what it is instead.

    FIFOs and process substitutions (`<(zcat x)`) are refused up front: opening a FIFO with no
    writer blocks forever, and a file is read twice (its sha256 and its rows)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found; check the path (Kaggle files go in data/).") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot access the file ({exc.strerror}); check the path and permissions.") from None
    if stat.S_ISDIR(mode):
        raise DataFormatError(f"{path}: is a directory, expected a .csv or .csv.gz file.")
    if not stat.S_ISREG(mode):
        kind = "a pipe (FIFO or process substitution)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise DataFormatError(f"{path}: is {kind}; write the data to a .csv or .csv.gz file first and pass that.")


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a CSV as bytes, transparently gunzipping (by magic bytes, not by name)."""
    path = Path(path)
    check_regular_file(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic == GZIP_MAGIC:
            # GzipFile reads like IO[bytes], but typeshed does not declare it one
            return cast(IO[bytes], gzip.open(path, "rb"))
        return open(path, "rb")
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read the file ({exc.strerror}); check its permissions.") from None


def read_header_line(fh: IO[bytes], path: Path) -> bytes:
    """The first line, however long (up to MAX_HEADER_BYTES); BOM and line ending removed."""
    raw = fh.readline(MAX_HEADER_BYTES + 1)
    if len(raw) > MAX_HEADER_BYTES:
        raise DataFormatError(f"{path} line 1: header longer than {MAX_HEADER_BYTES >> 20} MiB; "
                              "is this a CSV file with a header line?")
    return raw.removeprefix(BOM).rstrip(b"\r\n")


def decode_header(raw: bytes, path: Path) -> list[str]:
    """Column names from a header line (RFC 4180 quoting honoured, names stripped)."""
    if not raw.strip():
        raise DataFormatError(f"{path}: file is empty; expected a header line 'label,pixel1,...,pixel784'.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path} line 1: header is not UTF-8 text (binary file?); expected a CSV header "
                              "'label,pixel1,...,pixel784'.") from None
    if "\r" in text:
        raise DataFormatError(f"{path} line 1: the file uses CR-only line endings (classic Mac); convert it to LF or "
                              "CRLF line endings (e.g. `tr '\\r' '\\n'`) and try again.")
    if "\x00" in text:
        raise DataFormatError(f"{path} line 1: header holds NUL bytes (binary file?); expected a CSV header "
                              "'label,pixel1,...,pixel784'.")
    try:
        names = next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise DataFormatError(f"{path} line 1: header is not valid CSV ({exc}); fix its quoting.") from None
    return [name.strip() for name in names]


def read_header(path: str | Path) -> list[str]:
    """Column names from the first line of a file."""
    path = Path(path)
    with open_binary(path) as fh:
        try:
            raw = read_header_line(fh, path)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{path}: cannot read the file ({exc}); is it a truncated or corrupt gzip?") from None
    return decode_header(raw, path)


def check_pixel_header(columns: list[str], path: Path) -> None:
    """Every pixel1..pixel784 column exists exactly once (other columns are allowed)."""
    present = set(columns)
    missing = [c for c in PIXEL_COLUMNS if c not in present]
    if len(missing) == NUM_PIXELS:
        looks_like_data = all(c.strip().lstrip("-").isdigit() for c in columns[:5])
        hint = " The first line looks like data: the header line is missing." if looks_like_data else ""
        for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if "pixel1" + separator in columns[0]:
                hint = f" The columns seem separated by {name}; the Kaggle format uses commas."
        shown = [c if len(c) <= 30 else c[:30] + "..." for c in columns[:4]]
        raise DataFormatError(
            f"{path} line 1: no pixel columns found (first columns: {shown}); expected a header "
            f"'label,pixel1,...,pixel784' as in the Kaggle files.{hint}"
        )
    dupes = sorted(name for name, n in Counter(columns).items() if n > 1 and name)
    if dupes:
        raise DataFormatError(f"{path} line 1: duplicate column names {dupes[:5]}; each column must appear once.")
    if missing:
        raise DataFormatError(
            f"{path} line 1: expected {NUM_PIXELS} pixel columns (pixel1..pixel{NUM_PIXELS}), "
            f"{len(missing)} missing (e.g. {missing[:3]}); was a column deleted?"
        )


def check_kaggle_header(columns: list[str], path: Path) -> None:
    """Exactly 'label,pixel1,...,pixel784' in that order (the training format)."""
    check_pixel_header(columns, path)
    if tuple(columns) != KAGGLE_HEADER:
        extra = [c for c in columns if c not in KAGGLE_HEADER]
        if "label" not in columns:
            problem = "no 'label' column"
        elif extra:
            problem = f"unexpected columns {extra[:5]}"
        else:
            problem = "columns out of order"
        raise DataFormatError(
            f"{path} line 1: {problem}; a training/test file must have exactly the header "
            f"'label,pixel1,...,pixel784' (785 columns) in that order."
        )


def judge_cells(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values (float64, 0 where bad) and a verdict per cell for an array of cell strings.

    A cell is an integer only when it is written as one (`12`, ` +12 `); `True`, `1.0`,
    `1e1`, `0x1` are not. Empty, `NaN`, `NA`, `null` and `None` are missing."""
    shape = text.shape
    cells = pd.Series(text.ravel(), dtype=object).astype(str).str.strip()
    integer = cells.str.fullmatch(r"[+-]?[0-9]+").to_numpy(dtype=bool)  # ASCII digits only, not \d
    values = np.array(pd.to_numeric(cells.where(integer, "0"), errors="coerce"), dtype=np.float64)
    verdict = np.full(len(cells), CELL_OK, dtype=np.int8)
    if not integer.all():
        others = ~integer
        missing = cells.str.lower().isin(_MISSING_WORDS).to_numpy(dtype=bool) & others
        number = ~np.isnan(pd.to_numeric(cells.where(others & ~missing, "x"), errors="coerce").to_numpy(dtype=np.float64))
        verdict[others] = CELL_NOT_NUMBER
        verdict[number & others] = CELL_NOT_INTEGER
        verdict[missing] = CELL_MISSING
        values[others] = 0.0
    return values.reshape(shape), verdict.reshape(shape)


def pixel_in_range(values: np.ndarray) -> np.ndarray:
    return (values >= 0) & (values <= 255)


def is_kaggle_label(values: np.ndarray) -> np.ndarray:
    return np.isin(values, list(INDEX_OF_LABEL))
