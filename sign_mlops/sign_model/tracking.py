"""MLflow tracking helpers (per-epoch curves come from MLflow's own Keras callback).

Param and metric names are stable so runs line up column by column in the MLflow UI.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
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
            raise TrackingUnavailable(unreachable_message(uri, exc)) from exc
    return uri


# What went wrong, in a few words, from MLflow's and requests' messages (they chain no causes):
# the raw text is ~450 characters of URL, pool and errno.
_REASONS = (
    (re.compile(r"Connection refused|Errno 111"), "connection refused"),
    (re.compile(r"NameResolutionError|Name or service not known|nodename nor servname|name resolution"),
     "host name not found"),
    (re.compile(r"timed out|Timeout", re.IGNORECASE), "no answer within {timeout} s"),
    (re.compile(r"CERTIFICATE_VERIFY_FAILED|SSLError"), "TLS error; is the certificate trusted?"),
    (re.compile(r"error code (\d{3})"), "HTTP {0}"),
    (re.compile(r"unable to open database file"), "cannot open the database file"),
)


def _login_refused(text: str) -> str | None:
    """'401' or '403' when the server refused the login (not, e.g., MLflow's 403 for a Host header it
    does not allow, which is a server setting); None otherwise."""
    code = re.search(r"(?:error code|HTTP|status code)[ :]*(40[13])\b", text) or re.search(
        r"\b(UNAUTHENTICATED|PERMISSION_DENIED|Unauthorized)\b", text)
    if code is None:
        return None
    value = code[1]
    if value in ("401", "UNAUTHENTICATED", "Unauthorized"):
        return "401"
    if value == "PERMISSION_DENIED" or re.search(r"permission|not authori[sz]ed", text, re.IGNORECASE):
        return "403"
    return None


def short_reason(exc: BaseException) -> str:
    """A tracking error in a few words ("connection refused", "HTTP 403"), never its raw text."""
    text = str(exc)
    for pattern, reason in _REASONS:
        match = pattern.search(text)
        if match:
            return reason.format(*match.groups(), timeout=os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "?"))
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:80]}…" if len(first) > 80 else f"{type(exc).__name__}: {first}"


def shown_uri(uri: str) -> str:
    """The tracking URI without a password (postgresql://user:secret@host -> postgresql://user:***@host)."""
    return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", uri)


def unreachable_message(uri: str, exc: BaseException) -> str:
    """One line: what (server not reachable and why), where (URI), what to do."""
    refused = _login_refused(str(exc))
    if refused and uri.startswith(("http://", "https://")):
        who = (f"user {os.environ['MLFLOW_TRACKING_USERNAME']}" if os.environ.get("MLFLOW_TRACKING_USERNAME")
               else "MLFLOW_TRACKING_TOKEN" if os.environ.get("MLFLOW_TRACKING_TOKEN") else "no login")
        if refused == "403":
            return (f"MLflow tracking server {shown_uri(uri)} does not let {who} do this (HTTP 403); ask an MLflow "
                    "admin for the permission (docs/compose.md, Access).")
        return (f"MLflow tracking server {shown_uri(uri)} refused {who} (HTTP 401); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to a valid login.")
    if uri.startswith(("http://", "https://")):
        retries = int(os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0") or 0)
        after = f" after {retries} retries" if retries else ""
        return (f"MLflow tracking server {shown_uri(uri)} is not reachable ({short_reason(exc)}){after}; "
                "start it or set MLFLOW_TRACKING_URI.")
    return (f"MLflow tracking store {shown_uri(uri)} cannot be used ({short_reason(exc)}); check that it exists "
            "and is writable, or set MLFLOW_TRACKING_URI.")


def local_artifact_root(uri: str) -> Path | None:
    """For a local sqlite store: the artifact folder next to its database (under the project
    home for the default store), instead of MLflow's default ./mlruns in the current directory."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server decides where artifacts go
    return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"


_WARNED: set[str] = set()  # experiments already warned about in this process

# The MLflow 3 UI shows an experiment either as "GenAI apps & agents" (models listed as "Agent
# versions") or as "Machine learning", by the experiment tag mlflow.experimentKind; its values are
# the UI's ExperimentKind enum (mlflow/server/js/build/static/js/main.*.js: genai_development,
# custom_model_development, ...). Without the tag the UI guesses, and saves its guess as the tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"


def _ensure_experiment(name: str, uri: str) -> None:
    """Create the experiment as a model-development experiment, with its artifacts under the
    store's folder for a local store; mark an existing one that is untagged or tagged GenAI; warn
    when it keeps its artifacts elsewhere (MLflow fixes an experiment's location when it is created)."""
    root = local_artifact_root(uri)
    existing = mlflow.get_experiment_by_name(name)
    if existing is None:
        _create_experiment(name, root)
        return
    if existing.tags.get(EXPERIMENT_KIND_TAG, "genai").startswith("genai"):
        mlflow.MlflowClient().set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    if root is None:
        return
    if not existing.artifact_location.startswith(root.resolve().as_uri()) and name not in _WARNED:
        _WARNED.add(name)
        log.warning("experiment %r keeps its artifacts in %s, not in %s (it was created before this release); "
                    "new runs go there too. Use another --experiment name to keep everything under %s.",
                    name, existing.artifact_location, root, root.parent)


def _create_experiment(name: str, root: Path | None) -> None:
    """A new model-development experiment (another process may create it at the same moment)."""
    location = None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        location = root.resolve().as_uri()
    try:
        mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT})
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def run_ui_url(run_id: str) -> str:
    """Where the run is in the MLflow UI: on the tracking server, or on `mlflow ui`'s default
    address for a local store."""
    experiment = mlflow.get_run(run_id).info.experiment_id
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    # MLflow 3.17's UI opens every experiment in its GenAI view unless told otherwise (a browser-wide
    # setting, "mlflow.workflowType", GenAI by default; the experiment's kind tag does not switch
    # it): the query makes the link open the run in the "Model training" view.
    return f"{base}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"


def git_commit() -> str | None:
    """Current git commit of the working directory, when there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# MLflow prints "🏃 View run <name> at: <url>" and "🧪 View experiment at: <url>" each time a run on a
# tracking server ends or is terminated (TrackingServiceClient._log_url in
# mlflow/tracking/_tracking_service/client.py), unless MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT
# (mlflow/environment_variables.py) is true when it prints. The pipeline re-opens its run once
# per step, which printed the link 7 times per training; the run's first opening keeps the one.
SUPPRESS_RUN_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
_links_lock = threading.Lock()
_links_quiet = {"depth": 0, "ours": False}


@contextmanager
def no_run_links() -> Iterator[None]:
    """MLflow prints no "View run" link inside this block (an operator's own setting is kept)."""
    with _links_lock:
        if _links_quiet["depth"] == 0:
            _links_quiet["ours"] = SUPPRESS_RUN_LINKS not in os.environ
            if _links_quiet["ours"]:
                os.environ[SUPPRESS_RUN_LINKS] = "true"
        _links_quiet["depth"] += 1
    try:
        yield
    finally:
        with _links_lock:
            _links_quiet["depth"] -= 1
            if _links_quiet["depth"] == 0 and _links_quiet["ours"]:
                os.environ.pop(SUPPRESS_RUN_LINKS, None)


@contextmanager
def resume_run(run_id: str) -> Iterator[mlflow.ActiveRun]:
    """Re-open a run by id (tasks pass run ids, not objects), without MLflow printing its link again."""
    with no_run_links(), mlflow.start_run(run_id=run_id) as run:
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


def log_to_run(run_id: str, metrics: dict[str, float], files: list[Path], artifact_path: str) -> None:
    """Add metrics and files to an existing run without re-opening it (its status stays)."""
    import time

    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    client.get_run(run_id)  # a clear "not found" before anything is written
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()])
    for path in files:
        client.log_artifact(run_id, str(path), artifact_path)
