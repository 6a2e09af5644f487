"""The validation gate catches every planted defect and names file and lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sign_mlops.sign_model.synthetic import generate_images
from sign_mlops.sign_model.validate import MAX_SHOWN, Thresholds, validate_files
from tests.conftest import rows_to_csv, write_text


@pytest.fixture(scope="module")
def clean_rows() -> tuple[np.ndarray, np.ndarray]:
    train_images, train_labels = generate_images(480, seed=11)
    test_images, test_labels = generate_images(96, seed=12)
    return (np.column_stack([train_labels, train_images.reshape(480, -1)]),
            np.column_stack([test_labels, test_images.reshape(96, -1)]))


def _write(tmp_path, train_rows, test_rows, header=None):
    train = write_text(tmp_path / "train.csv", rows_to_csv(train_rows, header=header))
    test = write_text(tmp_path / "test.csv", rows_to_csv(test_rows))
    return train, test


def _validate(tmp_path, train_rows, test_rows, header=None):
    return validate_files(*_write(tmp_path, train_rows, test_rows, header), Thresholds(min_train_rows=100, min_test_rows=10))


def test_clean_files_pass(tmp_path, clean_rows):
    report = _validate(tmp_path, *clean_rows)
    assert report.passed, report.summary()
    json.dumps(report.to_dict())  # JSON-serialisable


def _plant(rows, row, col, value):
    rows = rows.astype(object).copy()
    rows[row, col] = value
    return rows


DEFECTS = {
    "label 9": (lambda tr, te: (_plant(tr, 4, 0, 9), te), "label_set", [6]),
    "pixel 256": (lambda tr, te: (_plant(tr, 7, 300, 256), te), "pixel_range", [9]),
    "NaN pixel": (lambda tr, te: (_plant(tr, 2, 5, ""), te), "schema", [4]),
    "duplicate row": (lambda tr, te: (np.vstack([tr, tr[10:11]]), te), "duplicates", [482]),
    "train/test overlap": (lambda tr, te: (tr, np.vstack([te, tr[3:4]])), "train_test_overlap", [98]),
    "missing class": (lambda tr, te: (tr[tr[:, 0] != 24], te), "missing_classes", []),
    "too few rows": (lambda tr, te: (tr[:50], te), "row_count", []),
}


@pytest.mark.parametrize("case", sorted(DEFECTS))
def test_planted_defect_is_caught(tmp_path, clean_rows, case):
    plant, check, lines = DEFECTS[case]
    report = _validate(tmp_path, *plant(*clean_rows))
    assert not report.passed
    found = [e for e in report.errors if e.check == check]
    assert found, report.summary()
    for line in lines:
        assert line in found[0].lines, found[0]
        assert str(line) in found[0].message
    assert found[0].file.endswith(".csv")


def test_wrong_header_is_caught(tmp_path, clean_rows):
    header = ",".join(["label"] + [f"pixel{i}" for i in range(1, 784)] + ["pixel_785"])
    report = _validate(tmp_path, *clean_rows, header=header)
    assert not report.passed
    assert any("pixel784" in e.message or "pixel_785" in e.message for e in report.errors)


def test_structural_error_becomes_a_report_error(tmp_path, clean_rows):
    train, test = _write(tmp_path, *clean_rows)
    train.write_bytes(train.read_bytes() + b"1," * 800 + b"1\r\n")
    report = validate_files(train, test)
    assert not report.passed and report.errors[0].check == "format"
    assert "expected 785 fields" in report.errors[0].message


def test_imbalance_warns_but_passes(tmp_path, clean_rows):
    train, test = clean_rows
    extra = np.vstack([train[train[:, 0] == 0]] * 3)
    extra[:, 5] = (extra[:, 5] + np.arange(1, len(extra) + 1)) % 256  # keep rows distinct
    report = _validate(tmp_path, np.vstack([train, extra]), test)
    assert report.passed, report.summary()
    assert any(w.check == "class_balance" for w in report.warnings)


# Messages in the project's words (what, where, what to do), never pandera's internals, and never
# a whole long cell: each quoted value is cut to MAX_SHOWN characters.
PANDERA_WORDS = ("column_in_dataframe", "column_in_schema", "not_nullable", "dtype(", "failed, e.g.", "column nan")


@pytest.mark.parametrize("case", sorted(DEFECTS))
def test_no_finding_speaks_pandera(tmp_path, clean_rows, case):
    report = _validate(tmp_path, *DEFECTS[case][0](*clean_rows))
    for finding in report.errors + report.warnings:
        assert not any(word in finding.message for word in PANDERA_WORDS), finding.message


def test_missing_pixel_columns_say_how_many_and_what_to_do(tmp_path):
    bad = write_text(tmp_path / "bad.csv", "label,pixel1\n1,2\n")
    report = validate_files(bad)
    [finding] = report.errors
    assert finding.check == "header" and finding.lines == [1]
    assert finding.message.startswith(f"{bad} line 1: expected 784 pixel columns (pixel1..pixel784), found 1 ")
    assert "is this a Kaggle Sign Language MNIST file?" in finding.message


def test_a_one_megabyte_cell_is_cut_short(tmp_path, clean_rows):
    train, test = clean_rows
    report = _validate(tmp_path, _plant(train, 6, 100, "x" * 1_000_000), test)
    [finding] = [e for e in report.errors if e.check == "schema"]
    assert finding.lines == [8] and "line 8 column pixel100: non-numeric value 'xxx" in finding.message
    assert "x" * MAX_SHOWN not in finding.message and "…" in finding.message and len(finding.message) < 300
    assert len(report.summary()) < 400


def test_a_long_column_name_is_cut_short(tmp_path, clean_rows):
    header = ",".join(["label"] + [f"pixel{i}" for i in range(1, 785)] + ["y" * 100_000])
    rows = np.column_stack([clean_rows[0], np.zeros(len(clean_rows[0]), dtype=int)])
    report = _validate(tmp_path, rows, clean_rows[1], header=header)
    [finding] = [e for e in report.errors if e.check == "header"]
    assert "unexpected columns" in finding.message and len(finding.message) < 300


@pytest.mark.parametrize("cell, problem", [("1.5", "non-integer value '1.5'"), ("2.0", "non-integer value '2.0'"),
                                           ("", "missing value ''"), ("abc", "non-numeric value 'abc'")])
def test_a_bad_cell_is_named_by_line_column_and_value(tmp_path, clean_rows, cell, problem):
    train, test = clean_rows
    report = _validate(tmp_path, _plant(train, 9, 4, cell), test)
    [finding] = [e for e in report.errors if e.check == "schema"]
    assert finding.lines == [11]
    assert finding.message.startswith(f"{tmp_path / 'train.csv'} line 11 column pixel4: {problem}; expected an integer 0-255")
    assert not [e for e in report.errors if e.check == "pixel_range"]  # one problem, one finding


def test_bad_cells_in_many_rows_are_counted_with_their_lines(tmp_path, clean_rows):
    train, test = clean_rows
    report = _validate(tmp_path, _plant(_plant(train, 2, 7, "1.5"), 20, 300, "7.25"), test)
    [finding] = [e for e in report.errors if e.check == "schema"]
    assert finding.lines == [4, 22] and "2 rows have a non-integer value, e.g. line 4 column pixel7: " in finding.message
