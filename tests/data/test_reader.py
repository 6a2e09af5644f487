"""The Kaggle CSV reader: fast strict loading and clear errors for malformed files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from sign_mlops.serving.reader import iter_chunks
from sign_mlops.sign_model.data import DataFormatError, load_dataset
from tests.conftest import kaggle_rows, rows_to_csv, write_text


def test_reads_crlf_and_lf_and_gzip_identically(tmp_path):
    rows = kaggle_rows(5)
    crlf = write_text(tmp_path / "a.csv", rows_to_csv(rows, "\r\n"))
    lf = write_text(tmp_path / "b.csv", rows_to_csv(rows, "\n"))
    gz = tmp_path / "c.csv.gz"
    gz.write_bytes(gzip.compress(rows_to_csv(rows).encode()))
    loaded = [load_dataset(p) for p in (crlf, lf, gz)]
    for ds in loaded:
        assert ds.images.shape == (5, 28, 28) and ds.images.dtype == np.uint8
        np.testing.assert_array_equal(ds.images.reshape(5, -1), rows[:, 1:])
        np.testing.assert_array_equal(ds.labels, rows[:, 0])


def _bad(rows, row, col, value):
    text = rows_to_csv(rows).split("\r\n")
    cells = text[row + 1].split(",")
    cells[col] = value
    text[row + 1] = ",".join(cells)
    return "\r\n".join(text)


ROWS = kaggle_rows(4, seed=1)

MALFORMED = {
    "empty file": ("", "file is empty"),
    "header only": (rows_to_csv(ROWS[:0]), "header only"),
    "no header": (rows_to_csv(ROWS, header="").lstrip("\r\n"), "no pixel columns"),
    "missing pixel column": (rows_to_csv(ROWS[:, :-1], header=",".join(["label"] + [f"pixel{i}" for i in range(1, 784)])),
                             "1 missing"),
    "extra column": (rows_to_csv(np.column_stack([ROWS, ROWS[:, :1]]),
                                 header=",".join(["label"] + [f"pixel{i}" for i in range(1, 785)] + ["extra"])),
                     "unexpected columns ['extra']"),
    "columns out of order": (rows_to_csv(ROWS, header=",".join([f"pixel{i}" for i in range(1, 785)] + ["label"])),
                             "out of order"),
    "too many fields": (_bad(ROWS, 2, 5, "1,2"), "line 4: expected 785 fields"),
    "non-numeric cell": (_bad(ROWS, 1, 10, "abc"), "line 3 column pixel10: non-numeric value 'abc'"),
    "missing cell": (_bad(ROWS, 0, 7, ""), "line 2 column pixel7: missing value"),
    "float pixel": (_bad(ROWS, 3, 100, "12.5"), "line 5 column pixel100: non-integer value"),
    "pixel 256": (_bad(ROWS, 2, 784, "256"), "line 4 column pixel784: pixel out of range"),
    "negative pixel": (_bad(ROWS, 0, 1, "-3"), "line 2 column pixel1: pixel out of range"),
    "label 9": (_bad(ROWS, 1, 0, "9"), "line 3 column label: label 9"),
    "duplicate column names": (rows_to_csv(ROWS, header=",".join(["label"] + [f"pixel{i}" for i in range(1, 784)] + ["pixel1"])),
                               "duplicate column names"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_get_clear_errors(tmp_path, case):
    text, expected = MALFORMED[case]
    path = write_text(tmp_path / "bad.csv", text)
    with pytest.raises(DataFormatError) as info:
        load_dataset(path)
    assert expected in str(info.value)
    assert "bad.csv" in str(info.value)


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress(rows_to_csv(kaggle_rows(50)).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="ends early or is corrupt|truncated or corrupt"):
        load_dataset(path)


def test_binary_garbage_is_reported(tmp_path):
    path = write_text(tmp_path / "noise.csv", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    with pytest.raises(DataFormatError):
        load_dataset(path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        load_dataset(tmp_path / "nope.csv")


def test_chunked_reader_streams_and_keeps_line_numbers(tmp_path):
    rows = kaggle_rows(25)
    path = write_text(tmp_path / "many.csv", rows_to_csv(rows))
    chunks = list(iter_chunks(path, chunk_rows=1))
    assert len(chunks) > 1
    lines = np.concatenate([c.line_numbers for c in chunks])
    np.testing.assert_array_equal(lines, np.arange(2, 27))
    np.testing.assert_array_equal(np.concatenate([c.pixels for c in chunks]), rows[:, 1:].astype(np.float32))
