"""MLflow tracking: the experiment is a model-development one, a run's link prints once, and an
unreachable store is one short line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sign_mlops.sign_model import tracking


def _kind(name: str, uri: str) -> str | None:
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    assert experiment is not None
    return experiment.tags.get(tracking.EXPERIMENT_KIND_TAG)


def test_experiments_are_model_development_experiments(mlflow_store):
    """A new experiment is created as one; an existing one without the tag, or with a GenAI kind
    (which the UI saves when it guesses), is marked; the run view then lists models, not agents."""
    import mlflow

    mlflow.create_experiment("kind-untagged")
    mlflow.create_experiment("kind-genai", tags={tracking.EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("kind-new", "kind-untagged", "kind-genai"):
        tracking.configure(name, uri=mlflow_store)
        assert _kind(name, mlflow_store) == "custom_model_development", name


UNREACHABLE = [
    ("API request to http://h:9/api failed with exception HTTPConnectionPool(host='h', port=9): Max retries exceeded "
     "(Caused by NewConnectionError(\"...: Failed to establish a new connection: [Errno 111] Connection refused\"))",
     "connection refused"),
    ("... (Caused by NameResolutionError(\"HTTPConnection(host='nope', port=5000): Failed to resolve 'nope' "
     "([Errno -2] Name or service not known)\"))", "host name not found"),
    ("... (Caused by ReadTimeoutError(\"HTTPConnectionPool(host='h', port=1): Read timed out. (read timeout=30)\"))",
     "no answer within 30 s"),
    ("API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with error code 403 != 200. Response "
     "body: 'Invalid Host header - possible DNS rebinding attack detected'" + "x" * 400, "HTTP 403"),
]


@pytest.mark.parametrize("raw, reason", UNREACHABLE, ids=[r for _, r in UNREACHABLE])
def test_an_unreachable_server_is_one_short_line(raw, reason, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    message = tracking.unreachable_message("http://user:secret@mlflow:5000", RuntimeError(raw))
    assert message == (f"MLflow tracking server http://user:***@mlflow:5000 is not reachable ({reason}) after 4 "
                       "retries; start it or set MLFLOW_TRACKING_URI.")
    assert len(message) < 200


def test_an_unknown_error_is_cut_short():
    reason = tracking.short_reason(ValueError("y" * 1000 + "\nsecond line"))
    assert reason.startswith("ValueError: yyy") and reason.endswith("…") and len(reason) < 100


# Against a real tracking server (MLflow prints run links only for one): a training opens its run
# once and re-opens it once per step; MLflow's "View run" link must print once, not per step.
RUN_AND_RESUME = """
import mlflow
from sign_mlops.sign_model import tracking

tracking.configure("links")
with mlflow.start_run() as run:
    pass
for _ in range(3):
    with tracking.resume_run(run.info.run_id):
        mlflow.log_metric("m", 1.0)
with tracking.no_run_links():
    mlflow.MlflowClient().set_terminated(run.info.run_id, status="FAILED")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
         "--artifacts-destination", str(work / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(work / 'server.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_a_run_on_a_server_prints_its_link_once(mlflow_server, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "SIGN_MLOPS_HOME": str(tmp_path)}
    env.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)
    done = subprocess.run([sys.executable, "-c", RUN_AND_RESUME], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("View run") == 1, done.stdout
    assert _kind("links", mlflow_server) == "custom_model_development"  # a remote experiment is marked too


@pytest.mark.parametrize("text, code", [
    ("API request to endpoint /api/2.0/mlflow/experiments/get-by-name failed with error code 401 != 200. "
     "Response body: 'You are not authenticated. Please see ...'", "401"),
    ("API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error code 403 != 200. "
     "Response body: 'Permission denied'", "403"),
])
def test_a_refused_login_says_which_login_and_what_to_set(monkeypatch, text, code):
    """With logins on the stack, a 401/403 is not 'server not reachable': it names the login."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "viewer")
    line = tracking.unreachable_message("http://mlflow:5000", RuntimeError(text))
    assert f"HTTP {code}" in line and "user viewer" in line and "not reachable" not in line
    assert ("MLFLOW_TRACKING_PASSWORD" if code == "401" else "permission") in line
    assert "\n" not in line and len(line) < 250
    refused = tracking.unreachable_message("http://mlflow:5000", ConnectionError("[Errno 111] Connection refused"))
    assert "not reachable (connection refused)" in refused


def test_run_links_open_the_model_training_view(mlflow_store):
    """Without ?workflowType=machine_learning the MLflow 3.17 UI shows a fresh browser the GenAI
    view of every experiment (checked in headless Chromium: 'Agent versions', traces)."""
    import mlflow

    tracking.configure("links", uri=mlflow_store)
    with mlflow.start_run() as run:
        pass
    url = tracking.run_ui_url(run.info.run_id)
    assert url.endswith(f"/runs/{run.info.run_id}?workflowType=machine_learning") and "/#/experiments/" in url
