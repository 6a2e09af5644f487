"""The label map and the path/settings configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from sign_mlops.contract.labels import KAGGLE_LABELS, LETTERS, label_map_json, letter_of, parse_label_map
from sign_mlops.contract.paths import Paths, find_kaggle_file, tracking_uri
from sign_mlops.flows.settings import ServiceSettings


def test_label_map_has_24_letters_without_j_and_z():
    assert len(KAGGLE_LABELS) == 24 and 9 not in KAGGLE_LABELS and 25 not in KAGGLE_LABELS
    assert LETTERS[0] == "A" and LETTERS[8] == "I" and LETTERS[9] == "K" and LETTERS[-1] == "Y"
    assert letter_of(24) == "Y"
    with pytest.raises(ValueError, match="9"):
        letter_of(9)
    records = parse_label_map(label_map_json())
    assert records[9] == {"index": 9, "label": 10, "letter": "K"}


def test_malformed_label_map_is_refused():
    with pytest.raises(ValueError):
        parse_label_map('[{"index": 1, "label": 0, "letter": "A"}]')


def test_paths_derive_from_home_and_kaggle_files_are_found(tmp_path, monkeypatch):
    paths = Paths(tmp_path)
    assert paths.data_dir == tmp_path / "data" and paths.mlflow_db == tmp_path / "outputs" / "mlflow.db"
    assert find_kaggle_file(paths.data_dir, ("a.csv", "a.csv.gz")) is None
    paths.data_dir.mkdir()
    (paths.data_dir / "a.csv.gz").write_bytes(b"")
    assert find_kaggle_file(paths.data_dir, ("a.csv", "a.csv.gz")) == paths.data_dir / "a.csv.gz"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(paths) == f"sqlite:///{tmp_path}/outputs/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri(paths) == "http://mlflow:5000"


def test_service_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SIGN_MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("SIGN_MLOPS_RETRAIN_CRON", "*/5 * * * *")
    monkeypatch.setenv("SIGN_MLOPS_SCORE_INTERVAL", "60")
    settings = ServiceSettings.from_env()
    assert settings.retrain_cron == "*/5 * * * *" and settings.score_interval_s == 60
    assert settings.inbox == Path(tmp_path) / "inbox"
