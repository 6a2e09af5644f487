"""MLflow tracking helpers (explicit logging: TF 2.21 is outside autolog's tested range).

Param and metric names are stable so runs line up column by column in the MLflow UI.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from sign_model.config import tracking_uri

log = logging.getLogger(__name__)
DEFAULT_EXPERIMENT = "sign-language-mnist"


# Bounded retries with back-off for a remote tracking server (MLflow's own HTTP retry settings;
# an explicit value in the environment wins): about 1+2+4+8 s before an error is reported.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


# Scoring waits less: a scorer with the tracking server down fails within about 15 s when the
# server refuses connections, and within about 35 s (3 tries x 10 s + back-off) when it hangs.
SCORING_HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be reached (after MLflow's bounded retries)."""


def configure(experiment: str | None = DEFAULT_EXPERIMENT, uri: str | None = None, scoring: bool = False) -> str:
    """Point MLflow at the tracking store (and experiment); returns the tracking URI used."""
    for key, value in (SCORING_HTTP_RETRY_DEFAULTS if scoring else HTTP_RETRY_DEFAULTS).items():
        os.environ.setdefault(key, value)
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    if experiment:
        try:
            mlflow.set_experiment(experiment)
        except Exception as exc:  # requests/connection errors surface as several types
            raise TrackingUnavailable(
                f"MLflow tracking store {uri} is not reachable ({type(exc).__name__}: {str(exc)[:300]}) after "
                f"{os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries; check MLFLOW_TRACKING_URI and that "
                "the server is up.") from exc
    return uri


def git_commit() -> str | None:
    """Current git commit of the working directory, when there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@contextmanager
def resume_run(run_id: str) -> Iterator[mlflow.ActiveRun]:
    """Re-open a run by id (tasks pass run ids, not objects)."""
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def log_dataset(images: np.ndarray, labels: np.ndarray, source: str, digest: str, name: str, context: str) -> None:
    """Record a dataset input (source path + file sha256 as digest)."""
    dataset = mlflow.data.from_numpy(images.reshape(len(images), -1), targets=labels, source=source,
                                     name=name, digest=digest[:36])
    mlflow.log_input(dataset, context=context)


def log_history(history: dict[str, list[float]]) -> None:
    """Per-epoch metrics: train_accuracy, train_loss, val_accuracy, val_loss, learning_rate."""
    for key, values in history.items():
        name = key if key.startswith("val_") or key == "learning_rate" else f"train_{key}"
        for epoch, value in enumerate(values):
            mlflow.log_metric(name, float(value), step=epoch + 1)


def log_json(payload: Any, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(payload, indent=2, default=str), artifact_file)


def epoch_logger():
    """Keras callback that logs each epoch's metrics as it ends (live curves in the UI)."""
    import keras

    class _EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            for key, value in (logs or {}).items():
                name = key if key.startswith("val_") or key == "learning_rate" else f"train_{key}"
                mlflow.log_metric(name, float(value), step=epoch + 1)

    return _EpochLogger()
