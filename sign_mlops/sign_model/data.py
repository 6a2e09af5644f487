"""Read Kaggle Sign Language MNIST CSV files (.csv or .csv.gz, CRLF or LF) fast and strictly.

`read_table` / `load_dataset` read a whole file with pandas' C parser (training, validation);
any malformed cell raises with its line and column. The format rules themselves (header, cell
rules) live in `sign_mlops.contract.csvformat`, shared with the scorer's row-tolerant reader
(`sign_mlops.serving.reader`).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sign_mlops.contract.csvformat import (  # noqa: F401
    CELL_OK,
    CELL_PROBLEM,
    GZIP_MAGIC,
    IMAGE_SIDE,
    KAGGLE_HEADER,
    NUM_PIXELS,
    PIXEL_COLUMNS,
    DataFormatError,
    check_kaggle_header,
    check_pixel_header,
    file_digest,
    is_kaggle_label,
    judge_cells,
    open_binary,
    pixel_in_range,
    read_header,
)


@dataclass(frozen=True)
class SignDataset:
    """Images (N, 28, 28) uint8 raw 0-255 pixels and Kaggle labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    digest: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])














_PARSER_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_table(path: str | Path, check_header: bool = True, as_text: bool = False) -> pd.DataFrame:
    """Whole Kaggle file as a DataFrame (index = file line number); header and shape checked.

    Cell values are not judged here (the validation gate and `frame_to_dataset` do that): a
    non-numeric cell leaves its column as strings, a missing cell becomes NaN.
    """
    path = Path(path)
    header = read_header(path)
    if check_header:
        check_kaggle_header(header, path)
    try:
        with open_binary(path) as fh:
            text = {"dtype": str, "na_filter": False} if as_text else {}
            frame = pd.read_csv(fh, engine="c", skip_blank_lines=False, encoding="utf-8-sig", **text)
    except pd.errors.ParserError as exc:
        raise _translate_parser_error(exc, path) from exc
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFormatError(f"{path}: the file ends early or is corrupt ({exc}); download it again.") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text at byte {exc.start}; is it a binary file?") from exc
    if frame.empty:
        raise DataFormatError(f"{path}: header only, no data rows; expected one image per line after the header.")
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="line")
    return frame


def _translate_parser_error(exc: Exception, path: Path) -> DataFormatError:
    match = _PARSER_FIELDS.search(str(exc))
    if match:
        expected, line, saw = match.groups()
        return DataFormatError(
            f"{path} line {line}: expected {expected} fields (label + 784 pixels), found {saw}; "
            f"is a stray comma or an extra column in that row?"
        )
    return DataFormatError(f"{path}: cannot parse as CSV ({exc}).")


def frame_to_dataset(frame: pd.DataFrame, source: str, digest: str) -> SignDataset:
    """Convert a checked table to arrays; any bad cell raises with line and column."""
    values = _numeric_matrix(frame, source)
    pixels = values[:, 1:]
    labels = values[:, 0]
    _raise_on_bad_cells(frame, pixels, labels, source)
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return SignDataset(images=images, labels=labels.astype(np.int64), source=source, digest=digest)


def _all_integer(frame: pd.DataFrame) -> bool:
    return all(pd.api.types.is_integer_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in frame.dtypes)


def _numeric_matrix(frame: pd.DataFrame, source: str) -> np.ndarray:
    """All cells as numbers; the first cell that is not an integer (by `judge_cells`) raises.
    A frame that is not all-integer should be read `as_text` so cells are judged as written."""
    if _all_integer(frame):
        return frame.to_numpy(dtype=np.int64)
    values, verdict = judge_cells(frame.astype(str).to_numpy())
    if (verdict != CELL_OK).any():
        row, col = np.argwhere(verdict != CELL_OK)[0]
        raise DataFormatError(
            f"{source} line {frame.index[row]} column {frame.columns[col]}: {CELL_PROBLEM[verdict[row, col]]} "
            f"{_cell(frame, row, col)!r}; expected an integer 0-255 (label: 0-24 without 9). "
            "Run 'sign-mlops data validate' for a full report."
        )
    return values


def _raise_on_bad_cells(frame: pd.DataFrame, pixels: np.ndarray, labels: np.ndarray, source: str) -> None:
    outside = ~pixel_in_range(pixels)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise DataFormatError(
            f"{source} line {frame.index[row]} column {frame.columns[col + 1]}: pixel out of range 0-255 "
            f"({_cell(frame, row, col + 1)!r}); pixels must be integers 0-255. Run 'sign-mlops data validate' "
            "for a full report."
        )
    bad_label = ~is_kaggle_label(labels)
    if bad_label.any():
        row = int(np.argmax(bad_label))
        raise DataFormatError(
            f"{source} line {frame.index[row]} column label: label {_cell(frame, row, 0)!r} is not a Kaggle "
            f"label (0-24 without 9=J; no 25=Z). Run 'sign-mlops data validate' for a full report."
        )


def _cell(frame: pd.DataFrame, row: int, col: int):
    """A cell as a plain Python value (numpy scalars print as np.int64(9) otherwise)."""
    value = frame.iat[row, col]
    return value.item() if hasattr(value, "item") else value


def load_dataset(path: str | Path) -> SignDataset:
    """Load a Kaggle train/test file strictly: any malformed cell raises DataFormatError."""
    path = Path(path)
    frame = read_table(path)
    if not _all_integer(frame):  # something is off: judge every cell as it is written
        frame = read_table(path, as_text=True)
    return frame_to_dataset(frame, str(path), file_digest(path))
