"""The real Kaggle training file from ../shared (skipped cleanly when it is absent)."""

from __future__ import annotations

import gzip

import pytest

from sign_mlops.sign_model.validate import validate_files
from tests.conftest import REAL_TRAIN

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not REAL_TRAIN.exists(), reason=f"{REAL_TRAIN} not present")]


def test_real_training_file_validates():
    report = validate_files(REAL_TRAIN)
    assert report.passed, report.summary()
    info = report.files[str(REAL_TRAIN)]
    assert info["rows"] == 27455
    assert len(info["class_counts"]) == 24 and min(info["class_counts"].values()) == 957  # E
    assert report.stats["train_near_duplicate_rate"] > 0.9  # reported, not failed on


def test_planted_label_9_in_real_file_names_the_row(tmp_path):
    lines = gzip.decompress(REAL_TRAIN.read_bytes()).split(b"\r\n")
    cells = lines[101].split(b",")
    cells[0] = b"9"
    lines[101] = b",".join(cells)
    bad = tmp_path / "train_label9.csv"
    bad.write_bytes(b"\r\n".join(lines))
    report = validate_files(bad)
    assert not report.passed
    assert report.errors[0].check == "label_set" and report.errors[0].lines == [102]
