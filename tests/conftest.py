"""Shared fixtures: small synthetic Kaggle-format files, a tiny trained model and its ONNX export."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

REAL_TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sign-mnist-real" / "train.csv.gz"


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory) -> tuple[Path, Path]:
    """A 1,440-row train and 480-row test file in the Kaggle format (disjoint seeds)."""
    from sign_model.synthetic import synthesize_split

    return synthesize_split(tmp_path_factory.mktemp("synthetic"), n_train=1440, n_test=480, seed=7)


@pytest.fixture(scope="session")
def synthetic_datasets(synthetic_files):
    from sign_model.data import load_dataset

    return load_dataset(synthetic_files[0]), load_dataset(synthetic_files[1])


@pytest.fixture(scope="session")
def tiny_training(synthetic_datasets):
    """A tiny CNN trained for a few epochs on the synthetic training file (seconds)."""
    from sign_model.train import PRESETS, TrainConfig, train_model

    config = TrainConfig.from_dict({**PRESETS["smoke"].to_dict(), "epochs": 6})
    return train_model(synthetic_datasets[0], config)


@pytest.fixture(scope="session")
def onnx_model_path(tiny_training, synthetic_datasets, tmp_path_factory) -> Path:
    """The tiny model exported to ONNX with label map and reference profile in its metadata."""
    from sign_model.drift import build_profile, profile_json
    from sign_model.export import keras_to_onnx, model_metadata

    train = synthetic_datasets[0]
    meta = model_metadata("test-run", train.digest, {"reference_profile": profile_json(build_profile(train.images, train.labels))})
    return keras_to_onnx(tiny_training.model, tmp_path_factory.mktemp("onnx") / "model.onnx", meta)


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
    from sign_model.synthetic import generate_images

    images, labels = generate_images(n, seed)
    if label is not None:
        labels[:] = label
    return np.column_stack([labels, images.reshape(n, -1)]).astype(np.int64)


def rows_to_csv(matrix: np.ndarray, newline: str = "\r\n", header: str | None = None) -> str:
    from sign_model.data import KAGGLE_HEADER

    head = header if header is not None else ",".join(KAGGLE_HEADER)
    return head + newline + "".join(",".join(map(str, row)) + newline for row in matrix)
