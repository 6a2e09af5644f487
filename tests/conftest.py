"""Shared fixtures: small synthetic Kaggle-format files, a tiny trained model and its ONNX export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REAL_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sign-mnist-real" / "train.csv.gz"


@pytest.fixture(scope="session", autouse=True)
def nothing_written_outside_the_project_home(tmp_path_factory):
    """Every default path points into a temporary home, and the tests leave no MLflow or
    project state in the directory they were started from."""
    before = {name: (Path.cwd() / name).exists() for name in ("mlruns", "outputs", "inbox", "outbox")}
    mp = pytest.MonkeyPatch()
    mp.setenv("SIGN_MLOPS_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()
    appeared = [name for name, existed in before.items() if not existed and (Path.cwd() / name).exists()]
    assert not appeared, f"tests wrote {appeared} into {Path.cwd()}, outside the project home"


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory) -> tuple[Path, Path]:
    """A 1,440-row train and 480-row test file in the Kaggle format (disjoint seeds)."""
    from sign_mlops.sign_model.synthetic import synthesize_split
    from tests.model_factory import SYNTHETIC

    return synthesize_split(tmp_path_factory.mktemp("synthetic"), **SYNTHETIC)


@pytest.fixture(scope="session")
def synthetic_datasets(synthetic_files):
    from sign_mlops.sign_model.data import load_dataset

    return load_dataset(synthetic_files[0]), load_dataset(synthetic_files[1])


@pytest.fixture(scope="session")
def tiny_training(synthetic_datasets):
    """A tiny CNN trained for a few epochs on the synthetic training file (seconds)."""
    from sign_mlops.sign_model.train import PRESETS, TrainConfig, train_model
    from tests.model_factory import TINY_EPOCHS

    config = TrainConfig.from_dict({**PRESETS["smoke"].to_dict(), "epochs": TINY_EPOCHS})
    return train_model(synthetic_datasets[0], config)


@pytest.fixture(scope="session")
def onnx_model_path(request, tmp_path_factory) -> Path:
    """The tiny model exported to ONNX with label map and reference profile in its metadata.

    In the scoring-only install (no TensorFlow) the model is built beforehand by the full
    install (`python -m tests.model_factory PATH`) and named by $SIGN_MLOPS_TEST_MODEL."""
    prebuilt = os.environ.get("SIGN_MLOPS_TEST_MODEL")
    if prebuilt:
        return Path(prebuilt)
    from tests.model_factory import export_tiny_model

    training = request.getfixturevalue("tiny_training")
    train = request.getfixturevalue("synthetic_datasets")[0]
    return export_tiny_model(training.model, train, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A fresh sqlite MLflow store for one test."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def write_text(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def kaggle_rows(n: int, seed: int = 0, label: int | None = None) -> np.ndarray:
    """n valid rows (label + 784 pixels) as an int matrix."""
    from sign_mlops.sign_model.synthetic import generate_images

    images, labels = generate_images(n, seed)
    if label is not None:
        labels[:] = label
    return np.column_stack([labels, images.reshape(n, -1)]).astype(np.int64)


def rows_to_csv(matrix: np.ndarray, newline: str = "\r\n", header: str | None = None) -> str:
    from sign_mlops.sign_model.data import KAGGLE_HEADER

    head = header if header is not None else ",".join(KAGGLE_HEADER)
    return head + newline + "".join(",".join(map(str, row)) + newline for row in matrix)
