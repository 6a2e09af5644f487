"""MLflow tracking helpers (per-epoch curves come from MLflow's own Keras callback).

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

from sign_mlops.contract.paths import tracking_uri

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
            _ensure_experiment(experiment, uri)
            mlflow.set_experiment(experiment)
        except Exception as exc:  # requests/connection errors surface as several types
            raise TrackingUnavailable(
                f"MLflow tracking store {uri} is not reachable ({type(exc).__name__}: {str(exc)[:300]}) after "
                f"{os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} retries; check MLFLOW_TRACKING_URI and that "
                "the server is up.") from exc
    return uri


def local_artifact_root(uri: str) -> Path | None:
    """For a local sqlite store: the artifact folder next to its database (under the project
    home for the default store), instead of MLflow's default ./mlruns in the current directory."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server decides where artifacts go
    return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"


_WARNED: set[str] = set()  # experiments already warned about in this process


def _ensure_experiment(name: str, uri: str) -> None:
    """Create the experiment with its artifacts under the store's folder; warn when an existing
    one keeps them elsewhere (MLflow fixes an experiment's location when it is created)."""
    root = local_artifact_root(uri)
    if root is None:
        return
    existing = mlflow.get_experiment_by_name(name)
    if existing is None:
        root.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(name, artifact_location=root.resolve().as_uri())
    elif not existing.artifact_location.startswith(root.resolve().as_uri()) and name not in _WARNED:
        _WARNED.add(name)
        log.warning("experiment %r keeps its artifacts in %s, not in %s (it was created before this release); "
                    "new runs go there too. Use another --experiment name to keep everything under %s.",
                    name, existing.artifact_location, root, root.parent)


def run_ui_url(run_id: str) -> str:
    """Where the run is in the MLflow UI: on the tracking server, or on `mlflow ui`'s default
    address for a local store."""
    experiment = mlflow.get_run(run_id).info.experiment_id
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


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
    # mlflow.data.from_numpy is this function, attached to mlflow.data at import time (so invisible to mypy)
    from mlflow.data.numpy_dataset import from_numpy

    dataset = from_numpy(images.reshape(len(images), -1), targets=labels, source=source, name=name, digest=digest[:36])
    mlflow.log_input(dataset, context=context)


def log_json(payload: Any, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(payload, indent=2, default=str), artifact_file)


def epoch_metrics_callback():
    """MLflow's Keras callback, with Keras' per-epoch names put in namespaces: loss/accuracy ->
    train/loss, train/accuracy; val_loss/val_accuracy -> val/loss, val/accuracy (step = epoch).
    Its step-less validation_* copies of the same numbers are left out."""
    from mlflow.keras.callback import MlflowCallback

    class _Namespaced(MlflowCallback):
        def on_epoch_end(self, epoch, logs=None):
            renamed = {(f"val/{k[4:]}" if k.startswith("val_") else f"train/{k}"): v for k, v in (logs or {}).items()}
            super().on_epoch_end(epoch, renamed)

        def on_test_end(self, logs=None):  # the epoch's val/* already hold these (MLflow logs validation_*)
            return None

    return _Namespaced()
